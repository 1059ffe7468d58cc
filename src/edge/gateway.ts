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
import type { Readable } from 'node:stream';
import type { SMTPServerAddress, SMTPServerSession } from 'smtp-server';
import type { Config } from '../config/schema.ts';
import { splitHostPort } from '../config/listen.ts';
import type { Logger } from '../obs/log.ts';
import { nextHopErrorsTotal, openSessions } from '../obs/metrics.ts';
import type { Scanner } from '../scan/types.ts';
import type { MessageLog } from '../store/message-log.ts';
import type { Store } from '../store/store.ts';
import { clientOf, type EffectiveClient } from './client.ts';
import type { ClientToForward } from './xforward.ts';
import { runHooks, type GatewayHooks, type TransactionView } from './hooks.ts';
import { createJudge, type JudgeDeps } from './judge.ts';
import { firstRecipient, parseNextHop, type MailOptions, type NextHop, type NextHopSession } from './next-hop.ts';
import { receivedHeader } from './received.ts';
import { compileNetworks, compileRelayPolicy, inNetworks, relayDecision } from './relay.ts';
import { anvilLimits, ConnectionCounter, SharedRateCounter, type Admission, type ConnectionAdmitter, TOO_MANY_RECIPIENTS, TOO_MUCH_MAIL } from './anvil.ts';
import { DATA_TIMEOUT, LOCAL_ERROR, mirror, NO_BUFFER_SPACE, NEXT_HOP_LOST, NEXT_HOP_UNREACHABLE, RELAY_DENIED, SEPARATE_TRANSACTION, TOO_BIG, type Reply } from './replies.ts';
import { SmtpClientError } from './smtp-client.ts';
import { BackstopSmtpServer, type XforwardGate } from './smtp-server-ext.ts';
import { ensureCertificate, readCertificate } from './tls.ts';

export { CONTINUE, type DecidedMessage, type GatewayHooks, type HookOutcome, type TransactionView } from './hooks.ts';

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
  /** What rides with each message's record in its transaction (edge/judge): serve passes notify's detectionFrom. */
  detect?: JudgeDeps['detect'];
  nodeName: string;
  hooks?: Partial<GatewayHooks>;
  routes?: readonly LocalRoute[];
  /** Per-hook time limit; a hook that takes longer is a 451. */
  hookTimeoutMs?: number;
  /** Who counts connections per client (edge/anvil): this process by default; a cluster worker asks its primary. */
  connections?: ConnectionAdmitter;
  /**
   * The store's time (store/StoreClock, serve's): a message's received_at and the shared per-client rate
   * windows, which every node must date alike. Default this node's clock (one node, tests).
   */
  clock?: () => Date;
}

export interface Gateway {
  address: { host: string; port: number };
  nextHop: NextHop;
  close(): Promise<void>;
}

interface Transaction {
  mailFrom: string;
  mailOptions: MailOptions;
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

/** What one message's DATA brought: the bytes (empty when refused), and why they were refused. */
interface ReadData {
  raw: Buffer;
  tooBig: boolean;
  /** The node's buffer budget (smtp.maxBufferedBytes) ran out while it arrived. */
  overBudget: boolean;
  /** smtp.dataTimeoutMs passed before the final dot. */
  timedOut: boolean;
  /** Bytes of the budget this message holds until its transaction ends. */
  held: number;
}

/** Bytes of message data held in memory by all sessions of one node. */
class BufferBudget {
  used = 0;
  constructor(readonly max: number) {}
  take(n: number): boolean {
    if (this.used + n > this.max) return false;
    this.used += n;
    return true;
  }
  give(n: number): void {
    this.used -= n;
  }
}

/**
 * Reads the DATA stream into memory, within the message limit, the node's
 * buffer budget and the DATA deadline. Past the size limit or the budget the
 * rest is read and dropped (smtp-server needs the stream drained to answer);
 * at the deadline it stops waiting (the caller ends the session).
 */
function readAll(stream: Readable, limit: number, budget: BufferBudget, deadlineMs: number): Promise<ReadData> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let held = 0;
    let tooBig = false;
    let overBudget = false;
    const drop = () => {
      chunks.length = 0;
      budget.give(held);
      held = 0;
    };
    const timer = setTimeout(() => {
      stream.removeAllListeners('data');
      drop();
      resolve({ raw: Buffer.alloc(0), tooBig, overBudget, timedOut: true, held: 0 });
    }, deadlineMs);
    stream.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (tooBig || overBudget) return;
      if (size > limit) {
        tooBig = true;
        drop();
      } else if (!budget.take(chunk.length)) {
        overBudget = true;
        drop();
      } else {
        held += chunk.length;
        chunks.push(chunk);
      }
    });
    stream.once('error', (err) => {
      clearTimeout(timer);
      drop();
      reject(err);
    });
    stream.once('end', () => {
      clearTimeout(timer);
      resolve({ raw: tooBig || overBudget ? Buffer.alloc(0) : Buffer.concat(chunks, size), tooBig, overBudget, timedOut: false, held });
    });
  });
}

/** The client as the next hop is told it (XCLIENT/XFORWARD): SOURCE=REMOTE, mail from the outside; the protocol it spoke to us unless a trusted MTA named another. */
function toForward(c: EffectiveClient, session: SMTPServerSession): ClientToForward {
  return { addr: c.ip, port: c.port || null, name: c.hostname, helo: c.helo || null, proto: c.proto ?? receivedProtocol(null, session), ident: c.ident, source: c.source ?? 'REMOTE' };
}

/** The WITH of our Received line: the forwarded client's protocol when a trusted MTA named one we can write, else ours. */
function receivedProtocol(forwarded: string | null, session: SMTPServerSession): 'SMTP' | 'ESMTP' | 'ESMTPS' {
  const p = forwarded?.toUpperCase();
  if (p === 'SMTP' || p === 'ESMTP') return p;
  if (p === 'ESMTPS' || p === 'ESMTPSA') return 'ESMTPS';
  if (p === 'ESMTPA') return 'ESMTP';
  return session.secure ? 'ESMTPS' : session.transmissionType === 'SMTP' ? 'SMTP' : 'ESMTP';
}

export async function startGateway(deps: GatewayDeps): Promise<Gateway> {
  const { config, logger, scanner, messageLog, store, nodeName } = deps;
  const log = logger.child({ role: 'edge' });
  const hooks: GatewayHooks = { mail: [], rcpt: [], data: [], decided: [], ...deps.hooks };
  const hookTimeoutMs = deps.hookTimeoutMs ?? 30_000;
  const policy = compileRelayPolicy(config.domains, config.relayFrom);
  const nextHop = parseNextHop(config.nextHop, { xclient: config.nextHopXclient });
  const routes = deps.routes ?? [];
  const nextHopOf = (route: string): NextHop => routes.find((r) => r.name === route)?.nextHop ?? nextHop;
  const tls = config.smtp.tls ? readCertificate(config.smtp.tls) : await ensureCertificate(config.dataDir, config.smtp.hostname);
  const sessions = new Map<string, SessionState>();
  const maxBytes = config.smtp.maxMessageBytes;
  const clock = deps.clock ?? (() => new Date());
  const judge = createJudge({ config, store, scanner, logger: log, messageLog, nodeName, hooks, hookTimeoutMs, clock, ...(deps.detect ? { detect: deps.detect } : {}) });
  const budget = new BufferBudget(config.smtp.maxBufferedBytes);
  const limits = anvilLimits(config);
  const connections = deps.connections ?? new ConnectionCounter(limits);
  const rates = new SharedRateCounter(store.db, limits, { now: () => clock().getTime(), onError: (err) => log.warn({ err: err.message }, 'per-client rates could not be shared: counting on this node only') });
  rates.start();
  /** What ends each admitted connection's count, by session id. */
  const releases = new Map<string, () => void>();
  /** Connections whose admission is still being decided, by session id: true once the client has gone. */
  const admitting = new Map<string, boolean>();

  const trustXforward = compileNetworks(config.smtp.trustXforwardFrom);
  const xforward: XforwardGate = {
    trusted: (peer) => inNetworks(peer, trustXforward),
    onRefused: (peer) => log.warn({ peer }, 'XFORWARD from a peer not in smtp.trustXforwardFrom: refused'),
    // Values are cleaned by edge/xforward before they get here.
    onAccepted: (peer, attrs) => log.debug({ peer, xforward: attrs }, 'XFORWARD accepted'),
  };

  const view = (session: SMTPServerSession, tx: Transaction): TransactionView => {
    const client = clientOf(session);
    return {
      clientIp: client.ip,
      clientPort: client.port,
      helo: client.helo,
      mailFrom: tx.mailFrom,
      rcptTo: tx.accepted,
      relayed: tx.relayed,
    };
  };

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
    // A message announced larger than what the node can still hold is deferred before it is sent.
    if (size > budget.max - budget.used) throw new ReplyError(NO_BUFFER_SPACE);
    state.tx = {
      mailFrom: address.address,
      mailOptions: {
        size: size > 0 ? size : undefined,
        eightBit: String(args.BODY ?? args.body ?? '').toUpperCase() === '8BITMIME',
        smtpUtf8: Boolean(args.SMTPUTF8 ?? args.smtputf8),
        client: toForward(clientOf(session), session),
      },
      accepted: [],
      delivered: [],
      nextHopMailFrom: address.address,
      relayed: false,
      route: DEFAULT_ROUTE,
      nextHopOpen: false,
    };
    const t = view(session, state.tx);
    if (rates.hit(t.clientIp, 'messages')) {
      state.tx = null;
      throw new ReplyError(TOO_MUCH_MAIL(t.clientIp));
    }
    const hooked = await runHooks(hooks.mail, hookTimeoutMs, t);
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
    const decision = route === DEFAULT_ROUTE ? relayDecision(policy, clientOf(session).ip, rcpt) : 'local';
    if (decision === 'denied') throw new ReplyError(RELAY_DENIED);
    const t = view(session, tx);
    if (rates.hit(t.clientIp, 'recipients')) throw new ReplyError(TOO_MANY_RECIPIENTS(t.clientIp));
    const hooked = await runHooks(hooks.rcpt, hookTimeoutMs, t, rcpt);
    if (hooked.reply) throw new ReplyError(hooked.reply);
    const nextHopRcpt = hooked.rcpt ?? rcpt;
    tx.route = route;
    const hop = hopOf(state, tx);
    try {
      let reply;
      if (!tx.nextHopOpen) {
        // The first recipient: MAIL and RCPT in one write where the next hop pipelines.
        const first = await firstRecipient(hop, tx.nextHopMailFrom, tx.mailOptions, nextHopRcpt);
        if (first.mail.code !== 250 || !first.rcpt) throw new ReplyError(mirror(first.mail));
        tx.nextHopOpen = true;
        reply = first.rcpt;
      } else reply = await hop.rcpt(nextHopRcpt);
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
    // Arrival by the store's clock for the record (and what is built from it: notices, reports, evidence);
    // our Received: line is this host's own trace, stamped by its own clock as every MTA's is (RFC 5321 §4.4).
    const receivedAt = clock();
    const stampedAt = new Date();
    const state = stateOf(session);
    const data = await readAll(stream, maxBytes, budget, config.smtp.dataTimeoutMs);
    try {
      return await judgeData(session, state, data, stream, receivedAt, stampedAt);
    } finally {
      budget.give(data.held);
    }
  }

  async function judgeData(session: SMTPServerSession, state: SessionState, data: ReadData, stream: Readable, receivedAt: Date, stampedAt: Date): Promise<string> {
    const tx = state.tx;
    const { raw } = data;
    if (data.timedOut) {
      log.warn({ client: clientOf(session).ip }, 'DATA took longer than smtp.dataTimeoutMs: closing the session');
      await endTransaction(state);
      server.drop(session.id, DATA_TIMEOUT);
      throw new ReplyError(DATA_TIMEOUT);
    }
    if (!tx || tx.accepted.length === 0) throw new ReplyError({ code: 503, message: '5.5.1 Error: no valid recipients' });
    if (data.tooBig || (stream as Readable & { sizeExceeded?: boolean }).sizeExceeded) {
      await endTransaction(state);
      throw new ReplyError(TOO_BIG(maxBytes));
    }
    if (data.overBudget) {
      log.warn({ client: clientOf(session).ip, bufferedBytes: budget.used }, 'smtp.maxBufferedBytes reached: deferring a message');
      await endTransaction(state);
      throw new ReplyError(NO_BUFFER_SPACE);
    }
    const t = view(session, tx);
    const { reply } = await judge(
      t,
      raw,
      {
        // Judged clean: relay to the next hop, and the sender hears what it said.
        async deliver(m) {
          const client = clientOf(session);
          const trace = receivedHeader({
            helo: t.helo,
            clientIp: client.ip,
            clientHostname: client.hostname,
            byHost: config.smtp.hostname,
            protocol: receivedProtocol(client.proto, session),
            id: m.id.slice(0, 8),
            recipient: tx.delivered.length === 1 ? tx.delivered[0]! : null,
            date: stampedAt,
          });
          try {
            const again = m.mailFrom !== undefined && m.mailFrom !== tx.nextHopMailFrom ? await reEnvelope(state, tx, m.mailFrom) : null;
            if (again) {
              await resetNextHop(state, tx);
              return { reply: again, action: 'tempfail' };
            }
            const answer = await hopOf(state, tx).data([Buffer.from(trace + m.addedHeaders, 'latin1'), m.raw]);
            return answer.code === 250 ? { reply: { code: 250, message: mirror(answer).message }, action: 'deliver' } : { reply: mirror(answer), action: 'next-hop-refused' };
          } catch (err) {
            nextHopErrorsTotal.inc();
            log.warn({ err: (err as Error).message, id: m.id }, 'next hop failed during DATA');
            return { reply: NEXT_HOP_LOST, action: 'next-hop-failed' };
          } finally {
            tx.nextHopOpen = false;
          }
        },
        async abandon() {
          try {
            await resetNextHop(state, tx);
          } finally {
            tx.nextHopOpen = false;
          }
        },
      },
      receivedAt,
    );
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
        // At connect no XFORWARD has been said yet: the connection is the peer's, and so is its count.
        const decided = (admitted: Admission) => {
          // The client may have gone while a cluster primary was asked: its count ends at once.
          const closedMeanwhile = admitting.get(session.id);
          admitting.delete(session.id);
          if ('refuse' in admitted) {
            log.info({ client: session.remoteAddress, reply: admitted.refuse.message }, 'connection refused by a per-client limit');
            return callback(new ReplyError(admitted.refuse));
          }
          if (closedMeanwhile) return admitted.release();
          releases.set(session.id, admitted.release);
          openSessions.inc();
          callback();
        };
        admitting.set(session.id, false);
        const admitted = connections.admit(session.remoteAddress);
        if ('then' in admitted) void admitted.then(decided);
        else decided(admitted);
      },
      onMailFrom: step('mail', onMailFrom),
      onRcptTo: step('rcpt', onRcptTo),
      onData: step('data', onData),
      onClose: (session) => {
        if (admitting.has(session.id)) admitting.set(session.id, true);
        const release = releases.get(session.id);
        if (release) {
          releases.delete(session.id);
          release();
          openSessions.dec();
        }
        const state = sessions.get(session.id);
        sessions.delete(session.id);
        for (const hop of state?.hops.values() ?? []) hop.close();
      },
    },
    config.smtp.greetingDelayMs,
    xforward,
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
    close: async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rates.stop();
    },
  };
}
