/*
 * bench/lib/load — the load generator: N SMTP sessions, each one connection
 * reused for many messages (as MTAs do), drawing from one shared counter.
 * Records, per message, the transaction time (MAIL to the final reply) and
 * the code; per session, the time from connect to a usable session
 * (greeting and EHLO). Targets only loopback; stops when the count is done.
 */
import SMTPConnection from 'nodemailer/lib/smtp-connection';

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

function connectSession(port: number): Promise<{ conn: SMTPConnection; ms: number }> {
  const started = process.hrtime.bigint();
  const conn = new SMTPConnection({ host: '127.0.0.1', port, ignoreTLS: true, name: 'bench.example.org', connectionTimeout: 30_000, greetingTimeout: 30_000, socketTimeout: 120_000 });
  return new Promise((resolve, reject) => {
    conn.once('error', reject);
    conn.connect(() => {
      conn.removeListener('error', reject);
      conn.on('error', () => {});
      resolve({ conn, ms: Number(process.hrtime.bigint() - started) / 1e6 });
    });
  });
}

export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  let next = 0;
  const result: LoadResult = { sent: 0, accepted: 0, refused: 0, failed: 0, seconds: 0, perSecond: 0, latencies: [], connectMs: [] };
  const started = process.hrtime.bigint();
  const session = async () => {
    let { conn, ms } = await connectSession(opts.port);
    result.connectMs.push(ms);
    for (let i = next++; i < opts.count; i = next++) {
      const raw = opts.message(i);
      const t0 = process.hrtime.bigint();
      const code = await new Promise<number>((resolve) => {
        conn.send({ from: opts.from ?? 'bench@example.org', to: [opts.to ?? 'user@example.net'] }, raw, (err) => {
          resolve(err ? ((err as { responseCode?: number }).responseCode ?? 0) : 250);
        });
      });
      result.sent++;
      if (code === 250) result.accepted++;
      else if (code >= 400) result.refused++;
      else result.failed++;
      if (code > 0) result.latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
      else {
        // The connection broke: open a new one and go on.
        conn.close();
        ({ conn } = await connectSession(opts.port));
      }
    }
    conn.quit();
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
