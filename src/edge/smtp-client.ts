/*
 * edge/smtp-client — the gateway's client to the next hop, one command at a
 * time, so each RCPT's answer can be mirrored to the sender while the
 * sender waits (a before-queue proxy, as Postfix's smtpd_proxy_filter does).
 *
 * Hand-written because nodemailer's SMTP connection only offers a whole
 * transaction (MAIL, every RCPT, DATA) in one call; a proxy needs the steps.
 * It is small: RFC 5321 replies (multi-line, §4.2.1), EHLO extensions,
 * dot-stuffing (§4.5.2), a timeout on every command (§4.5.3.2).
 *
 * Trusts the next hop's replies for their code only; their text is cleaned
 * before anyone else sees it. The message is re-encoded on the way out: every
 * line ending becomes CRLF and leading dots are doubled, so a bare-LF
 * "\n.\n" in the input can never end the DATA early at a lenient next hop
 * and smuggle a second message through (SMTP smuggling, CVE-2023-51764).
 */
import { connect, type Socket } from 'node:net';

export interface SmtpReply {
  code: number;
  /** The reply lines' text without the codes, one line per reply line. */
  text: string;
}

export class SmtpClientError extends Error {
  constructor(
    message: string,
    readonly kind: 'connect' | 'timeout' | 'closed' | 'protocol',
  ) {
    super(message);
  }
}

export interface SmtpClientOptions {
  host: string;
  port: number;
  heloName: string;
  connectTimeoutMs?: number;
  commandTimeoutMs?: number;
  /** End of DATA can take long at a next hop that scans too (RFC 5321 §4.5.3.2.6 suggests 10 minutes). */
  dataTimeoutMs?: number;
}

interface Pending {
  resolve(reply: SmtpReply): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

const CRLF = Buffer.from('\r\n');

/** Pieces are gathered into writes of about this size: one TCP write per line would be one segment per line. */
const WRITE_CHUNK = 64 * 1024;

/**
 * CRLF line endings and dot-stuffing, with the terminating ".", produced
 * lazily in ~64 kB writes. Parts are encoded one after another; each must
 * end at a line boundary except the last (our Received line does).
 */
export function* encodeChunks(parts: readonly Uint8Array[]): Generator<Buffer> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  for (const [i, part] of parts.entries()) {
    for (const piece of encodeLines(part, i === parts.length - 1)) {
      pending.push(piece);
      pendingBytes += piece.length;
      if (pendingBytes >= WRITE_CHUNK) {
        yield Buffer.concat(pending, pendingBytes);
        pending = [];
        pendingBytes = 0;
      }
    }
  }
  if (pendingBytes > 0) yield Buffer.concat(pending, pendingBytes);
}

/** The whole encoded message as a few buffers (a load generator encodes once and sends many times). */
export function encodeData(raw: Uint8Array): Buffer[] {
  return [...encodeChunks([raw])];
}

const DOT = Buffer.from('.');
const END = Buffer.from('.\r\n');

/**
 * The pieces of one part (views into it, not copies). Runs of lines that need
 * nothing — CRLF-ended, no other CR, not starting with a dot — go out as one
 * piece; only a line that needs a change is taken apart.
 */
function* encodeLines(raw: Uint8Array, last: boolean): Generator<Buffer> {
  const buf = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  let start = 0;
  let run = 0;
  while (start < buf.length) {
    const lf = buf.indexOf(0x0a, start);
    if (lf > start && buf[lf - 1] === 0x0d && buf[start] !== 0x2e && buf.indexOf(0x0d, start) === lf - 1) {
      start = lf + 1;
      continue;
    }
    if (start > run) yield buf.subarray(run, start);
    run = lf === -1 ? buf.length : lf + 1;
    let line = buf.subarray(start, lf === -1 ? buf.length : lf);
    if (line.length > 0 && line[line.length - 1] === 0x0d) line = line.subarray(0, line.length - 1);
    // A bare CR inside a line is a line ending to some MTAs: make it an honest CRLF.
    for (let cr = line.indexOf(0x0d); cr !== -1; cr = line.indexOf(0x0d)) {
      const piece = line.subarray(0, cr);
      if (piece.length > 0 && piece[0] === 0x2e) yield DOT;
      yield piece;
      yield CRLF;
      line = line.subarray(cr + 1);
    }
    if (line.length > 0 && line[0] === 0x2e) yield DOT;
    yield line;
    yield CRLF;
    if (lf === -1) break;
    start = lf + 1;
  }
  if (buf.length > run) yield buf.subarray(run);
  if (last) yield END;
}

export class SmtpClient {
  readonly extensions = new Map<string, string>();
  private buffer = '';
  private lines: string[] = [];
  private readonly pending: Pending[] = [];
  private closed: Error | null = null;

  private constructor(
    private readonly socket: Socket,
    private readonly options: SmtpClientOptions,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (chunk) => this.onData(chunk));
    socket.on('error', (err) => this.fail(new SmtpClientError(`next hop connection: ${(err as NodeJS.ErrnoException).code ?? err.message}`, 'closed')));
    socket.on('close', () => this.fail(new SmtpClientError('next hop closed the connection', 'closed')));
  }

  /** Connects, reads the greeting and says EHLO (HELO if EHLO is refused). */
  static async open(options: SmtpClientOptions): Promise<SmtpClient> {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = connect({ host: options.host, port: options.port });
      const timer = setTimeout(() => {
        s.destroy();
        reject(new SmtpClientError(`next hop did not accept a connection within ${options.connectTimeoutMs ?? 10_000} ms`, 'timeout'));
      }, options.connectTimeoutMs ?? 10_000);
      s.once('connect', () => {
        clearTimeout(timer);
        resolve(s);
      });
      s.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(new SmtpClientError(`next hop unreachable: ${err.code ?? err.message}`, 'connect'));
      });
    });
    const client = new SmtpClient(socket, options);
    const greeting = await client.expect();
    if (greeting.code !== 220) {
      client.close();
      throw new SmtpClientError(`next hop greeted with ${greeting.code}`, 'protocol');
    }
    await client.hello(options.heloName);
    return client;
  }

  /**
   * EHLO (HELO if EHLO is refused), learning the extensions anew: at the
   * start, and again after XCLIENT, which restarts the session (XCLIENT_README).
   */
  async hello(name: string): Promise<void> {
    this.extensions.clear();
    const ehlo = await this.command(`EHLO ${name}`);
    if (ehlo.code === 250) {
      for (const line of ehlo.text.split('\n').slice(1)) {
        const [keyword, ...params] = line.trim().split(/\s+/);
        if (keyword) this.extensions.set(keyword.toUpperCase(), params.join(' '));
      }
      return;
    }
    const helo = await this.command(`HELO ${name}`);
    if (helo.code !== 250) {
      this.close();
      throw new SmtpClientError(`next hop refused HELO with ${helo.code}`, 'protocol');
    }
  }

  get isOpen(): boolean {
    return this.closed === null;
  }

  command(line: string, timeoutMs = this.options.commandTimeoutMs ?? 60_000): Promise<SmtpReply> {
    return this.commands([line], timeoutMs).then((replies) => replies[0]!);
  }

  /**
   * Several commands in one write (RFC 2920 PIPELINING: only to a next hop
   * that offered it), resolving with their replies in order. One write is one
   * syscall and one wake-up of the next hop instead of one per command (the
   * bench's profile put socket writes first in the gateway's CPU). Any reply
   * failing rejects all (the connection is then closed, as for one command).
   */
  commands(lines: readonly string[], timeoutMs = this.options.commandTimeoutMs ?? 60_000): Promise<SmtpReply[]> {
    if (lines.some((line) => /[\r\n]/.test(line))) return Promise.reject(new SmtpClientError('refusing to send a command with a line break', 'protocol'));
    const replies = lines.map(() => this.expect(timeoutMs));
    // Only the first reply's rejection is awaited by Promise.all; the others fail together with it.
    for (const r of replies.slice(1)) r.catch(() => {});
    if (!this.closed) this.socket.write(lines.length === 1 ? `${lines[0]}\r\n` : `${lines.join('\r\n')}\r\n`);
    return Promise.all(replies);
  }

  /**
   * Sends the message (given as consecutive parts, e.g. our Received line and
   * the raw message) after a 354, encoded as it is written, so a large message
   * is never held twice; resolves with the reply to the final ".".
   */
  data(parts: readonly Uint8Array[]): Promise<SmtpReply> {
    return this.dataEncoded(encodeChunks(parts));
  }

  /** As data(), for a message already in encodeData()'s form. */
  async dataEncoded(encoded: Iterable<Buffer>): Promise<SmtpReply> {
    const go = await this.command('DATA');
    if (go.code !== 354) return go;
    const reply = this.expect(this.options.dataTimeoutMs ?? 600_000);
    for (const piece of encoded) {
      if (!this.socket.write(piece)) await new Promise<void>((resolve) => this.socket.once('drain', resolve));
      if (this.closed) break;
    }
    return reply;
  }

  /** Says QUIT and lets the socket close; pending commands fail. */
  close(): void {
    if (this.closed) return;
    this.closed = new SmtpClientError('closed', 'closed');
    for (const p of this.pending.splice(0)) {
      clearTimeout(p.timer);
      p.reject(this.closed);
    }
    this.socket.end('QUIT\r\n');
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  private expect(timeoutMs = this.options.commandTimeoutMs ?? 60_000): Promise<SmtpReply> {
    if (this.closed) return Promise.reject(this.closed);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.fail(new SmtpClientError(`next hop did not answer within ${timeoutMs} ms`, 'timeout'));
      }, timeoutMs);
      this.pending.push({ resolve, reject, timer });
    });
  }

  private onData(chunk: Buffer): void {
    this.buffer += chunk.toString('latin1');
    if (this.buffer.length > 1_000_000) {
      this.fail(new SmtpClientError('next hop sent an overlong reply', 'protocol'));
      return;
    }
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) !== -1) {
      const line = this.buffer.slice(0, nl).replace(/\r$/, '');
      this.buffer = this.buffer.slice(nl + 1);
      const m = /^(\d{3})([ -])(.*)$/.exec(line) ?? /^(\d{3})()$/.exec(line);
      if (!m) {
        this.fail(new SmtpClientError('next hop sent a malformed reply', 'protocol'));
        return;
      }
      this.lines.push(m[3] ?? '');
      if (m[2] !== '-') {
        const next = this.pending.shift();
        const reply = { code: Number(m[1]), text: this.lines.join('\n') };
        this.lines = [];
        if (next) {
          clearTimeout(next.timer);
          next.resolve(reply);
        }
      }
    }
  }

  private fail(err: Error): void {
    if (this.closed) return;
    this.closed = err;
    for (const p of this.pending.splice(0)) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.socket.destroy();
  }
}
