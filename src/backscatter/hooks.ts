/*
 * backscatter/hooks — the shield in the gateway: the hook functions the edge
 * runs (edge/gateway GatewayHooks), over the pure decisions of batv.ts,
 * classify.ts, verdict.ts and shield.ts and the keys in the store (keys.ts).
 *
 *   mail   outbound (the client is in relayFrom) with a sender of one of our
 *          BATV domains: the next hop gets the sender signed, prvs=…=local@dom
 *          (an already tagged sender is left alone)
 *   rcpt   inbound: a null sender to an untagged or badly tagged address of a
 *          BATV domain is refused 550 5.7.1 there and then (log-only: recorded
 *          as would-refuse); a valid tag is removed, the next hop gets
 *          local@domain
 *   data   outbound: an X-Backstop-Stamp field binding the Message-ID (or a
 *          stamped Message-ID where there is none) on top of the relayed copy —
 *          added, never rewritten, so DKIM signatures stay intact (verdict.ts);
 *          inbound: classify, judge with our keys, stamps and relays, and refuse
 *          or quarantine backscatter (action `backscatter-refuse` /
 *          `backscatter-quarantine` in the message log); `ours` passes untouched
 *
 * Every bounce or notice judged leaves one classification record (store 0200,
 * through a batcher, off the SMTP path). That record is all a bounce changes:
 * it is attacker-controlled text. The one consequence beyond it — a complaint
 * to the MTA that bounced a virus at us — is decided later, in a job, from
 * the connecting address and our own DNS lookups (backscatter/complaint.ts),
 * at most once per bouncing organisation per 7 days.
 *
 * The sign date: the tag is stable for one message across retries. At MAIL
 * the next hop gets a tag of today (the message is not there yet); at end of
 * DATA the tag is made again from the message's own Date — the day of its
 * first attempt, which every retry repeats — when that lies within the last
 * six days, and if it differs the gateway starts the next hop's transaction
 * again with it (edge/gateway reEnvelope). A Date ahead of us or too old to
 * leave a useful validity falls back to today.
 */
import type { Config } from '../config/schema.ts';
import { headerBlock, headerField } from '../edge/headers.ts';
import { CONTINUE, type GatewayHooks, type HookOutcome, type TransactionView } from '../edge/gateway.ts';
import { compileRelayPolicy, inNetworks } from '../edge/relay.ts';
import { cleanText } from '../obs/clean.ts';
import { Batcher } from '../store/batcher.ts';
import { enqueue } from '../store/jobs.ts';
import type { Db } from '../store/store.ts';
import { BATV_VALIDITY_DAYS, signPrvs } from './batv.ts';
import { classify, type Classification } from './classify.ts';
import type { BackscatterKeys } from './keys.ts';
import { checkBounceRecipient, decideAtData, type ShieldMode } from './shield.ts';
import { bounceVerdict, messageIdStamp, STAMP_HEADER, stampedMessageId, type VerdictResult } from './verdict.ts';

export const BOUNCER_JOB = 'backscatter-bouncer';

export interface ShieldSettings {
  mode: ShieldMode;
  batvDomains: string[];
  onBackscatter: 'refuse' | 'quarantine';
  /** Our relays' host names: smtp.hostname plus backscatter.ourRelays. */
  ourRelays: string[];
  relayFrom: string[];
  hostname: string;
  complaints: 'off' | 'review' | 'auto';
}

/** The shield's settings from the configuration; null when it is off or not configured. */
export function shieldSettings(config: Pick<Config, 'backscatter' | 'domains' | 'relayFrom' | 'smtp' | 'notify'>): ShieldSettings | null {
  const b = config.backscatter;
  if (!b || b.mode === 'off') return null;
  return {
    mode: b.mode,
    batvDomains: (b.batvDomains ?? config.domains).map((d) => d.toLowerCase()),
    onBackscatter: b.action === 'quarantine' ? 'quarantine' : 'refuse',
    ourRelays: [...new Set([config.smtp.hostname.toLowerCase(), ...b.ourRelays])],
    relayFrom: config.relayFrom,
    hostname: config.smtp.hostname,
    // A complaint needs a relay to go out through.
    complaints: config.notify ? b.complaints.mode : 'off',
  };
}

/** One classification record (0200), peer text cleaned. */
export interface ShieldEvent {
  receivedAt: Date;
  clientIp: string;
  helo: string;
  class: Classification['class'];
  format: string | null;
  verdict: VerdictResult['verdict'];
  action: 'pass' | 'refuse' | 'quarantine' | 'would-refuse' | 'would-quarantine';
  reportingMta: string | null;
  originalMessageId: string | null;
  virusName: string | null;
  reasons: string[];
  /** Set when the event may lead to a complaint (an av-notice or a bounce of a virus, judged backscatter). */
  complaint?: BouncerPayload;
}

/** What the bouncer job gets: the connecting side and the bounce's header block, nothing of its body. */
export interface BouncerPayload {
  clientIp: string;
  helo: string;
  reportingMta: string | null;
  class: string;
  virusName: string | null;
  headers: string;
  receivedAt: string;
}

/** Complaints are only about virus backscatter: av-notices, and bounces that say the original carried a virus. Pure. */
export function complaintEligible(c: Pick<Classification, 'class' | 'mentionsVirus'>, verdict: VerdictResult['verdict']): boolean {
  if (verdict !== 'backscatter') return false;
  return c.class === 'av-notice' || (c.class === 'dsn' && c.mentionsVirus);
}

const DAY_MS = 86_400_000;

/** Writes events in batches; eligible ones enqueue one bouncer job per client address and day. */
export class ShieldRecorder extends Batcher<ShieldEvent> {
  constructor(db: Db, onError: (err: Error, lost: number) => void, flushMs = 200) {
    super({
      flushMs,
      onError,
      write: async (batch) => {
        await db
          .insertInto('backscatter_events')
          .values(
            batch.map((e) => ({
              received_at: e.receivedAt,
              client_ip: e.clientIp,
              helo: cleanText(e.helo, 255),
              class: e.class,
              format: e.format,
              verdict: e.verdict,
              action: e.action,
              reporting_mta: e.reportingMta,
              original_message_id: e.originalMessageId,
              virus_name: e.virusName,
              reasons: e.reasons.slice(0, 20).map((r) => cleanText(r, 200)),
            })),
          )
          .execute();
        const seen = new Set<string>();
        for (const e of batch) {
          if (!e.complaint) continue;
          const key = `bouncer:${e.clientIp}:${Math.floor(e.receivedAt.getTime() / DAY_MS)}`;
          if (seen.has(key)) continue;
          seen.add(key);
          await enqueue(db, { kind: BOUNCER_JOB, payload: e.complaint, dedupeKey: key, maxAttempts: 6 });
        }
      },
    });
  }
}

export interface ShieldHookDeps {
  settings: ShieldSettings;
  keys: () => BackscatterKeys;
  recorder: { add(e: ShieldEvent): void };
  now?: () => number;
}

/** When the message was first sent, as far as we can tell: its Date within the last 6 days (not ahead of us), else now. Pure. */
export function signDate(dateHeader: string | null, now: number): number {
  const d = dateHeader ? Date.parse(dateHeader.replace(/\([^()]*\)\s*$/, '').trim()) : NaN;
  if (!Number.isFinite(d) || d > now + 3_600_000 || now - d > (BATV_VALIDITY_DAYS - 1) * DAY_MS) return now;
  return Math.min(d, now);
}

function domainOf(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1).toLowerCase();
}

/** The hooks to hand startGateway. */
export function backscatterHooks(deps: ShieldHookDeps): Pick<GatewayHooks, 'mail' | 'rcpt' | 'data'> {
  const { settings, recorder } = deps;
  const now = deps.now ?? Date.now;
  const relayFrom = compileRelayPolicy([], settings.relayFrom).relayFrom;
  const batvDomains = new Set(settings.batvDomains);
  const outbound = (t: TransactionView) => inNetworks(t.clientIp, relayFrom);

  const signs = (t: TransactionView) => outbound(t) && t.mailFrom !== '' && batvDomains.has(domainOf(t.mailFrom));
  const mail = async (t: TransactionView): Promise<HookOutcome> => {
    if (!signs(t)) return CONTINUE;
    const signed = signPrvs(t.mailFrom, deps.keys().ring, now());
    return signed === t.mailFrom ? CONTINUE : { outcome: 'continue', mailFrom: signed };
  };

  const rcpt = async (t: TransactionView, address: string): Promise<HookOutcome> => {
    if (outbound(t)) return CONTINUE;
    const d = checkBounceRecipient(t.mailFrom, address, { batvDomains: settings.batvDomains, ring: deps.keys().ring, now: now(), mode: settings.mode });
    if (d.wouldRefuse || d.action === 'refuse') {
      recorder.add({
        receivedAt: new Date(now()),
        clientIp: t.clientIp,
        helo: t.helo,
        // A null sender is a bounce by definition (RFC 5321 4.5.5); nothing else is known before DATA.
        class: 'dsn',
        format: 'null-sender',
        verdict: 'backscatter',
        action: d.action === 'refuse' ? 'refuse' : 'would-refuse',
        reportingMta: null,
        originalMessageId: null,
        virusName: null,
        reasons: [`at RCPT: ${d.batv}`],
      });
    }
    if (d.action === 'refuse') return { outcome: 'reply', reply: { code: d.reply!.code, message: `${d.reply!.enhanced} ${d.reply!.text}` }, action: 'backscatter-refuse' };
    return d.rcpt === address ? CONTINUE : { outcome: 'continue', rcpt: d.rcpt };
  };

  const data = async (t: TransactionView, raw: Uint8Array): Promise<HookOutcome> => {
    const keys = deps.keys();
    if (outbound(t)) {
      const block = headerBlock(raw);
      const id = headerField(block, 'message-id');
      const stamp = keys.stampKeys[0]!;
      const field = id ? `${STAMP_HEADER}: ${messageIdStamp(id, stamp)}\r\n` : `Message-ID: ${stampedMessageId(settings.hostname, stamp)}\r\n`;
      if (!signs(t)) return { outcome: 'continue', headers: field };
      // The tag of the message's first day (see the header comment); the gateway re-sends the envelope only if it differs.
      const signed = signPrvs(t.mailFrom, keys.ring, signDate(headerField(block, 'date'), now()));
      return signed === t.mailFrom ? { outcome: 'continue', headers: field } : { outcome: 'continue', headers: field, mailFrom: signed };
    }
    const c = await classify(raw);
    if (c.class === 'normal') return CONTINUE;
    const v = bounceVerdict(c, {
      stampKeys: keys.stampKeys,
      ourRelays: settings.ourRelays,
      batv: { rcpts: [...t.rcptTo], domains: settings.batvDomains, ring: keys.ring, now: now() },
    });
    const d = decideAtData(c, v, { mode: settings.mode, onBackscatter: settings.onBackscatter });
    const action = d.action !== 'pass' ? d.action : d.wouldAct ? (`would-${d.wouldAct}` as const) : 'pass';
    const complaint =
      settings.complaints !== 'off' && complaintEligible(c, v.verdict)
        ? {
            clientIp: t.clientIp,
            helo: t.helo,
            reportingMta: c.reportingMta,
            class: c.class,
            virusName: c.virusName,
            headers: headerBlock(raw).slice(0, 64 * 1024),
            receivedAt: new Date(now()).toISOString(),
          }
        : undefined;
    recorder.add({
      receivedAt: new Date(now()),
      clientIp: t.clientIp,
      helo: t.helo,
      class: c.class,
      format: c.format,
      verdict: v.verdict,
      action,
      reportingMta: c.reportingMta,
      originalMessageId: c.original?.messageId ?? null,
      virusName: c.virusName,
      reasons: d.record.reasons,
      complaint,
    });
    if (d.action === 'refuse') return { outcome: 'reply', reply: { code: d.reply!.code, message: `${d.reply!.enhanced} ${d.reply!.text}` }, action: 'backscatter-refuse' };
    if (d.action === 'quarantine') return { outcome: 'quarantine', action: 'backscatter-quarantine', detail: `${c.class}${c.format ? ` (${c.format})` : ''}` };
    return CONTINUE;
  };

  return { mail: [mail], rcpt: [rcpt], data: [data] };
}
