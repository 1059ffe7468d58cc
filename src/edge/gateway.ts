/*
 * edge/gateway — the SMTP gateway: a before-queue scanning proxy.
 *
 * A pipeline of named steps over each connection and transaction, in the
 * spirit of Haraka: connect → mail → rcpt (relay check, plug-in checks, the
 * next hop's own answer mirrored) → data (size cap, plug-in checks, scan,
 * decide) → queue (relay to the next hop; quarantine; discard; refuse).
 * Every step ends in one of a closed set of outcomes, and a step that throws
 * or times out becomes "451 4.3.0", never an accept.
 *
 * The promise this module keeps: the sender hears 250 only when the message
 * is safe somewhere — the next hop said 250, or the quarantine row is
 * committed, or the message was deliberately discarded and logged. Trouble
 * anywhere else is a 4xx, so the sender keeps the message and retries.
 *
 * Trusts nothing the client says: HELO, addresses and headers are cleaned
 * before they are logged, stored or written into our Received line.
 */
import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { SMTPServerAddress, SMTPServerSession } from 'smtp-server';
import type { Config } from '../config/schema.ts';
import { splitHostPort } from '../config/listen.ts';
import { cleanText } from '../obs/clean.ts';
import type { Logger } from '../obs/log.ts';
import { messagesTotal, nextHopErrorsTotal, openSessions, scanSeconds, storeErrorsTotal } from '../obs/metrics.ts';
import { decide } from '../policy/actions.ts';
import type { Scanner } from '../scan/types.ts';
import { verdictDetail, type Verdict } from '../scan/verdict.ts';
import type { MessageLog } from '../store/message-log.ts';
import { quarantineMessage } from '../store/quarantine.ts';
import type { Store } from '../store/store.ts';
import { headerBlock, headerField } from './headers.ts';
import { parseNextHop, type NextHop, type NextHopSession } from './next-hop.ts';
import { receivedHeader } from './received.ts';
import { compileRelayPolicy, relayDecision } from './relay.ts';
import { LOCAL_ERROR, mirror, NEXT_HOP_LOST, NEXT_HOP_UNREACHABLE, RELAY_DENIED, SEPARATE_TRANSACTION, TOO_BIG, type Reply } from './replies.ts';
import { SmtpClientError } from './smtp-client.ts';
import { BackstopSmtpServer } from './smtp-server-ext.ts';
import { ensureCertificate, readCertificate } from './tls.ts';

/**
 * What a plug-in check decides: go on, or answer now (4xx/5xx), or (data
 * checks) hold the message in quarantine and answer 250 once the row is
 * committed. Going on may change what the next hop sees: a mail check the
 * envelope sender (BATV signing), a rcpt check the recipient (the BATV tag
 * removed), a data check header fields put on top of the relayed copy (the
 * Message-ID stamp). `action` names the outcome in the message log.
 */
export type HookOutcome =
  | { outcome: 'continue'; mailFrom?: string; rcpt?: string; headers?: string }
  | { outcome: 'reply'; reply: Reply; action?: string }
  | { outcome: 'quarantine'; action: string; detail: string };
export const CONTINUE: HookOutcome = { outcome: 'continue' };

interface HookResult {
  reply: Reply | null;
  action?: string;
  quarantine?: { action: string; detail: string };
  mailFrom?: string;
  rcpt?: string;
  headers: string;
}

export interface TransactionView {
  clientIp: string;
  clientPort: number;
  helo: string;
  mailFrom: string;
  rcptTo: readonly string[];
  relayed: boolean;
}

/** Checks other roles plug in (the BATV shield at RCPT, per-IP abuse aliases…), run in order. */
export interface GatewayHooks {
  /** At MAIL FROM; may replace the envelope sender the next hop sees. */
  mail: ((t: TransactionView) => Promise<HookOutcome>)[];
  rcpt: ((t: TransactionView, rcpt: string) => Promise<HookOutcome>)[];
  data: ((t: TransactionView, raw: Uint8Array) => Promise<HookOutcome>)[];
  /** After the decision; for notices and reports. Errors are logged, never change the reply. */
  decided: ((t: TransactionView, result: DecidedMessage) => Promise<void>)[];
}

export interface DecidedMessage {
  id: string;
  verdict: Verdict;
  action: string;
  reply: Reply;
  raw: Uint8Array;
  quarantineId: string | null;
  receivedAt: Date;
}

/**
 * A destination inside Backstop for some recipients (the abuse desk's per-IP
 * aliases): they are accepted whatever config.domains says, scanned like all
 * mail, and handed to this next hop instead of the configured one. One
 * transaction goes to one destination; a recipient for another is told to
 * come back in a transaction of its own (452 4.5.3), which every MTA does.
 */
export interface LocalRoute {
  name: string;
  accepts(rcpt: string): boolean;
  nextHop: NextHop;
}

const DEFAULT_ROUTE = 'next-hop';

export interface GatewayDeps {
  config: Config;
  store: Store;
  scanner: Scanner;
  logger: Logger;
  messageLog: MessageLog;
  nodeName: string;
  hooks?: Partial<GatewayHooks>;
  routes?: readonly LocalRoute[];
  /** Per-hook time limit; a hook that takes longer is a 451. */
  hookTimeoutMs?: number;
}

export interface Gateway {
  address: { host: string; port: number };
  nextHop: NextHop;
  close(): Promise<void>;
}

interface Transaction {
  mailFrom: string;
  mailOptions: { size?: number; eightBit?: boolean; smtpUtf8?: boolean };
  accepted: string[];
  /** The recipients as the next hop got them (a check may have rewritten them), parallel to accepted. */
  delivered: string[];
  /** The envelope sender as the next hop gets it (a mail check may have rewritten it). */
  nextHopMailFrom: string;
  relayed: boolean;
  /** Where this transaction's recipients go: DEFAULT_ROUTE or a LocalRoute's name. */
  route: string;
  nextHopOpen: boolean;
}

interface SessionState {
  /** One next-hop session per destination, opened when first needed. */
  hops: Map<string, NextHopSession>;
  tx: Transaction | null;
}

class ReplyError extends Error {
  readonly responseCode: number;
  constructor(reply: Reply) {
    super(reply.message);
    this.responseCode = reply.code;
  }
}

async function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([work, new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

function readAll(stream: Readable, limit: number): Promise<{ raw: Buffer; tooBig: boolean }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooBig = false;
    stream.on('data', (chunk: Buffer) => {
      size += chunk.length;
      // Past the limit the rest is read and dropped: smtp-server needs the stream drained to answer.
      if (size > limit) tooBig = true;
      else chunks.push(chunk);
    });
    stream.once('error', reject);
    stream.once('end', () => resolve({ raw: tooBig ? Buffer.alloc(0) : Buffer.concat(chunks, size), tooBig }));
  });
}

export async function startGateway(deps: GatewayDeps): Promise<Gateway> {
  const { config, logger, scanner, messageLog, store, nodeName } = deps;
  const log = logger.child({ role: 'edge' });
  const hooks: GatewayHooks = { mail: [], rcpt: [], data: [], decided: [], ...deps.hooks };
  const hookTimeoutMs = deps.hookTimeoutMs ?? 30_000;
  const policy = compileRelayPolicy(config.domains, config.relayFrom);
  const nextHop = parseNextHop(config.nextHop);
  const routes = deps.routes ?? [];
  const nextHopOf = (route: string): NextHop => routes.find((r) => r.name === route)?.nextHop ?? nextHop;
  const tls = config.smtp.tls ? readCertificate(config.smtp.tls) : await ensureCertificate(config.dataDir, config.smtp.hostname);
  const sessions = new Map<string, SessionState>();
  const maxBytes = config.smtp.maxMessageBytes;

  const view = (session: SMTPServerSession, tx: Transaction): TransactionView => ({
    clientIp: session.remoteAddress,
    clientPort: session.remotePort,
    helo: cleanText(session.hostNameAppearsAs ?? '', 255),
    mailFrom: tx.mailFrom,
    rcptTo: tx.accepted,
    relayed: tx.relayed,
  });

  async function runHooks<A extends unknown[]>(list: ((...args: A) => Promise<HookOutcome>)[], ...args: A): Promise<HookResult> {
    const out: HookResult = { reply: null, headers: '' };
    for (const hook of list) {
      const result = await withTimeout(hook(...args), hookTimeoutMs);
      if (result.outcome === 'reply') {
        // A check may refuse or defer, never accept: a 2xx here would be a message answered 250 and delivered nowhere.
        if (result.reply.code < 400 || result.reply.code > 599) throw new Error(`a check answered ${result.reply.code}; checks may only refuse (5xx) or defer (4xx)`);
        return { ...out, reply: result.reply, action: result.action };
      }
      if (result.outcome === 'quarantine') return { ...out, quarantine: { action: result.action, detail: result.detail } };
      if (result.mailFrom !== undefined) out.mailFrom = result.mailFrom;
      if (result.rcpt !== undefined) out.rcpt = result.rcpt;
      // Only whole header fields, CRLF-terminated, may be added (a check's own values, never peer text).
      if (result.headers) {
        if (!/^([!-9;-~]+:[^\r\n]*\r\n([ \t][^\r\n]*\r\n)*)+$/.test(result.headers)) throw new Error('a check added malformed header fields');
        out.headers += result.headers;
      }
    }
    return out;
  }

  function stateOf(session: SMTPServerSession): SessionState {
    let state = sessions.get(session.id);
    if (!state) {
      state = { hops: new Map(), tx: null };
      sessions.set(session.id, state);
    }
    return state;
  }

  function hopOf(state: SessionState, tx: Transaction): NextHopSession {
    let hop = state.hops.get(tx.route);
    if (!hop) {
      hop = nextHopOf(tx.route).session(config.smtp.hostname);
      state.hops.set(tx.route, hop);
    }
    return hop;
  }

  /** Ends the next hop's side of a transaction that will not be delivered. */
  async function resetNextHop(state: SessionState, tx: Transaction): Promise<void> {
    if (tx.nextHopOpen) await hopOf(state, tx).reset();
    tx.nextHopOpen = false;
  }

  /**
   * A data check asked for another envelope sender (the BATV tag of the
   * message's first day, so that every retry carries the same tag): the next
   * hop's transaction starts again with it and the recipients it took. Any
   * trouble is a 451, so the client keeps the message.
   */
  async function reEnvelope(state: SessionState, tx: Transaction, mailFrom: string): Promise<Reply | null> {
    const hop = hopOf(state, tx);
    await hop.reset();
    tx.nextHopOpen = false;
    const mail = await hop.mail(mailFrom, tx.mailOptions);
    if (mail.code !== 250) return LOCAL_ERROR;
    tx.nextHopOpen = true;
    tx.nextHopMailFrom = mailFrom;
    for (const rcpt of tx.delivered) {
      const answer = await hop.rcpt(rcpt);
      if (answer.code !== 250 && answer.code !== 251) return LOCAL_ERROR;
    }
    return null;
  }

  /** Ends whatever the next hop still has open from an earlier, unfinished transaction. */
  async function endTransaction(state: SessionState): Promise<void> {
    if (state.tx) await resetNextHop(state, state.tx);
    state.tx = null;
  }

  async function onMailFrom(address: SMTPServerAddress, session: SMTPServerSession): Promise<void> {
    const state = stateOf(session);
    await endTransaction(state);
    const args = (address.args || {}) as Record<string, string | boolean>;
    const size = Number(args.SIZE ?? args.size ?? 0);
    if (size > maxBytes) throw new ReplyError(TOO_BIG(maxBytes));
    state.tx = {
      mailFrom: address.address,
      mailOptions: {
        size: size > 0 ? size : undefined,
        eightBit: String(args.BODY ?? args.body ?? '').toUpperCase() === '8BITMIME',
        smtpUtf8: Boolean(args.SMTPUTF8 ?? args.smtputf8),
      },
      accepted: [],
      delivered: [],
      nextHopMailFrom: address.address,
      relayed: false,
      route: DEFAULT_ROUTE,
      nextHopOpen: false,
    };
    const hooked = await runHooks(hooks.mail, view(session, state.tx));
    if (hooked.reply) {
      state.tx = null;
      throw new ReplyError(hooked.reply);
    }
    if (hooked.mailFrom !== undefined) state.tx.nextHopMailFrom = hooked.mailFrom;
  }

  async function onRcptTo(address: SMTPServerAddress, session: SMTPServerSession): Promise<void> {
    const state = stateOf(session);
    const tx = state.tx;
    if (!tx) throw new ReplyError({ code: 503, message: '5.5.1 Error: need MAIL command' });
    const rcpt = address.address;
    const route = routes.find((r) => r.accepts(rcpt))?.name ?? DEFAULT_ROUTE;
    if (tx.accepted.length > 0 && route !== tx.route) throw new ReplyError(SEPARATE_TRANSACTION);
    const decision = route === DEFAULT_ROUTE ? relayDecision(policy, session.remoteAddress, rcpt) : 'local';
    if (decision === 'denied') throw new ReplyError(RELAY_DENIED);
    const hooked = await runHooks(hooks.rcpt, view(session, tx), rcpt);
    if (hooked.reply) throw new ReplyError(hooked.reply);
    const nextHopRcpt = hooked.rcpt ?? rcpt;
    tx.route = route;
    const hop = hopOf(state, tx);
    try {
      if (!tx.nextHopOpen) {
        const mail = await hop.mail(tx.nextHopMailFrom, tx.mailOptions);
        if (mail.code !== 250) throw new ReplyError(mirror(mail));
        tx.nextHopOpen = true;
      }
      const reply = await hop.rcpt(nextHopRcpt);
      if (reply.code !== 250 && reply.code !== 251) throw new ReplyError(mirror(reply));
      if (decision === 'relay') tx.relayed = true;
      tx.accepted.push(rcpt);
      tx.delivered.push(nextHopRcpt);
    } catch (err) {
      if (err instanceof ReplyError) throw err;
      nextHopErrorsTotal.inc();
      tx.nextHopOpen = false;
      log.warn({ err: (err as Error).message, nextHop: nextHopOf(route).description }, 'next hop unavailable at RCPT');
      throw new ReplyError(err instanceof SmtpClientError && err.kind === 'connect' ? NEXT_HOP_UNREACHABLE : NEXT_HOP_LOST);
    }
  }

  async function onData(stream: Readable, session: SMTPServerSession): Promise<string> {
    const receivedAt = new Date();
    const state = stateOf(session);
    const tx = state.tx;
    const { raw, tooBig } = await readAll(stream, maxBytes);
    if (!tx || tx.accepted.length === 0) throw new ReplyError({ code: 503, message: '5.5.1 Error: no valid recipients' });
    if (tooBig || (stream as Readable & { sizeExceeded?: boolean }).sizeExceeded) {
      await endTransaction(state);
      throw new ReplyError(TOO_BIG(maxBytes));
    }
    const t = view(session, tx);
    const id = randomUUID();
    const block = headerBlock(raw);
    let verdict: Verdict = { kind: 'clean' };
    let scanMs = 0;
    let action: string;
    let reply: Reply;
    let quarantineId: string | null = null;
    let addedHeaders = '';
    let dataMailFrom: string | undefined;
    try {
      const hooked = await runHooks(hooks.data, t, raw);
      dataMailFrom = hooked.mailFrom;
      const hookReply = hooked.reply;
      addedHeaders = hooked.headers;
      if (hookReply) {
        await resetNextHop(state, tx);
        action = hooked.action ?? (hookReply.code >= 500 ? 'refused' : 'deferred');
        reply = hookReply;
      } else if (hooked.quarantine) {
        // A check's hold (backscatter): 250 only once the quarantine row is committed.
        await resetNextHop(state, tx);
        action = hooked.quarantine.action;
        reply = { code: 250, message: '2.0.0 Ok' };
        try {
          quarantineId = await quarantineMessage(store.db, {
            messageLogId: id,
            clientIp: session.remoteAddress,
            helo: t.helo,
            mailFrom: cleanText(tx.mailFrom, 320),
            rcptTo: tx.accepted.map((r) => cleanText(r, 320)),
            messageId: headerField(block, 'message-id'),
            subject: headerField(block, 'subject'),
            verdict: action,
            verdictDetail: cleanText(hooked.quarantine.detail, 300),
            raw,
          });
        } catch (err) {
          storeErrorsTotal.inc({ what: 'quarantine' });
          log.error({ err: (err as Error).message, id }, 'could not quarantine: answering 451 so the sender keeps the message');
          reply = LOCAL_ERROR;
          action = 'tempfail';
        }
      } else {
        const scan = await scanner.scanMessage(raw);
        verdict = scan.verdict;
        scanMs = scan.ms;
        scanSeconds.observe(scan.ms / 1000);
        const outcome = decide(verdict, config.actions);
        action = outcome.action;
        if (outcome.action === 'deliver') {
          const trace = receivedHeader({
            helo: t.helo,
            clientIp: session.remoteAddress,
            clientHostname: null,
            byHost: config.smtp.hostname,
            protocol: session.secure ? 'ESMTPS' : session.transmissionType === 'SMTP' ? 'SMTP' : 'ESMTP',
            id: id.slice(0, 8),
            recipient: tx.delivered.length === 1 ? tx.delivered[0]! : null,
            date: receivedAt,
          });
          try {
            const again = dataMailFrom !== undefined && dataMailFrom !== tx.nextHopMailFrom ? await reEnvelope(state, tx, dataMailFrom) : null;
            if (again) {
              await resetNextHop(state, tx);
              reply = again;
              action = 'tempfail';
            } else {
              const answer = await hopOf(state, tx).data([Buffer.from(trace + addedHeaders, 'latin1'), raw]);
              reply = answer.code === 250 ? { code: 250, message: mirror(answer).message } : mirror(answer);
              action = answer.code === 250 ? 'deliver' : 'next-hop-refused';
            }
          } catch (err) {
            nextHopErrorsTotal.inc();
            log.warn({ err: (err as Error).message, id }, 'next hop failed during DATA');
            reply = NEXT_HOP_LOST;
            action = 'next-hop-failed';
          }
          tx.nextHopOpen = false;
        } else {
          await resetNextHop(state, tx);
          reply = outcome.reply;
          if (outcome.action === 'quarantine') {
            try {
              quarantineId = await quarantineMessage(store.db, {
                messageLogId: id,
                clientIp: session.remoteAddress,
                helo: t.helo,
                mailFrom: cleanText(tx.mailFrom, 320),
                rcptTo: tx.accepted.map((r) => cleanText(r, 320)),
                messageId: headerField(block, 'message-id'),
                subject: headerField(block, 'subject'),
                verdict: verdict.kind,
                verdictDetail: verdictDetail(verdict),
                raw,
              });
            } catch (err) {
              storeErrorsTotal.inc({ what: 'quarantine' });
              log.error({ err: (err as Error).message, id }, 'could not quarantine: answering 451 so the sender keeps the message');
              reply = LOCAL_ERROR;
              action = 'tempfail';
            }
          }
        }
      }
    } catch (err) {
      log.error({ err: (err as Error).message, id }, 'transaction failed');
      await resetNextHop(state, tx).catch(() => {});
      tx.nextHopOpen = false;
      reply = LOCAL_ERROR;
      action = 'tempfail';
    }

    messagesTotal.inc({ verdict: verdict.kind, action });
    messageLog.add({
      id,
      received_at: receivedAt,
      node: nodeName,
      client_ip: session.remoteAddress,
      client_port: session.remotePort,
      helo: t.helo,
      mail_from: cleanText(tx.mailFrom, 320),
      rcpt_to: tx.accepted.map((r) => cleanText(r, 320)),
      message_id: headerField(block, 'message-id'),
      subject: headerField(block, 'subject'),
      size: raw.length,
      verdict: verdict.kind,
      verdict_detail: verdictDetail(verdict),
      action,
      reply: `${reply.code} ${reply.message}`,
      scan_ms: scanMs,
      quarantine_id: quarantineId,
    });
    for (const hook of hooks.decided) {
      hook(t, { id, verdict, action, reply, raw, quarantineId, receivedAt }).catch((err: Error) => log.error({ err: err.message, id }, 'after-decision hook failed'));
    }
    state.tx = null;
    if (reply.code !== 250) throw new ReplyError(reply);
    return reply.message;
  }

  /** Adapts an async step to smtp-server's callbacks: a ReplyError is its reply, anything else a bare 451. */
  function step<A extends unknown[], R>(name: string, fn: (...args: A) => Promise<R>) {
    return (...args: [...A, (err?: Error | null, value?: R) => void]) => {
      const callback = args.pop() as (err?: Error | null, value?: R) => void;
      fn(...(args as unknown as A)).then(
        (value) => callback(null, value),
        (err: Error) => {
          if (err instanceof ReplyError) return callback(err);
          log.error({ step: name, err: err.message }, 'step failed');
          callback(new ReplyError(LOCAL_ERROR));
        },
      );
    };
  }

  const server = new BackstopSmtpServer(
    {
      name: config.smtp.hostname,
      banner: 'Backstop',
      key: tls.key,
      cert: tls.cert,
      size: maxBytes,
      maxClients: config.smtp.maxClients,
      maxRecipients: config.smtp.maxRecipients,
      socketTimeout: config.smtp.idleTimeoutMs,
      closeTimeout: 30_000,
      disabledCommands: ['AUTH'],
      authOptional: true,
      // FCrDNS is done where it matters (reports), not for every connection on the hot path.
      disableReverseLookup: true,
      useProxy: config.smtp.proxyProtocol,
      logger: false,
      maxCommandLength: config.smtp.maxLineBytes,
      onConnect: (session, callback) => {
        openSessions.inc();
        callback();
      },
      onMailFrom: step('mail', onMailFrom),
      onRcptTo: step('rcpt', onRcptTo),
      onData: step('data', onData),
      onClose: (session) => {
        openSessions.dec();
        const state = sessions.get(session.id);
        sessions.delete(session.id);
        for (const hop of state?.hops.values() ?? []) hop.close();
      },
    },
    config.smtp.greetingDelayMs,
  );
  server.on('error', (err) => log.warn({ err: err.message }, 'smtp connection error'));

  const { host, port } = splitHostPort(config.smtp.listen);
  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const bound = server.server.address() as { address: string; port: number };
  return {
    address: { host: bound.address, port: bound.port },
    nextHop,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
