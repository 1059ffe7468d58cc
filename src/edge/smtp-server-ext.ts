/*
 * edge/smtp-server-ext — three adjustments to smtp-server's connection, made
 * by subclassing (smtp-server exposes no option for either):
 *
 * 1. The pause before the greeting. smtp-server waits a fixed 100 ms to catch
 *    clients that talk before they are greeted (a spam-engine tell, answered
 *    "421 You talk too soon"). We keep that defence as the default and make
 *    the pause a setting (`smtp.greetingDelayMs`) so it can be measured and
 *    tuned; 0 greets at once.
 * 2. Enhanced status codes. smtp-server picks one from the reply's number
 *    (550 → 5.1.1, "bad mailbox"), which would misstate why a virus was
 *    refused. A reply whose text already starts with an RFC 3463 code keeps
 *    its own; the others get smtp-server's.
 *
 * 3. Ending one session from outside its command flow (`drop`): the DATA
 *    deadline (smtp.dataTimeoutMs) must close a connection that is still
 *    trickling its message, where smtp-server would wait for the final dot.
 *
 * These override smtp-server internals (init, send): the version is pinned
 * in package.json and test/edge covers both behaviours.
 */
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3} /;

class BackstopConnection extends SMTPConnection {
  constructor(
    server: SMTPServer,
    socket: Socket | TLSSocket,
    options: ConstructorParameters<typeof SMTPConnection>[2],
    private readonly greetingDelayMs: number,
  ) {
    super(server, socket, options);
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

  override send(code: number, data?: string | string[] | null, context?: string | false): void {
    const own = typeof data === 'string' && ENHANCED.test(data);
    super.send(code, data, own ? false : context);
  }
}

export class BackstopSmtpServer extends SMTPServer {
  constructor(
    options: SMTPServerOptions,
    private readonly greetingDelayMs: number,
  ) {
    super(options);
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
    const connection = new BackstopConnection(this, socket, socketOptions ?? undefined, this.greetingDelayMs);
    this.connections.add(connection);
    connection.on('error', (err: Error) => this._onError(err));
    connection.on('connect', (data: unknown) => (this as unknown as { _onClientConnect(d: unknown): void })._onClientConnect(data));
    connection.init();
  }
}
