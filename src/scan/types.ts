/*
 * scan/types — what the rest of Backstop may ask of the scanner.
 * The gateway, `backstop scan` and quarantine release all go through this.
 */
import type { Verdict } from './verdict.ts';

export interface ScanResult {
  verdict: Verdict;
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
