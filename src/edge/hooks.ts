/*
 * edge/hooks — the plug-in checks every way mail enters runs (the SMTP
 * gateway, the milter): their types and the one runner over them.
 *
 * A check answers with one of a closed set of outcomes. The runner trusts a
 * check's code, not its output: a check that throws or takes longer than its
 * time limit is the caller's 451, a check may refuse or defer but never
 * accept, and only well-formed whole header fields may be added.
 */
import type { Verdict } from '../scan/verdict.ts';
import type { Reply } from './replies.ts';

/**
 * What a plug-in check decides: go on, or answer now (4xx/5xx), or (data
 * checks) hold the message in quarantine and answer 250 once the row is
 * committed. Going on may change what the next hop sees: a mail check the
 * envelope sender (BATV signing), a rcpt check the recipient (the BATV tag
 * removed), a data check header fields put on top of the relayed copy (the
 * Message-ID stamp). `action` names the outcome in the message log.
 */
export type HookOutcome =
  | { outcome: 'continue'; mailFrom?: string; rcpt?: string; headers?: string }
  | { outcome: 'reply'; reply: Reply; action?: string }
  | { outcome: 'quarantine'; action: string; detail: string };
export const CONTINUE: HookOutcome = { outcome: 'continue' };

export interface HookResult {
  reply: Reply | null;
  action?: string;
  quarantine?: { action: string; detail: string };
  mailFrom?: string;
  rcpt?: string;
  headers: string;
}

/** A transaction as every check sees it, whichever way it came in. */
export interface TransactionView {
  clientIp: string;
  clientPort: number;
  helo: string;
  mailFrom: string;
  rcptTo: readonly string[];
  relayed: boolean;
}

/** Checks other roles plug in (the BATV shield at RCPT, per-IP abuse aliases…), run in order. */
export interface GatewayHooks {
  /** At MAIL FROM; may replace the envelope sender the next hop sees. */
  mail: ((t: TransactionView) => Promise<HookOutcome>)[];
  rcpt: ((t: TransactionView, rcpt: string) => Promise<HookOutcome>)[];
  data: ((t: TransactionView, raw: Uint8Array) => Promise<HookOutcome>)[];
  /** After the decision; for notices and reports. Errors are logged, never change the reply. */
  decided: ((t: TransactionView, result: DecidedMessage) => Promise<void>)[];
}

export interface DecidedMessage {
  id: string;
  verdict: Verdict;
  action: string;
  reply: Reply;
  raw: Uint8Array;
  quarantineId: string | null;
  receivedAt: Date;
}

export async function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([work, new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

export async function runHooks<A extends unknown[]>(list: ((...args: A) => Promise<HookOutcome>)[], timeoutMs: number, ...args: A): Promise<HookResult> {
  const out: HookResult = { reply: null, headers: '' };
  for (const hook of list) {
    const result = await withTimeout(hook(...args), timeoutMs);
    if (result.outcome === 'reply') {
      // A check may refuse or defer, never accept: a 2xx here would be a message answered 250 and delivered nowhere.
      if (result.reply.code < 400 || result.reply.code > 599) throw new Error(`a check answered ${result.reply.code}; checks may only refuse (5xx) or defer (4xx)`);
      return { ...out, reply: result.reply, action: result.action };
    }
    if (result.outcome === 'quarantine') return { ...out, quarantine: { action: result.action, detail: result.detail } };
    if (result.mailFrom !== undefined) out.mailFrom = result.mailFrom;
    if (result.rcpt !== undefined) out.rcpt = result.rcpt;
    // Only whole header fields, CRLF-terminated, may be added (a check's own values, never peer text).
    if (result.headers) {
      if (!/^([!-9;-~]+:[^\r\n]*\r\n([ \t][^\r\n]*\r\n)*)+$/.test(result.headers)) throw new Error('a check added malformed header fields');
      out.headers += result.headers;
    }
  }
  return out;
}
