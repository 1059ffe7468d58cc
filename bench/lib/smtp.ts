/*
 * bench/lib/smtp — the benchmark's own small SMTP client: one net socket,
 * RFC 5321 replies (multi-line, §4.2.1), PIPELINING (RFC 2920) where the
 * server offers it, many transactions per connection.
 *
 * Deliberately apart from src/edge/smtp-client.ts: the benchmark must not
 * measure the gateway with the gateway's own code on both ends, and it wants
 * the least client CPU possible (the client shares two cores with the
 * servers it measures). So messages are encoded once, before the clock
 * starts (CRLF, dot-stuffed, terminating "."), and each transaction costs one
 * write for MAIL+RCPT+DATA, one write for the body, and three or four reply
 * parses.
 *
 * What is timed, per transaction (process.hrtime):
 *   dataMs  from the moment the last byte of the body (".\r\n") is handed to
 *           the kernel to the final reply: the time the server holds the
 *           sender at end of DATA (the gateway's scan + relay; smtp-sink's
 *           nothing). This is what "added latency" is computed from.
 *   txMs    from MAIL to the final reply.
 * and per session the connect time: TCP connect to the EHLO reply (it holds
 * the server's greeting delay).
 *
 * Trusts only loopback servers it was pointed at; every wait has a timeout,
 * so a hung server ends a run with an error instead of hanging it.
 */
import { connect, type Socket } from 'node:net';

export interface Reply {
  code: number;
  text: string;
}

export class SmtpBenchError extends Error {}

/** A message ready for the wire: CRLF line ends, leading dots doubled, "\r\n.\r\n" at the end. */
export function encodeMessage(raw: Buffer): Buffer {
  let text = raw.toString('latin1').replace(/\r?\n/g, '\r\n');
  if (!text.endsWith('\r\n')) text += '\r\n';
  text = text.replace(/(^|\r\n)\./g, '$1..'); // RFC 5321 §4.5.2
  return Buffer.from(text + '.\r\n', 'latin1');
}

export interface TransactionResult {
  /** The code that ended the transaction (MAIL's, RCPT's or end of DATA's). */
  code: number;
  /** The stage that gave the code. */
  stage: 'mail' | 'rcpt' | 'data' | 'end';
  /** End of DATA to the final reply, ms; NaN when the transaction never reached end of DATA. */
  dataMs: number;
  /** MAIL to the final reply, ms. */
  txMs: number;
}

const now = () => process.hrtime.bigint();
const ms = (from: bigint, to: bigint) => Number(to - from) / 1e6;

export class BenchSession {
  private buffer = '';
  private replyLines: string[] = [];
  private waiters: { resolve(r: Reply): void; reject(e: Error): void }[] = [];
  private closedError: Error | null = null;
  pipelining = false;

  private constructor(
    private readonly socket: Socket,
    private readonly timeoutMs: number,
  ) {
    socket.setNoDelay(true);
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => this.onData(chunk));
    const fail = (err: Error) => {
      this.closedError ??= err;
      for (const w of this.waiters.splice(0)) w.reject(err);
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new SmtpBenchError('connection closed')));
  }

  /** Connects, reads the greeting, sends EHLO. Returns the session and the connect-to-EHLO-reply time. */
  static async open(port: number, opts: { heloName?: string; timeoutMs?: number } = {}): Promise<{ session: BenchSession; connectMs: number }> {
    const t0 = now();
    const socket = connect({ host: '127.0.0.1', port });
    const session = new BenchSession(socket, opts.timeoutMs ?? 120_000);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const greeting = await session.read();
    if (greeting.code !== 220) throw new SmtpBenchError(`greeting ${greeting.code} ${greeting.text}`);
    socket.write(`EHLO ${opts.heloName ?? 'bench.example.org'}\r\n`);
    const ehlo = await session.read();
    if (ehlo.code !== 250) throw new SmtpBenchError(`EHLO ${ehlo.code} ${ehlo.text}`);
    session.pipelining = /^PIPELINING\b/im.test(ehlo.text);
    return { session, connectMs: ms(t0, now()) };
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let at: number;
    while ((at = this.buffer.indexOf('\r\n')) >= 0) {
      const line = this.buffer.slice(0, at);
      this.buffer = this.buffer.slice(at + 2);
      this.replyLines.push(line.slice(4));
      if (line[3] === '-') continue; // a continuation line (RFC 5321 §4.2.1)
      const reply = { code: Number(line.slice(0, 3)) || 0, text: this.replyLines.join('\n') };
      this.replyLines = [];
      const waiter = this.waiters.shift();
      if (waiter) waiter.resolve(reply);
    }
  }

  /** The next reply, in order. */
  read(): Promise<Reply> {
    if (this.closedError) return Promise.reject(this.closedError);
    return new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => reject(new SmtpBenchError(`no reply in ${this.timeoutMs} ms`)), this.timeoutMs);
      this.waiters.push({
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
    });
  }

  /**
   * One transaction. With PIPELINING, MAIL, RCPT and DATA go in one write
   * (RFC 2920 §3.1: DATA may end a group) and the body only after 354;
   * without it, one command at a time. A transaction refused before DATA is
   * followed by RSET so the next one starts clean.
   */
  async transaction(from: string, to: string, encoded: Buffer): Promise<TransactionResult> {
    const t0 = now();
    const mailCmd = `MAIL FROM:<${from}> SIZE=${encoded.length}\r\n`;
    const rcptCmd = `RCPT TO:<${to}>\r\n`;
    let mail: Reply;
    let rcpt: Reply;
    let data: Reply;
    if (this.pipelining) {
      const replies = Promise.all([this.read(), this.read(), this.read()] as const);
      this.socket.write(mailCmd + rcptCmd + 'DATA\r\n');
      [mail, rcpt, data] = await replies;
    } else {
      this.socket.write(mailCmd);
      mail = await this.read();
      if (mail.code !== 250) return this.refused(mail.code, 'mail', t0);
      this.socket.write(rcptCmd);
      rcpt = await this.read();
      if (rcpt.code !== 250) return this.refused(rcpt.code, 'rcpt', t0);
      this.socket.write('DATA\r\n');
      data = await this.read();
    }
    if (data.code !== 354) {
      const [code, stage] = mail.code !== 250 ? [mail.code, 'mail' as const] : rcpt.code !== 250 ? [rcpt.code, 'rcpt' as const] : [data.code, 'data' as const];
      return this.refused(code, stage, t0);
    }
    const final = this.read();
    this.socket.write(encoded);
    const tData = now();
    const end = await final;
    const t1 = now();
    return { code: end.code, stage: 'end', dataMs: ms(tData, t1), txMs: ms(t0, t1) };
  }

  private async refused(code: number, stage: TransactionResult['stage'], t0: bigint): Promise<TransactionResult> {
    this.socket.write('RSET\r\n');
    await this.read();
    return { code, stage, dataMs: NaN, txMs: ms(t0, now()) };
  }

  async quit(): Promise<void> {
    if (this.closedError) return;
    try {
      this.socket.write('QUIT\r\n');
      await Promise.race([this.read(), new Promise((r) => setTimeout(r, 1000))]);
    } catch {
      // closing anyway
    } finally {
      this.socket.destroy();
    }
  }

  destroy(): void {
    this.socket.destroy();
  }
}
