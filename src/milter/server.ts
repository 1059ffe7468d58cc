/*
 * milter/server — Backstop as a Sendmail/Postfix milter (smtpd_milters,
 * INPUT_MAIL_FILTER): the MTA keeps its MX, routing and queue; Backstop is
 * asked about each message and answers before the MTA's 250.
 *
 * One MTA connection is one SMTP session: connect → helo → (mail → rcpt… →
 * headers → eoh → body… → eom | abort)… → quit. The same mail and rcpt
 * checks as the SMTP gateway run at MAIL and RCPT, and at end of message the
 * gateway's own judge (edge/judge.ts): data checks, scan, decide(),
 * quarantine, message log, notices and reports. Its outcome becomes a milter
 * reply — refused or deferred: SMFIR_REPLYCODE with the gateway's words;
 * discarded: SMFIR_DISCARD; quarantined: the whole message is in Backstop's
 * quarantine, then SMFIR_DISCARD (or SMFIR_QUARANTINE: the MTA's hold queue
 * as well); deliver: continue, with the checks' header fields and envelope
 * changes as SMFIR_ADDHEADER / SMFIR_CHGFROM / SMFIR_DELRCPT+SMFIR_ADDRCPT.
 *
 * Trusts the MTA's framing no more than a client's SMTP: packets are limited
 * (milter.maxPacketBytes), the message is buffered only up to
 * smtp.maxMessageBytes, and every string is cleaned before it is logged or
 * stored (the judge does that). It must never answer "continue" for a
 * message it could not judge: any failure is a 451, or a dropped connection,
 * which Postfix's milter_default_action = tempfail turns into a 451.
 */
import { chmodSync, existsSync, lstatSync, unlinkSync } from 'node:fs';
import { isIP } from 'node:net';
import net from 'node:net';
import type { Config } from '../config/schema.ts';
import { runHooks, type GatewayHooks, type TransactionView } from '../edge/hooks.ts';
import type { Deliverable, Judge } from '../edge/judge.ts';
import { compileRelayPolicy, relayDecision } from '../edge/relay.ts';
import { LOCAL_ERROR, TOO_BIG, type Reply } from '../edge/replies.ts';
import { cleanText } from '../obs/clean.ts';
import type { Logger } from '../obs/log.ts';
import { decodeCommand, encodeReply, MilterProtocolError, negotiate, PacketReader, SMFIF, SMFIM, SMFIP, type MilterCommand, type MilterReply } from './codec.ts';

export type MilterConfig = NonNullable<Config['milter']>;

/** What Backstop asks of the MTA at negotiation (each only if offered). */
const WANT = {
  // At end of message: add the checks' header fields, put the message in the hold queue, change sender and recipients (BATV).
  actions: SMFIF.ADDHDRS | SMFIF.QUARANTINE | SMFIF.CHGFROM | SMFIF.ADDRCPT | SMFIF.DELRCPT,
  // Skip what Backstop does not judge (unknown commands, DATA), send header values exactly as written, and do not wait for a reply per header.
  protocol: SMFIP.NOUNKNOWN | SMFIP.NODATA | SMFIP.HDR_LEADSPC | SMFIP.NR_HDR,
  // Only the macros Backstop reads, once per connection (SMFIF_SETSYMLIST): no macro packet per message.
  macros: { [SMFIM.CONNECT]: '{client_addr} {client_port}', [SMFIM.HELO]: '', [SMFIM.ENVFROM]: '', [SMFIM.ENVRCPT]: '', [SMFIM.DATA]: '', [SMFIM.EOH]: '', [SMFIM.EOM]: '' },
};

/** While the judge works, "progress" every so often resets the MTA's milter_content_timeout (Postfix: 300 s). */
const PROGRESS_EVERY_MS = 20_000;

/** Postfix's 4.3.4 for a message over a local size limit it cannot take now (RFC 3463). */
const TOO_BIG_LATER = (max: number): Reply => ({ code: 451, message: `4.3.4 Message size exceeds ${max} bytes, the limit for scanning` });

export interface MilterDeps {
  config: Pick<Config, 'smtp' | 'domains' | 'relayFrom'> & { milter: MilterConfig };
  judge: Judge;
  hooks: Pick<GatewayHooks, 'mail' | 'rcpt'>;
  hookTimeoutMs: number;
  logger: Logger;
  /**
   * A cluster worker shares its primary's listening socket (smtp.workers): the primary removed a socket
   * file left by a previous run before it started the workers, and a worker must not remove the live one.
   */
  sharedSocket?: boolean;
}

/** Removes a unix: socket left by a previous run (listen would fail on it); only a socket, never another file. */
export function removeStaleSocket(listen: string): void {
  if (!listen.startsWith('unix:')) return;
  const path = listen.slice(5);
  if (existsSync(path) && lstatSync(path).isSocket()) unlinkSync(path);
}

export interface MilterServer {
  /** "inet:host:port" with the port bound, or "unix:/path". */
  address: string;
  close(): Promise<void>;
}

interface MilterTransaction {
  mailFrom: string;
  /** The sender a mail check asked the MTA to use instead (BATV signing). */
  newMailFrom: string | undefined;
  rcpts: string[];
  /** Recipient rewrites a rcpt check asked for (BATV tag removed): [as given, as the MTA should deliver]. */
  rewrites: [string, string][];
  relayed: boolean;
  chunks: Buffer[];
  size: number;
  tooBig: boolean;
  headersDone: boolean;
}

/** "<a@b>" or "a@b" → a@b; "<>" → "". */
function envelopeAddress(arg: string | undefined): string {
  const v = (arg ?? '').trim();
  return v.startsWith('<') && v.endsWith('>') ? v.slice(1, -1) : v;
}

export async function startMilter(deps: MilterDeps): Promise<MilterServer> {
  const { config, judge, hooks, hookTimeoutMs } = deps;
  const opts = config.milter;
  const log = deps.logger.child({ role: 'milter' });
  const policy = compileRelayPolicy(config.domains, config.relayFrom);
  const maxBytes = config.smtp.maxMessageBytes;
  const tooBigReply = opts.tooBig === 'reject' ? TOO_BIG(maxBytes) : TOO_BIG_LATER(maxBytes);

  function serve(socket: net.Socket): void {
    const reader = new PacketReader(opts.maxPacketBytes);
    let negotiated: { actions: number; protocol: number } | null = null;
    const macros = new Map<string, string>();
    let connectAddress = '';
    let connectPort = 0;
    let helo = '';
    let tx: MilterTransaction | null = null;
    let chain = Promise.resolve();
    let closed = false;

    const send = (r: MilterReply) => {
      if (!closed) socket.write(encodeReply(r));
    };
    const fail = (why: string) => {
      if (closed) return;
      closed = true;
      log.warn({ why: cleanText(why, 200) }, 'milter connection dropped (the MTA applies milter_default_action)');
      socket.destroy();
    };
    const replyFor = (r: Reply): MilterReply => {
      try {
        encodeReply({ reply: 'replycode', code: r.code, text: r.message });
        return { reply: 'replycode', code: r.code, text: r.message };
      } catch {
        return { reply: 'replycode', code: LOCAL_ERROR.code, text: LOCAL_ERROR.message };
      }
    };

    /** The client Postfix saw: {client_addr}/{client_port} when it sent them, else the connect call's. */
    function client(): { ip: string; port: number } {
      const fromMacro = (macros.get('{client_addr}') ?? '').replace(/^IPv6:/i, '');
      const ip = isIP(fromMacro) ? fromMacro : isIP(connectAddress) ? connectAddress : '127.0.0.1';
      const portMacro = Number(macros.get('{client_port}'));
      const port = Number.isInteger(portMacro) && portMacro >= 0 && portMacro <= 65535 && macros.has('{client_port}') ? portMacro : connectPort;
      return { ip, port };
    }

    function view(t: MilterTransaction): TransactionView {
      const c = client();
      return { clientIp: c.ip, clientPort: c.port, helo, mailFrom: t.mailFrom, rcptTo: t.rcpts, relayed: t.relayed };
    }

    function append(t: MilterTransaction, b: Buffer): void {
      if (t.tooBig) return;
      t.size += b.length;
      // Past the limit nothing more is kept: the message is answered without a whole-message buffer.
      if (t.size > maxBytes) {
        t.tooBig = true;
        t.chunks = [];
      } else t.chunks.push(b);
    }

    const has = (flag: number, what: 'actions' | 'protocol') => negotiated !== null && (negotiated[what] & flag) !== 0;

    async function endOfMessage(t: MilterTransaction): Promise<void> {
      const raw = Buffer.concat(t.chunks, t.size);
      const progress = setInterval(() => send({ reply: 'progress' }), PROGRESS_EVERY_MS);
      let delivered: Deliverable | null = null;
      let judged;
      try {
        judged = await judge(view(t), raw, {
          // The MTA delivers: Backstop only says yes, with the changes the checks asked for.
          async deliver(m) {
            delivered = m;
            return { action: 'deliver', reply: { code: 250, message: '2.0.0 Ok' } };
          },
          async abandon() {},
        });
      } finally {
        clearInterval(progress);
      }
      const { reply, action, quarantineId } = judged;
      if (reply.code !== 250) return send(replyFor(reply));
      if (action === 'discard') return send({ reply: 'discard' });
      if (quarantineId !== null) {
        if (opts.quarantine === 'postfix-hold' && has(SMFIF.QUARANTINE, 'actions')) return send({ reply: 'quarantine', reason: `Backstop quarantine ${quarantineId}` });
        return send({ reply: 'discard' });
      }
      const d = delivered as Deliverable | null;
      if (d) {
        // Whole fields, checked by runHooks; a folded value goes with bare LF (libmilter smfi_addheader), the MTA adds the CRLF.
        for (const [, name, value] of d.addedHeaders.matchAll(/([!-9;-~]+):([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)\r\n/g)) {
          const v = value!.replace(/\r\n/g, '\n');
          if (has(SMFIF.ADDHDRS, 'actions')) send({ reply: 'addheader', name: name!, value: has(SMFIP.HDR_LEADSPC, 'protocol') ? v : v.replace(/^ /, '') });
        }
        const from = d.mailFrom ?? t.newMailFrom;
        if (from !== undefined && from !== t.mailFrom) {
          if (has(SMFIF.CHGFROM, 'actions')) send({ reply: 'chgfrom', address: `<${from}>` });
          else log.warn('the MTA does not allow a sender change: BATV signing skipped for this message');
        }
        for (const [given, deliverTo] of t.rewrites) {
          if (has(SMFIF.DELRCPT, 'actions') && has(SMFIF.ADDRCPT, 'actions')) {
            send({ reply: 'delrcpt', address: `<${given}>` });
            send({ reply: 'addrcpt', address: `<${deliverTo}>` });
          }
        }
      }
      send({ reply: 'continue' });
    }

    async function handle(c: MilterCommand): Promise<void> {
      switch (c.command) {
        case 'optneg':
          negotiated = negotiate(c, WANT);
          return send(negotiated as MilterReply);
        case 'macro':
          for (const [k, v] of Object.entries(c.macros)) macros.set(k, v);
          return; // Macros have no reply (libmilter st_macros).
        case 'connect':
          connectAddress = c.family === '4' || c.family === '6' ? c.address.replace(/^IPv6:/i, '') : '';
          connectPort = c.port;
          return send({ reply: 'continue' });
        case 'helo':
          helo = cleanText(c.helo, 255);
          return send({ reply: 'continue' });
        case 'mail': {
          const t: MilterTransaction = { mailFrom: envelopeAddress(c.args[0]), newMailFrom: undefined, rcpts: [], rewrites: [], relayed: false, chunks: [], size: 0, tooBig: false, headersDone: false };
          const size = Number((c.args.slice(1).find((a) => /^SIZE=/i.test(a)) ?? '').slice(5));
          if (size > maxBytes) return send(replyFor(tooBigReply));
          const hooked = await runHooks(hooks.mail, hookTimeoutMs, view(t));
          if (hooked.reply) return send(replyFor(hooked.reply));
          t.newMailFrom = hooked.mailFrom;
          tx = t;
          return send({ reply: 'continue' });
        }
        case 'rcpt': {
          if (!tx) return send({ reply: 'replycode', code: 503, text: '5.5.1 Error: need MAIL command' });
          const rcpt = envelopeAddress(c.args[0]);
          const hooked = await runHooks(hooks.rcpt, hookTimeoutMs, view(tx), rcpt);
          if (hooked.reply) return send(replyFor(hooked.reply));
          // The MTA has already decided relaying; "relayed" only marks our customers' outgoing mail for the desk.
          if (relayDecision(policy, client().ip, rcpt) === 'relay') tx.relayed = true;
          tx.rcpts.push(rcpt);
          if (hooked.rcpt !== undefined && hooked.rcpt !== rcpt) tx.rewrites.push([rcpt, hooked.rcpt]);
          return send({ reply: 'continue' });
        }
        case 'header': {
          if (tx) {
            // With SMFIP_HDR_LEADSPC the value keeps its leading space: the field is rebuilt byte for byte.
            const value = has(SMFIP.HDR_LEADSPC, 'protocol') ? c.value : ` ${c.value}`;
            append(tx, Buffer.from(`${c.name}:${value.replace(/\r?\n/g, '\r\n')}\r\n`, 'latin1'));
          }
          if (!has(SMFIP.NR_HDR, 'protocol')) send({ reply: 'continue' });
          return;
        }
        case 'eoh':
          if (!tx) return send({ reply: 'continue' });
          append(tx, Buffer.from('\r\n'));
          tx.headersDone = true;
          if (tx.tooBig) return send(replyFor(tooBigReply));
          return send({ reply: 'continue' });
        case 'body':
          if (!tx) return send({ reply: 'continue' });
          append(tx, c.chunk);
          if (tx.tooBig) return send(replyFor(tooBigReply));
          return send({ reply: 'continue' });
        case 'eom': {
          const t = tx;
          tx = null;
          if (!t || t.rcpts.length === 0) return send(replyFor({ code: 503, message: '5.5.1 Error: no valid recipients' }));
          if (!t.headersDone) append(t, Buffer.from('\r\n'));
          append(t, c.chunk);
          if (t.tooBig) return send(replyFor(tooBigReply));
          return endOfMessage(t);
        }
        case 'abort':
          tx = null;
          return; // No reply to abort (libmilter st_abort).
        case 'quit':
          closed = true;
          socket.end();
          return;
        case 'quit-nc':
          // The MTA reuses this connection for a new SMTP session.
          macros.clear();
          connectAddress = '';
          connectPort = 0;
          helo = '';
          tx = null;
          return;
        case 'data':
        case 'unknown':
          return send({ reply: 'continue' });
      }
    }

    socket.setTimeout(opts.idleTimeoutMs, () => fail('idle timeout'));
    socket.on('error', (err) => fail(err.message));
    socket.on('close', () => {
      closed = true;
    });
    socket.on('data', (chunk: Buffer) => {
      let packets;
      try {
        packets = reader.push(chunk);
      } catch (err) {
        return fail((err as Error).message);
      }
      for (const p of packets) {
        chain = chain.then(async () => {
          if (closed) return;
          let c: MilterCommand;
          try {
            c = decodeCommand(p);
          } catch (err) {
            return fail((err as Error).message);
          }
          if (negotiated === null && c.command !== 'optneg') return fail('command before option negotiation');
          try {
            await handle(c);
          } catch (err) {
            if (err instanceof MilterProtocolError) return fail(err.message);
            // A check or the judge failed where a reply is due: 451, so the sender keeps the message.
            log.error({ err: (err as Error).message, step: c.command }, 'milter step failed');
            if (c.command === 'header' || c.command === 'macro' || c.command === 'abort') return fail((err as Error).message);
            send(replyFor(LOCAL_ERROR));
          }
        });
      }
    });
  }

  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    serve(socket);
  });
  server.maxConnections = opts.maxConnections;
  server.on('error', (err) => log.warn({ err: err.message }, 'milter listener error'));
  let address: string;
  if (opts.listen.startsWith('unix:')) {
    const path = opts.listen.slice(5);
    if (!deps.sharedSocket) removeStaleSocket(opts.listen);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
    chmodSync(path, parseInt(opts.socketMode, 8));
    address = opts.listen;
  } else {
    const spec = opts.listen.slice(5);
    const at = spec.lastIndexOf(':');
    const host = spec.slice(0, at).replace(/^\[(.*)\]$/, '$1');
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(Number(spec.slice(at + 1)), host, () => resolve());
    });
    const bound = server.address() as net.AddressInfo;
    address = `inet:${bound.address.includes(':') ? `[${bound.address}]` : bound.address}:${bound.port}`;
  }
  log.info({ listen: address }, 'milter listening');
  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // The MTA holds its milter connections for a whole SMTP session; at shutdown they go, and the MTA applies milter_default_action.
        for (const s of sockets) s.destroy();
      }),
  };
}
