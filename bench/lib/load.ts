/*
 * bench/lib/load — the load generator: N SMTP sessions, each one connection
 * reused for many messages (as MTAs do), drawing from one shared counter.
 * It uses Backstop's own small SMTP client and sends messages encoded once
 * (CRLF, dot-stuffed), so that on a 2-core machine the client takes as little
 * CPU as possible from the servers being measured; every target gets the
 * same client.
 * Records, per message, the transaction time (MAIL to the final reply) and
 * the code; per session, the time from connect to a usable session
 * (greeting and EHLO). Targets only loopback; stops when the count is done.
 */
import { encodeData, SmtpClient } from '../../src/edge/smtp-client.ts';

export interface LoadResult {
  sent: number;
  accepted: number;
  refused: number;
  failed: number;
  seconds: number;
  perSecond: number;
  /** Transaction latency in ms of every accepted or refused message. */
  latencies: number[];
  connectMs: number[];
}

export interface LoadOptions {
  port: number;
  sessions: number;
  count: number;
  message(i: number): Buffer;
  from?: string;
  to?: string;
}

async function connectSession(port: number): Promise<{ client: SmtpClient; ms: number }> {
  const started = process.hrtime.bigint();
  const client = await SmtpClient.open({ host: '127.0.0.1', port, heloName: 'bench.example.org', connectTimeoutMs: 30_000, commandTimeoutMs: 120_000, dataTimeoutMs: 120_000 });
  return { client, ms: Number(process.hrtime.bigint() - started) / 1e6 };
}

/** One transaction; the code of the reply that ended it (0: the connection failed). */
async function transaction(client: SmtpClient, from: string, to: string, encoded: readonly Buffer[]): Promise<number> {
  try {
    const mail = await client.command(`MAIL FROM:<${from}>`);
    if (mail.code !== 250) return mail.code;
    const rcpt = await client.command(`RCPT TO:<${to}>`);
    if (rcpt.code !== 250) {
      await client.command('RSET');
      return rcpt.code;
    }
    return (await client.dataEncoded(encoded)).code;
  } catch {
    return 0;
  }
}

export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  let next = 0;
  const result: LoadResult = { sent: 0, accepted: 0, refused: 0, failed: 0, seconds: 0, perSecond: 0, latencies: [], connectMs: [] };
  const started = process.hrtime.bigint();
  const session = async () => {
    let { client, ms } = await connectSession(opts.port);
    result.connectMs.push(ms);
    for (let i = next++; i < opts.count; i = next++) {
      const encoded = encodeData(opts.message(i));
      const t0 = process.hrtime.bigint();
      const code = await transaction(client, opts.from ?? 'bench@example.org', opts.to ?? 'user@example.net', encoded);
      result.sent++;
      if (code === 250) result.accepted++;
      else if (code >= 400) result.refused++;
      else result.failed++;
      if (code > 0) result.latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
      else {
        // The connection broke: open a new one and go on.
        client.close();
        ({ client } = await connectSession(opts.port));
      }
    }
    client.close();
  };
  await Promise.all(Array.from({ length: opts.sessions }, session));
  result.seconds = Number(process.hrtime.bigint() - started) / 1e9;
  result.perSecond = result.sent / result.seconds;
  return result;
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
