/*
 * notify/sender — whether the sender of a detected message may be told (R1,
 * R2). Off by default; the answer is almost always no.
 *
 * Only when notify.sender has both enabled and acknowledgeForgedSenders;
 * only for `banned` verdicts or malware names on the explicit non-forging
 * list (empty by default: worms forge senders); only to an envelope sender
 * whose domain is authenticated — SPF pass for that domain (RFC 7208 §2.6.3),
 * or a DMARC pass (RFC 7489 §3.1 alignment) / aligned DKIM pass whose domain
 * is the envelope sender's organisational domain; at most one notice per
 * sender per UTC day, counted in the store across all nodes.
 *
 * The decision is pure; mailauth does the SPF/DKIM/DMARC checks in the
 * adapter below, on the message the gateway still holds (DKIM needs the
 * body; the body never leaves the gateway). Must never notify a null or
 * unauthenticated sender, and never for malware that forges.
 */
import { getDomain } from 'tldts';
import type { Config } from '../config/schema.ts';
import type { DecidedMessage, TransactionView } from '../edge/gateway.ts';
import { enqueue, type Job, type JobContext } from '../store/jobs.ts';
import type { Db } from '../store/store.ts';
import { detectionFrom } from './detection.ts';
import { composeSenderNotice, type Detection } from './notice.ts';
import { sendThroughRelay } from './postmaster.ts';

export const SENDER_NOTICE_JOB = 'sender-notice';

export interface SenderAuth {
  /** SPF result for the envelope sender's domain. */
  spf: string;
  spfDomain: string | null;
  /** DMARC result and the header From domain it was evaluated for. */
  dmarc: string;
  dmarcDomain: string | null;
  /** Domains of DKIM signatures that passed and align with the header From. */
  dkimAligned: string[];
}

type SenderSettings = NonNullable<Config['notify']>['sender'];

export type Eligibility = { ok: true; via: string } | { ok: false; reason: string };

function orgDomain(domain: string): string {
  const d = domain.toLowerCase().replace(/\.$/, '');
  return getDomain(d) ?? d;
}

/** The part of the R2 decision that needs no DNS: settings, verdict, a usable sender. */
export function senderNoticeCandidate(d: Detection, settings: SenderSettings): Eligibility {
  if (!settings.enabled || !settings.acknowledgeForgedSenders) return { ok: false, reason: 'sender notices are off (R1)' };
  if (d.verdict === 'infected' && !settings.nonForging.includes(d.detail)) return { ok: false, reason: `${d.detail} is not on the non-forging list: its senders are forged` };
  const at = d.mailFrom.lastIndexOf('@');
  if (!d.mailFrom || at < 1) return { ok: false, reason: 'null or malformed envelope sender' };
  return { ok: true, via: 'candidate' };
}

/** The pure R2 decision. `auth` is null when no check could be made (then: no). */
export function senderNoticeEligible(d: Detection, auth: SenderAuth | null, settings: SenderSettings): Eligibility {
  const candidate = senderNoticeCandidate(d, settings);
  if (!candidate.ok) return candidate;
  const domain = d.mailFrom.slice(d.mailFrom.lastIndexOf('@') + 1).toLowerCase();
  if (!auth) return { ok: false, reason: 'sender not authenticated (no check was made)' };
  if (auth.spf === 'pass' && auth.spfDomain?.toLowerCase() === domain) return { ok: true, via: `SPF pass for ${domain}` };
  const org = orgDomain(domain);
  if (auth.dmarc === 'pass' && auth.dmarcDomain && orgDomain(auth.dmarcDomain) === org) return { ok: true, via: `DMARC pass for ${auth.dmarcDomain}` };
  const dkim = auth.dkimAligned.find((x) => orgDomain(x) === org);
  if (dkim) return { ok: true, via: `aligned DKIM pass for ${dkim}` };
  return { ok: false, reason: `sender domain ${domain} not authenticated (SPF ${auth.spf}, DMARC ${auth.dmarc})` };
}

/** Takes the sender's one notice of the day; false if it was already taken (by any node). */
export async function claimSenderNotice(db: Db, sender: string, now = new Date()): Promise<boolean> {
  const row = await db
    .insertInto('sender_notices')
    .values({ sender: sender.toLowerCase(), day: now.toISOString().slice(0, 10) })
    .onConflict((oc) => oc.columns(['sender', 'day']).doNothing())
    .returning('sender')
    .executeTakeFirst();
  return row !== undefined;
}

export type DnsResolver = (name: string, type: string) => Promise<unknown>;

/** Runs SPF, DKIM and DMARC with mailauth on the message as received; null when the check itself failed. */
export async function checkSenderAuth(raw: Buffer, t: { ip: string; helo: string; mailFrom: string; hostname: string }, resolver?: DnsResolver): Promise<SenderAuth | null> {
  try {
    // Loaded on the first check, not at start: mailauth is ~18 MB of a node's RSS (issue 16,
    // bench/README.md "bench:memory") and sender notices are off by default.
    const { authenticate } = await import('mailauth');
    const r = (await authenticate(raw, { ip: t.ip, helo: t.helo, sender: t.mailFrom, mta: t.hostname, ...(resolver ? { resolver } : {}), disableArc: true, disableBimi: true } as never)) as {
      spf?: { domain?: string; status?: { result?: string } } | false;
      dmarc?: { domain?: string; status?: { result?: string } } | false;
      dkim?: { results?: { status?: { result?: string; aligned?: string | false }; signingDomain?: string }[] };
    };
    return {
      spf: (r.spf && r.spf.status?.result) || 'none',
      spfDomain: (r.spf && r.spf.domain) || null,
      dmarc: (r.dmarc && r.dmarc.status?.result) || 'none',
      dmarcDomain: (r.dmarc && r.dmarc.domain) || null,
      dkimAligned: (r.dkim?.results ?? []).flatMap((x) => (x.status?.result === 'pass' && x.status.aligned ? [String(x.status.aligned)] : [])),
    };
  } catch {
    return null;
  }
}

type Notify = NonNullable<Config['notify']>;

interface SenderNoticePayload {
  detection: Detection;
  via: string;
}

/**
 * The gateway's after-decision hook for R2: cheap checks first, then
 * SPF/DKIM/DMARC on the message the gateway still holds, then the sender's
 * one notice of the day, then a job. Returns why not, for the log.
 */
export function senderNoticeHook(db: Db, notify: Notify, hostname: string, onDecision: (d: Detection, e: Eligibility) => void = () => {}, resolver?: DnsResolver) {
  return async (t: TransactionView, decided: DecidedMessage): Promise<void> => {
    const d = detectionFrom(t, decided);
    if (!d || !senderNoticeCandidate(d, notify.sender).ok) return;
    const auth = await checkSenderAuth(Buffer.from(decided.raw), { ip: t.clientIp, helo: t.helo, mailFrom: t.mailFrom, hostname }, resolver);
    let eligibility = senderNoticeEligible(d, auth, notify.sender);
    if (eligibility.ok && !(await claimSenderNotice(db, d.mailFrom))) eligibility = { ok: false, reason: 'this sender already had its notice today' };
    onDecision(d, eligibility);
    if (!eligibility.ok) return;
    const payload: SenderNoticePayload = { detection: d, via: eligibility.via };
    await enqueue(db, { kind: SENDER_NOTICE_JOB, payload, dedupeKey: `sender-notice:${d.id}` });
  };
}

/** Sends a sender notice with a null envelope sender, so nothing can bounce back to anyone. */
export function senderNoticeHandlers(notify: Notify, hostname: string) {
  const settings = { from: notify.from, postmaster: notify.postmaster, hostname };
  return {
    [SENDER_NOTICE_JOB]: async (payload: unknown, _job: Job, ctx?: JobContext) => {
      const { detection, via } = payload as SenderNoticePayload;
      await sendThroughRelay(notify.relay, hostname, detection.mailFrom, await composeSenderNotice(detection, settings, via, ctx?.handoff.messageId), '', ctx?.handoff);
    },
  };
}
