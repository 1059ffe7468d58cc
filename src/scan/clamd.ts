/*
 * scan/clamd — a thin client for clamd's socket protocol (clamd(8)).
 *
 * Commands are sent in the z-form (`zCOMMAND\0`, answers end with `\0`).
 * INSTREAM sends the bytes as chunks, each prefixed by its length as a 4-byte
 * big-endian integer, then a zero-length chunk; the answer is `stream: OK`,
 * `stream: NAME FOUND` or `… ERROR` (e.g. `INSTREAM size limit exceeded`,
 * when the stream is longer than clamd's StreamMaxLength).
 *
 * Scans of up to 1 MiB go over kept connections: `zIDSESSION\0` opens a
 * session in which clamd answers each command with `N: …` and keeps the
 * connection. A profile under the bench's load showed connect and close at
 * ~10% of the gateway's CPU (and clamd accepts a connection per scan too).
 * One scan at a time per connection — a pool of idle sessions, never a queue
 * on one — so a hung scan holds only its own connection, which its timeout
 * destroys. A session goes back to the pool only after a clean or FOUND
 * answer; anything else destroys it. Idle sessions are closed after 5 s
 * (clamd's own IdleTimeout is 30 s); one that clamd closed meanwhile (a
 * restart) fails before any answer and the scan moves at once to another or
 * a new connection. Bigger streams and VERSION/PING use one connection per
 * command, which clamd closes after the answer.
 *
 * Trusts clamd's answer, nothing else. Every failure — refused, reset, timed
 * out, aborted, an ERROR answer, an answer it does not understand — is a
 * ClamdError that the scanner turns into `unscannable`; it never guesses
 * "clean". It retries exactly once, and only when clamd was not there to
 * answer at all (refused or reset before any answer: clamd restarting or
 * reloading); a timeout is never retried, it would only double the wait.
 */
import { connect, type Socket } from 'node:net';
import { cleanText } from '../obs/clean.ts';

export type ClamdAnswer = { kind: 'clean' } | { kind: 'infected'; name: string };

/**
 * `unavailable`: clamd could not be reached or did not answer in time.
 * `refused`: clamd answered with an error about this input (size limit, …).
 */
export class ClamdError extends Error {
  constructor(
    message: string,
    readonly reason: 'unavailable' | 'refused',
    readonly code?: string,
  ) {
    super(message);
    this.name = 'ClamdError';
  }
}

/** 64 KiB chunks: well under clamd's default StreamMaxLength and socket buffers. */
const CHUNK = 64 * 1024;

export function clamdTarget(url: string): { path: string } | { host: string; port: number } {
  if (url.startsWith('unix:')) return { path: url.slice('unix:'.length) };
  if (!url.startsWith('tcp://')) throw new ClamdError(`clamd address must be tcp://HOST:PORT or unix:PATH, got "${cleanText(url, 80)}"`, 'unavailable');
  const rest = url.slice('tcp://'.length);
  const at = rest.lastIndexOf(':');
  return { host: rest.slice(0, at).replace(/^\[(.*)\]$/, '$1'), port: Number(rest.slice(at + 1)) };
}

/** Streams up to this size are framed in memory and written at once (a copy of at most 1 MiB). */
const ONE_WRITE = 1024 * 1024;

/**
 * `zCOMMAND\0`, then for INSTREAM the body as length-prefixed chunks and the
 * zero-length end — as pieces that point into the body, not a copy of it:
 * written corked they leave in one writev (see SessionPool.instream).
 */
function frameParts(command: string, body: Uint8Array | null): Uint8Array[] {
  const parts: Uint8Array[] = [Buffer.from(`z${command}\0`)];
  if (!body) return parts;
  for (let i = 0; i < body.length; i += CHUNK) {
    const slice = body.subarray(i, i + CHUNK);
    parts.push(uint32(slice.length), slice);
  }
  parts.push(uint32(0));
  return parts;
}

function uint32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n, 0);
  return b;
}

/** The same frame in one buffer, for a write that must wait for 'drain' as a whole. */
function frame(command: string, body: Uint8Array | null): Buffer {
  return Buffer.concat(frameParts(command, body));
}

/** Writes and waits for 'drain' when the socket buffer is full: a 50 MB message is not copied into memory twice. */
async function send(socket: Socket, bytes: Uint8Array, closed: () => boolean): Promise<void> {
  if (closed()) return;
  if (!socket.write(bytes)) await new Promise<void>((resolve) => {
    const done = () => {
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    socket.on('drain', done);
    socket.on('close', done);
  });
}

/**
 * One command on one connection. Resolves with the answer up to its NUL;
 * an answer wins over a write error that follows it (clamd answers
 * `INSTREAM size limit exceeded` and closes while we are still writing).
 */
function exchange(url: string, command: string, body: Uint8Array | null, timeoutMs: number, signal?: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new ClamdError('clamd call aborted', 'unavailable', 'ABORTED'));
    let socket: Socket;
    try {
      socket = connect(clamdTarget(url) as never);
    } catch (err) {
      return reject(err instanceof ClamdError ? err : new ClamdError(`clamd connection failed: ${(err as Error).message}`, 'unavailable'));
    }
    let reply = '';
    let settled = false;
    const finish = (err: ClamdError | null, value?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.destroy();
      if (err) reject(err);
      else resolve(value!);
    };
    const onAbort = () => finish(new ClamdError('clamd call aborted', 'unavailable', 'ABORTED'));
    signal?.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(() => finish(new ClamdError(`clamd did not answer within ${timeoutMs} ms`, 'unavailable', 'ETIMEDOUT')), timeoutMs);
    socket.on('error', (err: NodeJS.ErrnoException) => {
      const answered = reply.indexOf('\0');
      if (answered >= 0 || reply.length > 0) return finish(null, answered >= 0 ? reply.slice(0, answered) : reply);
      finish(new ClamdError(`clamd connection failed: ${err.code ?? err.message}`, 'unavailable', err.code));
    });
    socket.on('data', (d: Buffer) => {
      reply += d.toString('utf8');
      if (reply.length > 64 * 1024) return finish(new ClamdError('clamd answer longer than 64 KiB', 'unavailable'));
      const end = reply.indexOf('\0');
      if (end >= 0) finish(null, reply.slice(0, end));
    });
    socket.on('close', () => finish(reply ? null : new ClamdError('clamd closed the connection without an answer', 'unavailable', 'ECONNRESET'), reply));
    socket.on('connect', () => {
      void (async () => {
        if (!body || body.length <= ONE_WRITE) {
          // Command, chunks and the terminating zero length in one write: one syscall, not four.
          await send(socket, frame(command, body), () => settled);
          return;
        }
        await send(socket, Buffer.from(`z${command}\0`), () => settled);
        for (let o = 0; o < body.length && !settled; o += CHUNK) {
          const slice = body.subarray(o, o + CHUNK);
          const length = Buffer.alloc(4);
          length.writeUInt32BE(slice.length);
          await send(socket, length, () => settled);
          await send(socket, slice, () => settled);
        }
        await send(socket, Buffer.alloc(4), () => settled);
      })();
    });
  });
}

/**
 * Idle sessions kept open (per client) and how long. Enough for every scan in
 * flight at once under load (sessions × scan.clamdConcurrency: 20 × 3 in the
 * bench): with 16, a third of the connections were closed on return and
 * opened again for the next scan (0.56 connects per unique message, each
 * socket/connect/close a few system calls here and an accept in clamd).
 * An idle session costs a file descriptor on each side and no clamd thread.
 */
const IDLE_SESSIONS = 64;
const SESSION_IDLE_MS = 5_000;

/** A kept session failed before any answer: clamd closed it while it was idle. */
class StaleSession extends Error {}

interface Session {
  socket: Socket;
  idleTimer: NodeJS.Timeout | null;
  drop: () => void;
}

class SessionPool {
  private readonly idle: Session[] = [];
  constructor(
    private readonly url: string,
    private readonly max: number,
  ) {}

  /** Connections opened for sessions (for tests: proof that they are kept). */
  opened = 0;

  take(): Session | null {
    const session = this.idle.pop();
    if (!session) return null;
    clearTimeout(session.idleTimer!);
    session.socket.off('error', session.drop).off('close', session.drop);
    return session;
  }

  give(session: Session): void {
    if (this.idle.length >= this.max || session.socket.destroyed) return void session.socket.destroy();
    session.drop = () => {
      clearTimeout(session.idleTimer!);
      const i = this.idle.indexOf(session);
      if (i >= 0) this.idle.splice(i, 1);
      session.socket.destroy();
    };
    session.socket.on('error', session.drop).on('close', session.drop);
    session.idleTimer = setTimeout(session.drop, SESSION_IDLE_MS).unref();
    this.idle.push(session);
  }

  /**
   * One INSTREAM in a session: a kept one when there is one, else a new one.
   * Rejects with StaleSession when a kept session failed before any answer.
   */
  instream(body: Uint8Array, timeoutMs: number, signal?: AbortSignal): Promise<string> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(new ClamdError('clamd call aborted', 'unavailable', 'ABORTED'));
      let session = this.take();
      const reused = session !== null;
      if (!session) {
        let socket: Socket;
        try {
          socket = connect(clamdTarget(this.url) as never);
        } catch (err) {
          return reject(err instanceof ClamdError ? err : new ClamdError(`clamd connection failed: ${(err as Error).message}`, 'unavailable'));
        }
        socket.setNoDelay(true);
        this.opened++;
        session = { socket, idleTimer: null, drop: () => {} };
      }
      const { socket } = session;
      let reply = '';
      let settled = false;
      const finish = (err: Error | null, value?: string) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        socket.off('data', onData).off('error', onError).off('close', onClose);
        if (err) {
          socket.destroy();
          return reject(err);
        }
        const m = /^\d+: (.*)$/s.exec(value!);
        if (!m) {
          socket.destroy();
          return reject(new ClamdError(`clamd: unexpected answer "${cleanText(value!, 120) || 'empty'}"`, 'unavailable'));
        }
        // Only a session that just gave a verdict is known to be in a good state.
        if (/^stream: (OK|.+ FOUND)$/.test(m[1]!.trim())) this.give(session!);
        else socket.destroy();
        resolve(m[1]!);
      };
      const failure = (code: string | undefined, message: string) =>
        reused && reply.length === 0 ? new StaleSession(message) : new ClamdError(message, 'unavailable', code);
      const onAbort = () => finish(new ClamdError('clamd call aborted', 'unavailable', 'ABORTED'));
      const onError = (err: NodeJS.ErrnoException) => finish(failure(err.code, `clamd connection failed: ${err.code ?? err.message}`));
      const onClose = () => finish(failure('ECONNRESET', 'clamd closed the connection without an answer'));
      const onData = (d: Buffer) => {
        reply += d.toString('utf8');
        if (reply.length > 64 * 1024) return finish(new ClamdError('clamd answer longer than 64 KiB', 'unavailable'));
        const end = reply.indexOf('\0');
        if (end >= 0) finish(null, reply.slice(0, end));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const timer = setTimeout(() => finish(new ClamdError(`clamd did not answer within ${timeoutMs} ms`, 'unavailable', 'ETIMEDOUT')), timeoutMs);
      socket.on('data', onData).on('error', onError).on('close', onClose);
      // One writev: a new session's IDSESSION (it has no answer), the command and the body's chunks, uncopied.
      socket.cork();
      for (const part of reused ? frameParts('INSTREAM', body) : [...frameParts('IDSESSION', null), ...frameParts('INSTREAM', body)]) socket.write(part);
      socket.uncork();
    });
  }

  close(): void {
    for (let s = this.take(); s; s = this.take()) s.socket.destroy();
  }
}

/** A retry makes sense only when clamd was not there to answer at all (restarting, reloading). */
function isConnectionTrouble(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'EPIPE' || code === 'ENOENT';
}

export class ClamdClient {
  /** INSTREAM commands sent (retries included): for tests and metrics. */
  scans = 0;
  private readonly pool: SessionPool | null;

  constructor(
    readonly url: string,
    private readonly timeoutMs: number,
    private readonly retryDelayMs = 250,
    /** Idle sessions to keep; 0: a connection per scan. */
    idleSessions = IDLE_SESSIONS,
  ) {
    this.pool = idleSessions > 0 ? new SessionPool(url, idleSessions) : null;
  }

  /** An INSTREAM in a session: stale kept sessions are skipped at once; then the usual one retry. */
  private async inSession(pool: SessionPool, body: Uint8Array, signal?: AbortSignal): Promise<string> {
    const attempt = async (): Promise<string> => {
      for (;;) {
        try {
          return await pool.instream(body, this.timeoutMs, signal);
        } catch (err) {
          if (!(err instanceof StaleSession)) throw err;
        }
      }
    };
    try {
      return await attempt();
    } catch (err) {
      if (!isConnectionTrouble(err) || signal?.aborted) throw err;
      await new Promise((r) => setTimeout(r, this.retryDelayMs));
      if (signal?.aborted) throw err;
      return attempt();
    }
  }

  /** Connections opened for sessions so far. */
  get sessionsOpened(): number {
    return this.pool?.opened ?? 0;
  }

  /** Closes the kept sessions. */
  close(): void {
    this.pool?.close();
  }

  private async once(command: string, body: Uint8Array | null, signal?: AbortSignal): Promise<string> {
    try {
      return await exchange(this.url, command, body, this.timeoutMs, signal);
    } catch (err) {
      if (!isConnectionTrouble(err) || signal?.aborted) throw err;
      await new Promise((r) => setTimeout(r, this.retryDelayMs));
      if (signal?.aborted) throw err;
      return exchange(this.url, command, body, this.timeoutMs, signal);
    }
  }

  /** Scans bytes with INSTREAM. Throws ClamdError on anything but OK or FOUND. */
  async scan(bytes: Uint8Array, signal?: AbortSignal): Promise<ClamdAnswer> {
    this.scans++;
    if (this.pool && bytes.length <= ONE_WRITE) return parseReply(await this.inSession(this.pool, bytes, signal));
    return parseReply(await this.once('INSTREAM', bytes, signal));
  }

  /** `ClamAV 1.4.6/27001/Sun Nov 22 12:20:27 2026`: engine / signature version / signature date. */
  async version(signal?: AbortSignal): Promise<string> {
    const text = (await this.once('VERSION', null, signal)).trim();
    if (!/^ClamAV /.test(text)) throw new ClamdError(`clamd: unexpected VERSION answer "${cleanText(text, 80)}"`, 'unavailable');
    return text;
  }

  /** True when clamd answers PONG. */
  async ping(signal?: AbortSignal): Promise<boolean> {
    try {
      return (await this.once('PING', null, signal)).trim() === 'PONG';
    } catch {
      return false;
    }
  }
}

/** The signature database version in a VERSION answer (`27001`), or the whole answer when it has none. */
export function signatureVersion(version: string): string {
  return version.split('/')[1] ?? version;
}

export function parseReply(reply: string): ClamdAnswer {
  const text = reply.trim();
  if (text === 'stream: OK') return { kind: 'clean' };
  const found = /^stream: (.+) FOUND$/.exec(text);
  // With AlertExceedsMax, clamd names the limit it stopped at instead of answering OK for what it did not read:
  // that is a message nobody looked inside, so unscannable, never infected (it may be legitimate) nor clean.
  if (found && /^Heuristics\.Limits\.Exceeded/.test(found[1]!)) return refuse(`clamd stopped at a scan limit (${found[1]})`);
  if (found) return { kind: 'infected', name: cleanText(found[1]!, 120) };
  const error = /^(?:stream: )?(.*?)\.? ERROR$/.exec(text);
  if (error) return refuse(`clamd: ${error[1] || 'error'}`);
  throw new ClamdError(`clamd: unexpected answer "${cleanText(text, 120) || 'empty'}"`, 'unavailable');
}

function refuse(message: string): never {
  throw new ClamdError(cleanText(message, 160), 'refused');
}
