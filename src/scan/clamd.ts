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
 * destroys. At most a bounded number of connections are open at once (kept
 * ones included; see DEFAULT_CONNECTIONS for why): past it a scan waits its
 * turn here. A session goes back to the pool only after a clean or FOUND
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

/** Streams up to this size go over a kept session, written at once (corked, no wait for 'drain'); larger ones on a connection of their own, written as the socket drains. */
const ONE_WRITE = 1024 * 1024;

/**
 * `zCOMMAND\0`, then for INSTREAM the body as length-prefixed chunks and the
 * zero-length end — as pieces that point into the body, not a copy of it:
 * written corked they leave in one writev (see Connections.instream).
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
async function exchange(connections: Connections, url: string, command: string, body: Uint8Array | null, timeoutMs: number, signal?: AbortSignal): Promise<string> {
  await connections.lease(false, signal);
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      connections.unused();
      return reject(aborted());
    }
    let socket: Socket;
    try {
      socket = connect(clamdTarget(url) as never);
    } catch (err) {
      connections.unused();
      return reject(err instanceof ClamdError ? err : new ClamdError(`clamd connection failed: ${(err as Error).message}`, 'unavailable'));
    }
    connections.hold(socket);
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
    const onAbort = () => finish(aborted());
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
 * How many connections to clamd one process may have open at once — kept
 * sessions, scans in flight and one-off commands together — unless the
 * caller says otherwise (the scanner passes its share of
 * scan.clamdConnections). Why there is a bound at all: clamd stops accepting
 * connections while it has more than MaxQueue open (default 100; idle
 * sessions count, clamd/server-th.c), and a connect it has not accepted waits
 * in its listen queue until some other connection closes. Without a bound, a
 * burst of scans from a busy node (or from several nodes or workers on one
 * clamd) opened more than that, and the scans past it waited until kept
 * sessions timed out: 1.2–3.7 s in the bench (bench/README.md).
 */
const DEFAULT_CONNECTIONS = 32;
/** Idle sessions are closed after this; clamd's own idle limit is longer. */
const SESSION_IDLE_MS = 5_000;

/** A kept session failed before any answer: clamd closed it while it was idle. */
class StaleSession extends Error {}

/** An open connection's place in the budget: given up once, when it closes, unless it was handed on. */
interface Place {
  held: boolean;
}

interface Session {
  socket: Socket;
  place: Place;
  idleTimer: NodeJS.Timeout | null;
  drop: () => void;
}

interface Waiter {
  /** A session would do (a scan); otherwise only a place for a new connection (a one-off command). */
  session: boolean;
  resolve(session: Session | null): void;
  reject(err: Error): void;
  signal: AbortSignal | undefined;
  onAbort: () => void;
}

/**
 * This process's connections to clamd, at most `maxOpen` open: a scan takes a
 * kept session or a place for a new connection, or waits — first come, first
 * served — for a session another scan gives back or a place another
 * connection gives up; an idle session gives up its place to a one-off
 * command at once. clamd runs MaxThreads scans at a time anyway, so past
 * maxOpen the queue moves from clamd's side to ours, with the scan's own
 * deadline (its signal) on the wait.
 */
class Connections {
  private readonly idle: Session[] = [];
  private readonly waiting: Waiter[] = [];
  private open = 0;
  /** Connections opened for sessions (for tests: proof that they are kept). */
  opened = 0;
  /** The most connections open at once so far (for tests: proof of the bound). */
  mostOpen = 0;

  constructor(
    private readonly url: string,
    private readonly maxOpen: number,
    private readonly maxIdle: number,
  ) {}

  /** A kept session (when `session` allows one and one is idle) or a place for a new connection (null). */
  lease(session: boolean, signal?: AbortSignal): Promise<Session | null> {
    if (signal?.aborted) return Promise.reject(aborted());
    if (session && this.idle.length > 0) return Promise.resolve(this.take());
    if (this.open < this.maxOpen) {
      this.open++;
      this.mostOpen = Math.max(this.mostOpen, this.open);
      return Promise.resolve(null);
    }
    if (this.idle.length > 0) {
      this.retire(this.take());
      return Promise.resolve(null);
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        session,
        resolve,
        reject,
        signal,
        onAbort: () => {
          const i = this.waiting.indexOf(waiter);
          if (i >= 0) this.waiting.splice(i, 1);
          reject(aborted());
        },
      };
      signal?.addEventListener('abort', waiter.onAbort, { once: true });
      this.waiting.push(waiter);
    });
  }

  /** The place of a connection just opened on a leased place: given up when its socket closes. */
  hold(socket: Socket): Place {
    const place: Place = { held: true };
    socket.once('close', () => {
      if (!place.held) return;
      place.held = false;
      this.freed();
    });
    return place;
  }

  /** A leased place whose connection could not even be created. */
  unused(): void {
    this.freed();
  }

  private freed(): void {
    const waiter = this.next();
    if (waiter) waiter.resolve(null);
    else this.open--;
  }

  private next(): Waiter | undefined {
    const waiter = this.waiting.shift();
    waiter?.signal?.removeEventListener('abort', waiter.onAbort);
    return waiter;
  }

  private take(): Session {
    const session = this.idle.pop()!;
    clearTimeout(session.idleTimer!);
    session.socket.off('error', session.drop).off('close', session.drop);
    return session;
  }

  /** Closes a session whose place goes on to someone else. */
  private retire(session: Session): void {
    session.place.held = false;
    session.socket.destroy();
  }

  give(session: Session): void {
    if (session.socket.destroyed) return;
    const waiter = this.next();
    if (waiter?.session) return waiter.resolve(session);
    if (waiter) {
      this.retire(session);
      return waiter.resolve(null);
    }
    if (this.idle.length >= this.maxIdle) return void session.socket.destroy();
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
  async instream(body: Uint8Array, timeoutMs: number, signal?: AbortSignal): Promise<string> {
    const kept = await this.lease(true, signal);
    if (signal?.aborted) {
      if (kept) this.give(kept);
      else this.unused();
      throw aborted();
    }
    return new Promise((resolve, reject) => {
      let session = kept;
      const reused = session !== null;
      if (!session) {
        let socket: Socket;
        try {
          socket = connect(clamdTarget(this.url) as never);
        } catch (err) {
          this.unused();
          return reject(err instanceof ClamdError ? err : new ClamdError(`clamd connection failed: ${(err as Error).message}`, 'unavailable'));
        }
        socket.setNoDelay(true);
        this.opened++;
        session = { socket, place: this.hold(socket), idleTimer: null, drop: () => {} };
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
      const onAbort = () => finish(aborted());
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

  /** Closes the kept sessions. */
  close(): void {
    while (this.idle.length > 0) this.take().socket.destroy();
  }
}

function aborted(): ClamdError {
  return new ClamdError('clamd call aborted', 'unavailable', 'ABORTED');
}

/** A retry makes sense only when clamd was not there to answer at all (restarting, reloading). */
function isConnectionTrouble(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'EPIPE' || code === 'ENOENT';
}

export class ClamdClient {
  /** INSTREAM commands sent (retries included): for tests and metrics. */
  scans = 0;
  private readonly connections: Connections;
  private readonly sessions: boolean;

  constructor(
    readonly url: string,
    private readonly timeoutMs: number,
    private readonly retryDelayMs = 250,
    limits: {
      /** Connections open at once, kept sessions included (DEFAULT_CONNECTIONS). */
      connections?: number;
      /** Idle sessions to keep (default: as many as connections); 0: a connection per scan. */
      idleSessions?: number;
    } = {},
  ) {
    const connections = limits.connections ?? DEFAULT_CONNECTIONS;
    const idle = Math.min(limits.idleSessions ?? connections, connections);
    this.connections = new Connections(url, connections, idle);
    this.sessions = idle > 0;
  }

  /** An INSTREAM in a session: stale kept sessions are skipped at once; then the usual one retry. */
  private async inSession(body: Uint8Array, signal?: AbortSignal): Promise<string> {
    const attempt = async (): Promise<string> => {
      for (;;) {
        try {
          return await this.connections.instream(body, this.timeoutMs, signal);
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
    return this.connections.opened;
  }

  /** The most connections this client had open to clamd at once. */
  get mostOpen(): number {
    return this.connections.mostOpen;
  }

  /** Closes the kept sessions. */
  close(): void {
    this.connections.close();
  }

  private async once(command: string, body: Uint8Array | null, signal?: AbortSignal): Promise<string> {
    try {
      return await exchange(this.connections, this.url, command, body, this.timeoutMs, signal);
    } catch (err) {
      if (!isConnectionTrouble(err) || signal?.aborted) throw err;
      await new Promise((r) => setTimeout(r, this.retryDelayMs));
      if (signal?.aborted) throw err;
      return exchange(this.connections, this.url, command, body, this.timeoutMs, signal);
    }
  }

  /** Scans bytes with INSTREAM. Throws ClamdError on anything but OK or FOUND. */
  async scan(bytes: Uint8Array, signal?: AbortSignal): Promise<ClamdAnswer> {
    this.scans++;
    if (this.sessions && bytes.length <= ONE_WRITE) return parseReply(await this.inSession(bytes, signal));
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
