/*
 * edge/next-hop — where clean mail goes: a real MTA over SMTP (the normal
 * case: Backstop in front of Postfix, Exim, Exchange…) or, for the embedded
 * defaults, a local Maildir.
 *
 * One NextHopSession per inbound SMTP session; its transaction follows the
 * sender's step by step. A message counts as delivered only when the next
 * hop said 250 (SMTP) or the file is fsync'ed and renamed into new/
 * (Maildir) — only then does the sender hear 250.
 *
 * To an SMTP next hop that offers PIPELINING (RFC 2920) the commands of one
 * step go in one write: the RSET that ended the last transaction (owed, not
 * waited for), the XFORWARD lines, MAIL and the first RCPT. DATA still waits
 * for its 354, and the message's 250 is still the next hop's own.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { SmtpClient, SmtpClientError, type SmtpReply } from './smtp-client.ts';
import { xclientCommand, xforwardCommands, type ClientToForward } from './xforward.ts';

export interface MailOptions {
  size?: number;
  eightBit?: boolean;
  smtpUtf8?: boolean;
  /** Who the client really was, told to a next hop that offers XCLIENT or XFORWARD (see SmtpNextHop). */
  client?: ClientToForward;
}

export interface NextHopOptions {
  commandTimeoutMs?: number;
  dataTimeoutMs?: number;
  /** Prefer XCLIENT (the next hop then treats the client as its own, restrictions and all) over XFORWARD. */
  xclient?: boolean;
}

export interface NextHopSession {
  mail(from: string, options: MailOptions): Promise<SmtpReply>;
  /** MAIL and the first RCPT at once (one write to a next hop that offers PIPELINING); see firstRecipient. */
  mailRcpt?(from: string, options: MailOptions, to: string): Promise<{ mail: SmtpReply; rcpt: SmtpReply | null }>;
  rcpt(to: string): Promise<SmtpReply>;
  /** The message as consecutive parts (our Received line, then the raw message as it came). */
  data(parts: readonly Uint8Array[]): Promise<SmtpReply>;
  /** Ends the open transaction without delivering (the message was refused, discarded or held). */
  reset(): Promise<void>;
  close(): void;
}

export interface NextHop {
  readonly description: string;
  session(heloName: string): NextHopSession;
}

/** Opens a transaction with its first recipient: MAIL, then RCPT only when MAIL was 250 (rcpt is null otherwise). */
export async function firstRecipient(hop: NextHopSession, from: string, options: MailOptions, to: string): Promise<{ mail: SmtpReply; rcpt: SmtpReply | null }> {
  if (hop.mailRcpt) return hop.mailRcpt(from, options, to);
  const mail = await hop.mail(from, options);
  return { mail, rcpt: mail.code === 250 ? await hop.rcpt(to) : null };
}

export function parseNextHop(setting: string, timeouts: NextHopOptions = {}): NextHop {
  if (setting.startsWith('maildir:')) return new MaildirNextHop(setting.slice('maildir:'.length));
  const hostPort = setting.slice('smtp://'.length);
  const at = hostPort.lastIndexOf(':');
  const host = at === -1 ? hostPort : hostPort.slice(0, at).replace(/^\[(.*)\]$/, '$1');
  const port = at === -1 ? 25 : Number(hostPort.slice(at + 1));
  return new SmtpNextHop(host, port, timeouts);
}

/** Characters that cannot appear in an address we put on a command line. */
const UNSAFE_IN_ADDRESS = /[\s<>\r\n\0]/;

export class SmtpNextHop implements NextHop {
  readonly description: string;
  constructor(
    readonly host: string,
    readonly port: number,
    private readonly timeouts: NextHopOptions,
  ) {
    this.description = `smtp://${host}:${port}`;
  }

  /**
   * The next hop's sessions tell it the real client (Postfix's
   * smtpd_authorized_xclient_hosts / smtpd_authorized_xforward_hosts) when its
   * EHLO offers a way: XCLIENT when `xclient` is set, which restarts the
   * session as that client (then EHLO again, with the client's HELO name, as
   * XCLIENT_README shows), else XFORWARD before each MAIL (its attributes last
   * one transaction). A refusal is no failure: XCLIENT refused falls back to
   * XFORWARD, XFORWARD refused to nothing, and the mail goes on as ours.
   * A connection XCLIENT made into one client is never used for another.
   */
  session(heloName: string): NextHopSession {
    let client: SmtpClient | null = null;
    let inTransaction = false;
    /** A transaction ended without delivery whose RSET rides in front of the next MAIL (pipelining next hops only). */
    let resetOwed = false;
    /** The client this connection was XCLIENTed into, as a key. */
    let xclientAs: string | null = null;
    let xclientRefused = false;
    const preferXclient = this.timeouts.xclient ?? false;
    const open = async () => {
      if (client?.isOpen) return client;
      xclientAs = null;
      resetOwed = false;
      client = await SmtpClient.open({ host: this.host, port: this.port, heloName, ...this.timeouts });
      return client;
    };
    const drop = () => {
      client?.close();
      client = null;
      resetOwed = false;
    };
    /** The owed RSET on its own (before XCLIENT, which must not follow a pipelined group); a refused RSET ends the connection. */
    const payReset = async (c: SmtpClient): Promise<SmtpClient> => {
      if (!resetOwed) return c;
      resetOwed = false;
      const reply = await c.command('RSET').catch(() => null);
      if (reply?.code === 250) return c;
      drop();
      return open();
    };
    /**
     * Makes the connection speak for `who`: XCLIENT now (its 220 restarts the
     * session), or the XFORWARD lines to send before MAIL (returned, not sent).
     */
    const introduce = async (who: ClientToForward): Promise<{ c: SmtpClient; before: string[] }> => {
      const key = JSON.stringify(who);
      let c = await open();
      if (xclientAs === key) return { c, before: [] };
      if (xclientAs !== null) {
        drop();
        c = await open();
      }
      const offered = c.extensions.get('XCLIENT');
      const line = preferXclient && !xclientRefused && offered !== undefined ? xclientCommand(who, offered) : null;
      if (line) {
        c = await payReset(c);
        const reply = await c.command(line);
        if (reply.code === 220) {
          await c.hello(who.helo && /^[!-~]{1,255}$/.test(who.helo) ? who.helo : heloName);
          xclientAs = key;
          return { c, before: [] };
        }
        // Postfix applies XCLIENT attributes one by one: a refusal may leave half of them in place. A fresh connection is clean.
        xclientRefused = true;
        drop();
        c = await open();
      }
      const xforward = c.extensions.get('XFORWARD');
      return { c, before: xforward !== undefined ? xforwardCommands(who, xforward) : [] };
    };
    /**
     * MAIL (and the first RCPT, when given). To a next hop that offers
     * PIPELINING the owed RSET, the XFORWARD lines, MAIL and RCPT go in one
     * write, as Postfix's own smtp client sends them; their replies are read
     * in order. Otherwise one command at a time, as before.
     */
    const begin = async (from: string, options: MailOptions, to: string | null): Promise<{ mail: SmtpReply; rcpt: SmtpReply | null }> => {
      if (UNSAFE_IN_ADDRESS.test(from)) return { mail: { code: 501, text: '5.1.7 Bad sender address syntax' }, rcpt: null };
      const unsafeRcpt = to !== null && UNSAFE_IN_ADDRESS.test(to);
      for (let attempt = 0; ; attempt++) {
        const { c, before } = options.client ? await introduce(options.client) : { c: await open(), before: [] };
        const params: string[] = [];
        if (options.size && c.extensions.has('SIZE')) params.push(`SIZE=${options.size}`);
        if (options.eightBit && c.extensions.has('8BITMIME')) params.push('BODY=8BITMIME');
        if (options.smtpUtf8 && c.extensions.has('SMTPUTF8')) params.push('SMTPUTF8');
        const mailLine = `MAIL FROM:<${from}>${params.length ? ' ' + params.join(' ') : ''}`;
        const rcptLine = to !== null && !unsafeRcpt ? `RCPT TO:<${to}>` : null;
        if (!c.extensions.has('PIPELINING')) {
          // resetOwed is only ever set for a pipelining next hop.
          for (const cmd of before) {
            const reply = await c.command(cmd);
            if (reply.code !== 250) break;
          }
          const mail = await c.command(mailLine);
          inTransaction = mail.code === 250;
          if (!inTransaction || to === null) return { mail, rcpt: null };
          return { mail, rcpt: rcptLine ? await c.command(rcptLine) : { code: 501, text: '5.1.3 Bad recipient address syntax' } };
        }
        const reset = resetOwed;
        resetOwed = false;
        const lines = [...(reset ? ['RSET'] : []), ...before, mailLine, ...(rcptLine ? [rcptLine] : [])];
        const replies = await c.commands(lines);
        if (reset && replies[0]!.code !== 250) {
          // The connection's state is unknown after a refused RSET: whatever it took is dropped with it, once more on a fresh one.
          drop();
          if (attempt === 0) continue;
          throw new SmtpClientError(`next hop refused RSET with ${replies[0]!.code}`, 'protocol');
        }
        const mail = replies[(reset ? 1 : 0) + before.length]!;
        inTransaction = mail.code === 250;
        if (!inTransaction || to === null) return { mail, rcpt: null };
        return { mail, rcpt: rcptLine ? replies[replies.length - 1]! : { code: 501, text: '5.1.3 Bad recipient address syntax' } };
      }
    };
    return {
      async mail(from, options) {
        return (await begin(from, options, null)).mail;
      },
      mailRcpt(from, options, to) {
        return begin(from, options, to);
      },
      async rcpt(to) {
        if (UNSAFE_IN_ADDRESS.test(to)) return { code: 501, text: '5.1.3 Bad recipient address syntax' };
        if (!client?.isOpen || !inTransaction) throw new SmtpClientError('next hop transaction is not open', 'closed');
        return client.command(`RCPT TO:<${to}>`);
      },
      async data(parts) {
        if (!client?.isOpen || !inTransaction) throw new SmtpClientError('next hop transaction is not open', 'closed');
        inTransaction = false;
        return client.data(parts);
      },
      async reset() {
        if (!inTransaction || !client?.isOpen) return;
        inTransaction = false;
        if (client.extensions.has('PIPELINING')) {
          // Sent in front of the next MAIL (or never, when the session ends: QUIT ends the transaction too).
          resetOwed = true;
          return;
        }
        try {
          const reply = await client.command('RSET');
          if (reply.code !== 250) drop();
        } catch {
          drop();
        }
      },
      close() {
        drop();
      },
    };
  }
}

/** The embedded default: a Maildir (tmp → fsync → rename into new), one file per message. */
export class MaildirNextHop implements NextHop {
  readonly description: string;
  private sequence = 0;

  constructor(readonly dir: string) {
    this.description = `maildir:${dir}`;
    for (const sub of ['tmp', 'new', 'cur']) mkdirSync(join(dir, sub), { recursive: true });
  }

  session(): NextHopSession {
    let from = '';
    let rcpts: string[] = [];
    return {
      mail: async (f) => {
        from = f;
        rcpts = [];
        return { code: 250, text: '2.1.0 Ok' };
      },
      rcpt: async (to) => {
        rcpts.push(to);
        return { code: 250, text: '2.1.5 Ok' };
      },

      data: async (parts) => {
        const name = `${Math.floor(Date.now() / 1000)}.P${process.pid}Q${++this.sequence}R${randomBytes(6).toString('hex')}.${hostname().replace(/[/:]/g, '_')}`;
        const envelope = `Return-Path: <${from}>\r\n${rcpts.map((r) => `Delivered-To: ${r}\r\n`).join('')}`;
        const tmp = join(this.dir, 'tmp', name);
        const fd = openSync(tmp, 'wx', 0o600);
        try {
          writeSync(fd, envelope);
          for (const part of parts) writeSync(fd, part);
          fsyncSync(fd);
        } finally {
          closeSync(fd);
        }
        renameSync(tmp, join(this.dir, 'new', name));
        return { code: 250, text: `2.0.0 Ok: delivered to maildir as ${name}` };
      },
      reset: async () => {
        rcpts = [];
      },
      close: () => {},
    };
  }
}
