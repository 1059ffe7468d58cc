/*
 * scan/types — what the rest of Backstop may ask of the scanner.
 * The gateway, `backstop scan` and quarantine release all go through this.
 */
import type { Finding } from './policy.ts';
import type { Verdict } from './verdict.ts';

export type { Finding };

export interface ScanResult {
  /** The worst of the findings (scan/verdict.worst), or clean when there are none. */
  verdict: Verdict;
  /** Every check that failed, on which part: built-in ones and clamd's, in the order found. */
  findings: Finding[];
  /** Wall time of the scan in milliseconds. */
  ms: number;
  /** True when the verdict came from the per-attachment cache without asking clamd. */
  cached: boolean;
}

export interface Scanner {
  /** Scans one whole raw RFC 5322 message. Never throws: trouble is `unscannable`. */
  scanMessage(raw: Uint8Array): Promise<ScanResult>;
  /** Scans one file (not a message): used by `backstop scan` for non-mail files. */
  scanFile(name: string, content: Uint8Array): Promise<ScanResult>;
  close(): Promise<void>;
}

export interface ScannerEvents {
  /** A clamd call failed (connection, timeout, protocol); for the metrics. */
  onClamdError?(err: Error): void;
}
