/*
 * edge/smtp-server-ext — adjustments to smtp-server's connection, made
 * by subclassing (smtp-server exposes no option for either):
 *
 * 1. The pause before the greeting. smtp-server waits a fixed 100 ms to catch
 *    clients that talk before they are greeted (a spam-engine tell, answered
 *    "421 You talk too soon"). We keep that defence as the default and make
 *    the pause a setting (`smtp.greetingDelayMs`) so it can be measured and
 *    tuned. 0 turns the check off: the greeting goes out as soon as the
 *    connection is admitted, and a command that arrives before it (the
 *    client did not wait, or the admission's store lookups took a moment)
 *    waits for the greeting and is then answered, never told it talks too
 *    soon — smtp-server refuses input before its greeting whatever the pause.
 * 2. Enhanced status codes. smtp-server picks one from the reply's number
 *    (550 → 5.1.1, "bad mailbox"), which would misstate why a virus was
 *    refused. A reply whose text already starts with an RFC 3463 code keeps
 *    its own; the others get smtp-server's.
 * 3. XFORWARD (Postfix XFORWARD_README) for a trusted peer only. smtp-server's
 *    own `useXForward` trusts exact addresses, not networks, knows no
 *    [TEMPUNAVAIL], refuses a whole command over an odd NAME and rewrites
 *    session.remoteAddress. Here the peer is checked against the CIDR list
 *    of `smtp.trustXforwardFrom` (the socket's address, never a forwarded
 *    one), XFORWARD is advertised in EHLO only to it, anyone else gets
 *    `550 5.7.0` and a log line, and the values go through edge/xforward
 *    into edge/client, which every caller asks for the effective client.
 *    XCLIENT is never accepted: it would let a peer become someone else for
 *    our relay policy as well, and no MTA in front of us needs it.
 * 4. Half-closed sockets. Exim pipelines QUIT after the final dot of its last
 *    message and shuts its write side (FIN) at once. Node's default closes
 *    our side on that FIN, and smtp-server writes only to a socket whose
 *    readyState is "open" (a half-closed one is "writeOnly"): either way the
 *    reply to the dot was lost — after the message may already have been
 *    relayed, so Exim's retry delivered it twice. The server is made
 *    allowHalfOpen and a connection's socket reports "writeOnly" as "open" to
 *    smtp-server, so the reply and the 221 are written and smtp-server closes
 *    the socket after QUIT. A client that half-closes with nothing in flight
 *    (no message being received or judged) is closed at once, and one that
 *    half-closed during a message right after its reply: a half-closed client
 *    sends nothing more, so it must not hold a connection place
 *    (test/mta/exim.test.ts, test/attacks/connection-abuse.test.ts).
 *
 * 5. Replies to pipelined commands leave in one write: 250 and 354 are held
 *    (socket.cork) while the parser is still answering the chunk of input it
 *    has, and sent when it waits for more — see _createParser. Each write to
 *    a loopback socket was the largest single cost in the bench's profile.
 *
 * 6. Ending one session from outside its command flow (`drop`): the DATA
 *    deadline (smtp.dataTimeoutMs) must close a connection that is still
 *    trickling its message, where smtp-server would wait for the final dot.
 *
 * 7. The DATA reader finds line-leading dots with Buffer.indexOf, not a byte
 *    loop in JavaScript (edge/data-stream, why and how it stays exact there).
 *
 * These override smtp-server internals (init, send): the version is pinned
 * in package.json and test/edge covers both behaviours.
 */
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { recordForwarded } from './client.ts';
import { feedDataStream } from './data-stream.ts';
import { parseXforward, type Forwarded } from './xforward.ts';

const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3} /;

/** Who may send XFORWARD, and where its outcome is told (the gateway logs it). */
export interface XforwardGate {
  trusted(peerIp: string): boolean;
  onRefused(peerIp: string): void;
  onAccepted(peerIp: string, attrs: Forwarded): void;
}

const NO_XFORWARD: XforwardGate = { trusted: () => false, onRefused: () => {}, onAccepted: () => {} };

type Callback = () => void;

class BackstopConnection extends SMTPConnection {
  constructor(
    server: SMTPServer,
    socket: Socket | TLSSocket,
    options: ConstructorParameters<typeof SMTPConnection>[2],
    private readonly greetingDelayMs: number,
    private readonly xforward: XforwardGate = NO_XFORWARD,
  ) {
    super(server, socket, options);
    // Item 4: "writeOnly" (the client sent FIN, we may still answer) counts as open for smtp-server's writes.
    const proto = Object.getPrototypeOf(socket) as object;
    const own = Object.getOwnPropertyDescriptor(proto, 'readyState') ?? Object.getOwnPropertyDescriptor(Object.getPrototypeOf(proto), 'readyState');
    if (own?.get) {
      const get = own.get;
      Object.defineProperty(socket, 'readyState', { configurable: true, get: () => (get.call(socket) === 'writeOnly' ? 'open' : get.call(socket)) });
    }
    socket.once('end', () => {
      this.peerEnded = true;
      this.closeIfIdle();
    });
  }

  private peerEnded = false;

  /** Item 4: a half-closed client is let go once no message of it is being received or judged. */
  private closeIfIdle(): void {
    setImmediate(() => {
      const self = this as unknown as { _dataStream: unknown; _closed: boolean; _closing: boolean };
      if (!self._dataStream && !self._closed && !self._closing) this.close();
    });
  }

  private get peer(): string {
    return (this as unknown as { _originalRemoteAddress: string })._originalRemoteAddress;
  }

  /**
   * smtp-server asks this for its EHLO keywords (it offers "XFORWARD NAME ADDR
   * PORT PROTO HELO IDENT SOURCE", Postfix's list) and before XCLIENT/XFORWARD;
   * see the header, item 3.
   */
  override _proxyCommandAllowed(command: string): boolean {
    return command === 'XFORWARD' && this.xforward.trusted(this.peer);
  }

  /** How deep the parser is inside a chunk of the client's input (its _write calls nest). */
  private inInput = 0;
  /** The socket whose replies are held (corked) until the input in hand is answered. */
  private holding: Socket | TLSSocket | null = null;

  /**
   * Replies held while the client's input in hand is being answered, sent
   * together once the parser has finished that chunk and waits for more
   * (RFC 2920 §3.1, as Postfix's smtpd flushes when its input buffer is
   * empty): a pipelining client's MAIL 250, RCPT 250 and DATA 354 leave in
   * one write, not three. A client that waits for each reply sends one
   * command per chunk and gets each reply at once. Only 250 and 354 are held:
   * any other reply (220 before the TLS upgrade, 421 before a close, every
   * refusal) first sends what is held, then goes out itself.
   */
  override _createParser(): ReturnType<SMTPConnection['_createParser']> {
    const parser = super._createParser();
    parser._feedDataStream = feedDataStream; // item 7
    const write = parser._write.bind(parser);
    parser._write = (chunk, encoding, next) => {
      this.inInput++;
      write(chunk, encoding, (err?: Error | null) => {
        if (--this.inInput === 0) this.release();
        next(err);
      });
    };
    return parser;
  }

  private release(): void {
    const socket = this.holding;
    this.holding = null;
    socket?.uncork();
  }

  override send(code: number, data?: string | string[] | null, context?: string | false): void {
    const own = typeof data === 'string' && ENHANCED.test(data);
    if ((code === 250 || code === 354) && this.inInput > 0) {
      if (this.holding === null && !this._socket.destroyed) {
        this.holding = this._socket;
        this.holding.cork();
      }
    } else this.release();
    super.send(code, data, own ? false : context);
    if (this.peerEnded && code !== 354) this.closeIfIdle();
  }

  override close(): void {
    this.release();
    super.close();
  }

  override handler_XFORWARD(command: Buffer | string, callback: Callback): void {
    // Postfix's replies (smtpd.c xforward_cmd), so an MTA in front reads them as it would its own.
    if (!this.xforward.trusted(this.peer)) {
      this.xforward.onRefused(this.peer);
      this.send(550, '5.7.0 Error: insufficient authorization');
      return callback();
    }
    if (this.session.envelope.mailFrom) {
      this.send(503, '5.5.1 Error: MAIL transaction in progress');
      return callback();
    }
    const parsed = parseXforward(command.toString().replace(/^\S+/, ''));
    if (!parsed.ok) {
      this.send(parsed.code, parsed.message);
      return callback();
    }
    recordForwarded(this.session, parsed.attrs);
    this.xforward.onAccepted(this.peer, parsed.attrs);
    this.send(250, '2.0.0 Ok');
    callback();
  }

  /** Item 1: with no pause, the one command that arrived before the greeting (the parser waits for its callback before the next). */
  private beforeGreeting: Callback | null = null;

  override _onCommand(command: Buffer, callback?: Callback): void {
    if (!this._ready && this.greetingDelayMs === 0) {
      this.beforeGreeting = () => super._onCommand(command, callback);
      return;
    }
    super._onCommand(command, callback);
  }

  override _sendGreeting(): void {
    super._sendGreeting();
    const waiting = this.beforeGreeting;
    this.beforeGreeting = null;
    waiting?.();
  }

  override init(): void {
    this._setListeners(() => {
      const options = this._server.options;
      if (options.maxClients && this._server.connections.size > options.maxClients) {
        return this.send(421, `${options.name ?? ''} 4.7.0 Too many connections, try again later`.trim(), false);
      }
      const timer = setTimeout(() => this.connectionReady(), this.greetingDelayMs);
      timer.unref();
    });
  }

}

export class BackstopSmtpServer extends SMTPServer {
  constructor(
    options: SMTPServerOptions,
    private readonly greetingDelayMs: number,
    private readonly xforward: XforwardGate = NO_XFORWARD,
  ) {
    // Item 4 of the header.
    super({ ...options, allowHalfOpen: true } as SMTPServerOptions);
  }

  /** Answers `reply` to the session's client and closes its connection; false when it is already gone. */
  drop(sessionId: string, reply: { code: number; message: string }): boolean {
    for (const connection of this.connections as Set<SMTPConnection>) {
      if (connection.id !== sessionId) continue;
      connection.send(reply.code, reply.message);
      connection.close();
      return true;
    }
    return false;
  }

  override connect(socket: Socket | TLSSocket, socketOptions?: ConstructorParameters<typeof SMTPConnection>[2] | null): void {
    const connection = new BackstopConnection(this, socket, socketOptions ?? undefined, this.greetingDelayMs, this.xforward);
    this.connections.add(connection);
    connection.on('error', (err: Error) => this._onError(err));
    connection.on('connect', (data: unknown) => (this as unknown as { _onClientConnect(d: unknown): void })._onClientConnect(data));
    connection.init();
  }
}
