/*
 * scan/clamd — a thin client for clamd's INSTREAM protocol (clamd(8)):
 * `zINSTREAM\0`, then chunks each prefixed by a 4-byte big-endian length,
 * then a zero-length chunk; the answer is `stream: OK`, `stream: NAME FOUND`
 * or `… ERROR`. One connection per scan (clamd closes after the reply).
 *
 * Trusts clamd's answer, nothing else. Every failure — refused, reset,
 * timed out, an ERROR reply, an answer it does not understand — is an
 * exception the scanner turns into `unscannable`; it never guesses "clean".
 */
import { connect, type Socket } from 'node:net';

export type ClamdAnswer = { kind: 'clean' } | { kind: 'infected'; name: string };

export class ClamdError extends Error {}

const CHUNK = 64 * 1024;

function target(url: string): { path: string } | { host: string; port: number } {
  if (url.startsWith('unix:')) return { path: url.slice(5) };
  const rest = url.slice('tcp://'.length);
  const at = rest.lastIndexOf(':');
  return { host: rest.slice(0, at).replace(/^\[(.*)\]$/, '$1'), port: Number(rest.slice(at + 1)) };
}

function exchange(url: string, command: string, body: Uint8Array | null, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket: Socket = connect(target(url) as never);
    let reply = '';
    let settled = false;
    const finish = (err: Error | null, value?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(value!);
    };
    const timer = setTimeout(() => finish(new ClamdError(`clamd did not answer within ${timeoutMs} ms`)), timeoutMs);
    socket.on('error', (err: NodeJS.ErrnoException) => finish(Object.assign(new ClamdError(`clamd connection failed: ${err.code ?? err.message}`), { code: err.code })));
    socket.on('data', (d) => {
      reply += d.toString('utf8');
      if (reply.includes('\0')) finish(null, reply.slice(0, reply.indexOf('\0')));
    });
    socket.on('end', () => finish(reply ? null : new ClamdError('clamd closed the connection without an answer'), reply));
    socket.on('connect', () => {
      socket.write(`z${command}\0`);
      if (body) {
        for (let o = 0; o < body.length; o += CHUNK) {
          const slice = body.subarray(o, o + CHUNK);
          const length = Buffer.alloc(4);
          length.writeUInt32BE(slice.length);
          socket.write(length);
          socket.write(slice);
        }
        socket.write(Buffer.alloc(4));
      }
    });
  });
}

/** A retry makes sense only when clamd was not there to answer (restarting, reloading). */
function isConnectionTrouble(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'EPIPE' || code === 'ENOENT';
}

export class ClamdClient {
  constructor(
    readonly url: string,
    private readonly timeoutMs: number,
    private readonly retryDelayMs = 250,
  ) {}

  async scan(bytes: Uint8Array): Promise<ClamdAnswer> {
    let reply: string;
    try {
      reply = await exchange(this.url, 'INSTREAM', bytes, this.timeoutMs);
    } catch (err) {
      if (!isConnectionTrouble(err)) throw err;
      await new Promise((r) => setTimeout(r, this.retryDelayMs));
      reply = await exchange(this.url, 'INSTREAM', bytes, this.timeoutMs);
    }
    return parseReply(reply);
  }

  async version(): Promise<string> {
    return (await exchange(this.url, 'VERSION', null, this.timeoutMs)).trim();
  }
}

export function parseReply(reply: string): ClamdAnswer {
  const text = reply.trim();
  if (text === 'stream: OK') return { kind: 'clean' };
  const found = /^stream: (.+) FOUND$/.exec(text);
  if (found) return { kind: 'infected', name: found[1]! };
  throw new ClamdError(`clamd: ${text.replace(/^stream: /, '').slice(0, 200) || 'empty answer'}`);
}
