/*
 * edge/judge — judges one whole message, whichever way it came in: the SMTP
 * gateway's DATA and the milter's end of message run this same code.
 *
 * In order: the data checks (backscatter shield, Message-ID stamp…), the
 * scan, decide(), the quarantine, the message-log record and the `decided`
 * checks (postmaster notices, ARF reports, sender notices). Delivery itself
 * is the caller's: an Outlet hands a message judged "deliver" on (the
 * gateway relays it to the next hop; the milter tells the MTA to accept it)
 * and ends what it had open for one that will not be delivered.
 *
 * The promise: the reply is 250 only when the message is safe somewhere —
 * the outlet delivered it, or the quarantine row is committed, or it was
 * deliberately discarded and logged. A check or scan that throws is a 451.
 *
 * Durable before the reply (the Postfix way): a final reply — 250 for any
 * action, 5xx for a refusal — is given only once the message's record, and
 * the detection that feeds notices and reports, is committed (the message
 * log's group commit). A store that fails or is slower than
 * records.commitTimeoutMs turns the reply into 451 4.3.0: the sender keeps
 * the message and tries again. For delivered mail the next hop then has it
 * already and the retry delivers it twice — duplication, never loss
 * (RFC 5321 §6.1), and never a 250 without its record. A 4xx reply's record
 * is written without waiting: the sender retries anyway.
 *
 * Trusts the transaction's strings no more than the gateway does: every
 * value that is logged or stored is cleaned here.
 */
import { randomUUID } from 'node:crypto';
import type { Config } from '../config/schema.ts';
import { cleanText } from '../obs/clean.ts';
import type { Logger } from '../obs/log.ts';
import { messagesTotal, scanSeconds, storeErrorsTotal } from '../obs/metrics.ts';
import { decide } from '../policy/actions.ts';
import type { Scanner } from '../scan/types.ts';
import { recordFindings } from '../scan/policy.ts';
import { verdictDetail, type Verdict } from '../scan/verdict.ts';
import type { MessageLog } from '../store/message-log.ts';
import { quarantineMessage } from '../store/quarantine.ts';
import type { Store } from '../store/store.ts';
import { headerBlock, headerField } from './headers.ts';
import { runHooks, type DecidedMessage, type GatewayHooks, type TransactionView } from './hooks.ts';
import { LOCAL_ERROR, STORE_UNAVAILABLE, type Reply } from './replies.ts';

/** A message judged "deliver", as the outlet gets it. */
export interface Deliverable {
  id: string;
  receivedAt: Date;
  raw: Uint8Array;
  /** Whole header fields the data checks put on top (CRLF-terminated, our own values). */
  addedHeaders: string;
  /** The envelope sender a data check asked for (BATV: the tag of the message's first day), if any. */
  mailFrom: string | undefined;
}

export interface Outlet {
  /** Hands the message on; says what became of it. Must not throw for the next hop's trouble: that is its own 4xx. */
  deliver(m: Deliverable): Promise<{ action: string; reply: Reply }>;
  /** The message will not be delivered (refused, held, discarded, failed): end whatever is open for it. */
  abandon(): Promise<void>;
}

export interface Judgement {
  id: string;
  verdict: Verdict;
  /** decide()'s action, a check's named action, or the outlet's (deliver, next-hop-refused…), as logged. */
  action: string;
  reply: Reply;
  quarantineId: string | null;
}

export interface JudgeDeps {
  config: Pick<Config, 'actions'>;
  store: Store;
  scanner: Scanner;
  logger: Logger;
  messageLog: MessageLog;
  /** What rides with a message's record in its transaction (notify: the Detection); null for none. */
  detect?: (t: TransactionView, m: DecidedMessage) => unknown;
  nodeName: string;
  hooks: Pick<GatewayHooks, 'data' | 'decided'>;
  /** Per-hook time limit; a hook that takes longer is a 451. */
  hookTimeoutMs: number;
  /** When a message arrived, if the caller does not say: the store's time (store/StoreClock); default this node's. */
  clock?: () => Date;
}

export type Judge = (t: TransactionView, raw: Uint8Array, outlet: Outlet, receivedAt?: Date) => Promise<Judgement>;

export function createJudge(deps: JudgeDeps): Judge {
  const { config, store, scanner, logger: log, messageLog, nodeName, hooks, hookTimeoutMs } = deps;
  const clock = deps.clock ?? (() => new Date());

  return async function judge(t, raw, outlet, receivedAt = clock()) {
    const id = randomUUID();
    const block = headerBlock(raw);
    const mailFrom = cleanText(t.mailFrom, 320);
    const rcptTo = t.rcptTo.map((r) => cleanText(r, 320));
    let verdict: Verdict = { kind: 'clean' };
    let findings: string | null = null;
    let scanMs = 0;
    let action: string;
    let reply: Reply;
    let quarantineId: string | null = null;

    /** 250 only once the quarantine row is committed; a store failure is a 451, so the sender keeps the message. */
    async function hold(why: string, detail: string | null): Promise<void> {
      try {
        quarantineId = await quarantineMessage(store.db, {
          messageLogId: id,
          clientIp: t.clientIp,
          helo: t.helo,
          mailFrom,
          rcptTo,
          messageId: headerField(block, 'message-id'),
          subject: headerField(block, 'subject'),
          verdict: why,
          verdictDetail: detail,
          raw,
        });
      } catch (err) {
        storeErrorsTotal.inc({ what: 'quarantine' });
        log.error({ err: (err as Error).message, id }, 'could not quarantine: answering 451 so the sender keeps the message');
        reply = LOCAL_ERROR;
        action = 'tempfail';
      }
    }

    try {
      const hooked = await runHooks(hooks.data, hookTimeoutMs, t, raw);
      if (hooked.reply) {
        await outlet.abandon();
        action = hooked.action ?? (hooked.reply.code >= 500 ? 'refused' : 'deferred');
        reply = hooked.reply;
      } else if (hooked.quarantine) {
        // A check's hold (backscatter).
        await outlet.abandon();
        action = hooked.quarantine.action;
        reply = { code: 250, message: '2.0.0 Ok' };
        await hold(action, cleanText(hooked.quarantine.detail, 300));
      } else {
        const scan = await scanner.scanMessage(raw);
        verdict = scan.verdict;
        findings = recordFindings(scan.findings);
        scanMs = scan.ms;
        scanSeconds.observe(scan.ms / 1000);
        const outcome = decide(verdict, config.actions);
        if (outcome.action === 'deliver') {
          ({ action, reply } = await outlet.deliver({ id, receivedAt, raw, addedHeaders: hooked.headers, mailFrom: hooked.mailFrom }));
        } else {
          await outlet.abandon();
          action = outcome.action;
          reply = outcome.reply;
          if (outcome.action === 'quarantine') await hold(verdict.kind, verdictDetail(verdict));
        }
      }
    } catch (err) {
      log.error({ err: (err as Error).message, id }, 'transaction failed');
      await outlet.abandon().catch(() => {});
      reply = LOCAL_ERROR;
      action = 'tempfail';
    }

    const row = {
      id,
      received_at: receivedAt,
      node: nodeName,
      client_ip: t.clientIp,
      client_port: t.clientPort,
      helo: t.helo,
      mail_from: mailFrom,
      rcpt_to: rcptTo,
      message_id: headerField(block, 'message-id'),
      subject: headerField(block, 'subject'),
      size: raw.length,
      verdict: verdict.kind,
      verdict_detail: verdictDetail(verdict),
      action,
      reply: `${reply.code} ${reply.message}`,
      scan_ms: scanMs,
      quarantine_id: quarantineId,
      findings,
    };
    const extra = deps.detect?.(t, { id, verdict, action, reply, raw, quarantineId, receivedAt }) ?? null;
    if (reply.code >= 400 && reply.code < 500) messageLog.record(row, extra);
    else {
      try {
        await messageLog.commit(row, extra);
      } catch (err) {
        storeErrorsTotal.inc({ what: 'message-log' });
        log.error({ err: (err as Error).message, id, was: row.reply }, 'the record could not be committed: answering 451 so the sender keeps the message');
        reply = STORE_UNAVAILABLE;
        action = 'tempfail';
      }
    }
    messagesTotal.inc({ verdict: verdict.kind, action });
    for (const hook of hooks.decided) {
      hook(t, { id, verdict, action, reply, raw, quarantineId, receivedAt }).catch((err: Error) => log.error({ err: err.message, id }, 'after-decision hook failed'));
    }
    return { id, verdict, action, reply, quarantineId };
  };
}
