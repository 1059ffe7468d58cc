/*
 * bench/lib/load — the load generator: S sessions, each one connection reused
 * for many messages (as MTAs do: next MAIL after the final reply, RSET after
 * a refusal before DATA), drawing messages from one shared counter until all
 * are sent. Messages come encoded and in memory, so making them (random
 * bytes, base64) is not inside the measured time.
 *
 * Throughput is messages over the message phase: from the first MAIL to the
 * last final reply. Connect time (TCP connect to the EHLO reply, which holds
 * the greeting delay) is recorded per session and reported on its own.
 *
 * Bounded: it sends exactly `messages.length` transactions, reconnects at
 * most `maxReconnects` times in all, and every reply has a timeout. Targets
 * 127.0.0.1 only.
 */
import { BenchSession } from './smtp.ts';

export interface LoadResult {
  sent: number;
  accepted: number;
  /** Refused at end of DATA with a 5xx (an infected message, for a scanning target). */
  rejected: number;
  /** Any other 4xx/5xx, or refused before DATA. */
  otherRefused: number;
  /** Transactions lost to a broken connection. */
  failed: number;
  /** Final reply codes seen, e.g. { "250": 1600, "550": 400 }. */
  codes: Record<string, number>;
  /** Seconds of the message phase (first MAIL to last final reply). */
  seconds: number;
  perSecond: number;
  /** End of DATA to the final reply (ms), every transaction that reached end of DATA. */
  dataMs: number[];
  /** MAIL to the final reply (ms). */
  txMs: number[];
  /** Per connection: TCP connect to the EHLO reply (ms). */
  connectMs: number[];
  /** Whether the server offered PIPELINING (so MAIL, RCPT and DATA went in one write). */
  pipelining: boolean;
}

export interface LoadOptions {
  port: number;
  sessions: number;
  /** Encoded messages (see encodeMessage), one transaction each. */
  messages: readonly Buffer[];
  from?: string;
  to?: string;
  maxReconnects?: number;
  timeoutMs?: number;
}

export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  const from = opts.from ?? 'bench@example.org';
  const to = opts.to ?? 'user@example.net';
  const result: LoadResult = {
    sent: 0, accepted: 0, rejected: 0, otherRefused: 0, failed: 0, codes: {}, seconds: 0, perSecond: 0,
    dataMs: [], txMs: [], connectMs: [], pipelining: false,
  };
  let next = 0;
  let reconnects = opts.maxReconnects ?? 20;
  const clock: { first: bigint | null; last: bigint } = { first: null, last: 0n };
  const open = async () => {
    const { session, connectMs } = await BenchSession.open(opts.port, { timeoutMs: opts.timeoutMs });
    result.connectMs.push(connectMs);
    result.pipelining = session.pipelining;
    return session;
  };
  const worker = async () => {
    let session = await open();
    try {
      for (let i = next++; i < opts.messages.length; i = next++) {
        clock.first ??= process.hrtime.bigint();
        result.sent++;
        try {
          const r = await session.transaction(from, to, opts.messages[i]!);
          result.codes[r.code] = (result.codes[r.code] ?? 0) + 1;
          if (r.code === 250) result.accepted++;
          else if (r.stage === 'end' && r.code >= 500) result.rejected++;
          else result.otherRefused++;
          if (!Number.isNaN(r.dataMs)) result.dataMs.push(r.dataMs);
          result.txMs.push(r.txMs);
        } catch (err) {
          // The connection broke (or a reply timed out): count it lost, reconnect, go on.
          result.failed++;
          session.destroy();
          if (reconnects-- <= 0) throw new Error(`too many broken connections; last: ${(err as Error).message}`);
          session = await open();
        }
        clock.last = process.hrtime.bigint();
      }
    } finally {
      await session.quit();
    }
  };
  await Promise.all(Array.from({ length: opts.sessions }, worker));
  result.seconds = clock.first === null ? 0 : Number(clock.last - clock.first) / 1e9;
  result.perSecond = result.seconds > 0 ? result.sent / result.seconds : 0;
  return result;
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** Two loads of the same target and scenario as one: counts and samples added, times summed. */
export function mergeLoads(a: LoadResult, b: LoadResult): LoadResult {
  const codes = { ...a.codes };
  for (const [c, n] of Object.entries(b.codes)) codes[c] = (codes[c] ?? 0) + n;
  const seconds = a.seconds + b.seconds;
  const sent = a.sent + b.sent;
  return {
    sent, accepted: a.accepted + b.accepted, rejected: a.rejected + b.rejected, otherRefused: a.otherRefused + b.otherRefused, failed: a.failed + b.failed,
    codes, seconds, perSecond: seconds > 0 ? sent / seconds : 0,
    dataMs: a.dataMs.concat(b.dataMs), txMs: a.txMs.concat(b.txMs), connectMs: a.connectMs.concat(b.connectMs), pipelining: a.pipelining && b.pipelining,
  };
}
