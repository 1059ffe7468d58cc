/*
 * test/helpers/smtp-talk — a raw SMTP conversation for attack tests: one
 * socket, bound to a chosen loopback address (127.x.y.z plays another
 * client), commands written exactly as given, replies read one at a time
 * (multi-line replies joined, RFC 5321 §4.2.1). Every wait has a timeout.
 */
import { connect, type Socket } from 'node:net';

export interface TalkReply {
  code: number;
  text: string;
}

export class SmtpTalk {
  private buffer = '';
  private lines: string[] = [];
  private waiter: (() => void) | null = null;
  closed = false;

  private constructor(
    readonly socket: Socket,
    /** How long a reply is waited for unless a call says otherwise. */
    private readonly timeoutMs: number,
  ) {
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.buffer += d;
      let i;
      while ((i = this.buffer.indexOf('\n')) >= 0) {
        this.lines.push(this.buffer.slice(0, i).replace(/\r$/, ''));
        this.buffer = this.buffer.slice(i + 1);
      }
      this.waiter?.();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
      this.waiter?.();
    });
  }

  static open(port: number, localAddress = '127.0.0.1', timeoutMs = 10_000): Promise<SmtpTalk> {
    return new Promise((resolve, reject) => {
      const socket = connect({ port, host: '127.0.0.1', localAddress });
      socket.once('connect', () => resolve(new SmtpTalk(socket, timeoutMs)));
      socket.once('error', reject);
    });
  }

  /** The next whole reply; null when the server closed the connection first. */
  async reply(timeoutMs = this.timeoutMs): Promise<TalkReply | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const end = this.lines.findIndex((l) => /^\d{3} /.test(l) || !/^\d{3}-/.test(l));
      if (end >= 0) {
        const lines = this.lines.splice(0, end + 1);
        return { code: Number(lines[end]!.slice(0, 3)), text: lines.map((l) => l.slice(4)).join('\n') };
      }
      if (this.closed) return null;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no reply within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiter = null;
    }
  }

  write(text: string | Buffer): void {
    this.socket.write(text);
  }

  /** Writes one command line and reads its reply. */
  async command(line: string, timeoutMs?: number): Promise<TalkReply | null> {
    this.write(`${line}\r\n`);
    return this.reply(timeoutMs);
  }

  /** Greeting and EHLO; the greeting's reply. */
  async hello(helo = 'client.example.org'): Promise<TalkReply | null> {
    const greeting = await this.reply();
    if (!greeting || greeting.code !== 220) return greeting;
    return this.command(`EHLO ${helo}`);
  }

  /** One whole transaction; the reply that ended it. */
  async send(from: string, to: string, body: string): Promise<TalkReply | null> {
    for (const line of [`MAIL FROM:<${from}>`, `RCPT TO:<${to}>`, 'DATA']) {
      const r = await this.command(line);
      if (!r || (r.code !== 250 && r.code !== 354)) return r;
    }
    return this.command(`${body.replace(/\r?\n/g, '\r\n').replace(/(^|\r\n)\./g, '$1..')}\r\n.`);
  }

  close(): void {
    this.socket.destroy();
  }
}

/** A small clean message. */
export function cleanMessage(subject: string): string {
  return `From: a@example.org\r\nTo: user@example.net\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, '')}.${Math.random().toString(36).slice(2)}@example.org>\r\n\r\nhello\r\n`;
}
