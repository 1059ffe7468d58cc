/*
 * backscatter/complaint — tells an MTA that bounces or "notifies" virus
 * senders to stop (R7): a letter to postmaster@ and abuse@ its organisation
 * and to the abuse contact of its address, with the bounce's header block as
 * evidence and nothing of the worm.
 *
 * Two jobs (store/jobs), so nothing of this runs on the SMTP path and
 * everything survives a restart:
 *
 *   backscatter-bouncer    queued by the shield (backscatter/hooks.ts) once per
 *                          client address and day, for virus backscatter. Finds
 *                          the organisation: the registrable domain (tldts,
 *                          public suffix list) of the connecting address's
 *                          forward-confirmed reverse name, confirmed by the
 *                          HELO name or the DSN's Reporting-MTA — both peer
 *                          text, so neither alone ever names a domain we
 *                          write to. Without that agreement the letter goes
 *                          only to the address's abuse contact (the lookup
 *                          chain of notify/contact.ts). Then claims the
 *                          organisation's 7-day slot in store 0200 (one
 *                          atomic upsert, so nodes agree) and queues the letter.
 *   backscatter-complaint  the letter: held in state `review` for an admin to
 *                          approve in the console's outbox (default), or queued
 *                          at once (`auto`); sent through notify.relay from a
 *                          real mailbox that takes replies.
 *
 * The letter (composeComplaint, pure): Backstop's own words, per language
 * (en and de built in, each replaceable in config), why bouncing or
 * notifying virus senders harms and what to do instead, then the bounce's
 * header block as text/rfc822-headers. Auto-Submitted: auto-generated.
 *
 * Trusts: the configuration and our own DNS lookups. Everything from the
 * bounce (HELO, Reporting-MTA, headers, virus name) is cleaned, bounded and
 * only ever quoted.
 */
import MimeNode from 'nodemailer/lib/mime-node';
import { getDomain } from 'tldts';
import type { Config } from '../config/schema.ts';
import { SmtpClient } from '../edge/smtp-client.ts';
import { rfc5322Date } from '../notify/arf.ts';
import { lookupContact, type ContactSources } from '../notify/contact.ts';
import { headersOnly } from '../notify/notice.ts';
import { verifiedReverseName } from '../notify/postmaster.ts';
import { cleanText } from '../obs/clean.ts';
import { enqueue, type Handoff, type Job, type JobContext } from '../store/jobs.ts';
import type { Db } from '../store/store.ts';
import { version } from '../version.ts';
import { BOUNCER_JOB, type BouncerPayload } from './hooks.ts';

export const COMPLAINT_JOB = 'backscatter-complaint';
/** At most one complaint per bouncing organisation in this time. */
export const COMPLAINT_INTERVAL_MS = 7 * 86_400_000;

// ---------------------------------------------------------------------------
// Who bounced (pure).

export interface Organisation {
  /** The 7-day key: the registrable domain, or `ip:ADDRESS` when none is confirmed. */
  key: string;
  /** The domain whose postmaster@ and abuse@ get the letter; null: only the address's abuse contact. */
  domain: string | null;
  /** How it was found, in words (for the letter's reviewer). */
  basis: string;
}

const registrable = (name: string | null): string | null => {
  if (!name) return null;
  const n = name.trim().replace(/^\[|\]$/g, '').replace(/\.$/, '').toLowerCase();
  if (!/^[a-z0-9.-]{1,253}$/.test(n) || /^[0-9.]+$/.test(n)) return null;
  return getDomain(n) ?? null;
};

/** The bouncing organisation from the FCrDNS name, cross-checked with HELO and Reporting-MTA. */
export function bouncerOrganisation(i: { clientIp: string; reverseName: string | null; helo: string; reportingMta: string | null }): Organisation {
  const rev = registrable(i.reverseName);
  const helo = registrable(i.helo);
  const rep = registrable(i.reportingMta);
  const ipKey = `ip:${i.clientIp}`;
  if (!rev) return { key: ipKey, domain: null, basis: 'no forward-confirmed reverse name: only the address’s abuse contact' };
  const agree = [helo === rev ? 'HELO' : null, rep === rev ? 'Reporting-MTA' : null].filter((x): x is string => x !== null);
  if (agree.length === 0) return { key: ipKey, domain: null, basis: `reverse name ${cleanText(i.reverseName!, 253)} is confirmed by neither HELO nor Reporting-MTA: only the address’s abuse contact` };
  return { key: rev, domain: rev, basis: `forward-confirmed reverse name ${cleanText(i.reverseName!, 253)}, confirmed by ${agree.join(' and ')}` };
}

const ADDRESS = /^[^\s<>@"]{1,64}@[a-z0-9.-]{1,253}$/;

/** postmaster@ and abuse@ the organisation, then the address's abuse contact; lower case, unique, well-formed. Pure. */
export function complaintRecipients(org: Organisation, ipContact: string | null): string[] {
  const all = [...(org.domain ? [`postmaster@${org.domain}`, `abuse@${org.domain}`] : []), ...(ipContact ? [ipContact.toLowerCase()] : [])];
  return [...new Set(all)].filter((a) => ADDRESS.test(a));
}

// ---------------------------------------------------------------------------
// The letter (pure).

export interface ComplaintText {
  subject: string;
  body: string;
}

/** Built-in texts. Placeholders: {ip} {reverse} {helo} {organisation} {hostname} {count} {firstSeen} {virus} {from}. */
export const COMPLAINT_TEXTS: Record<string, ComplaintText> = {
  en: {
    subject: 'Your mail server {ip} sends bounces and virus notices to forged senders',
    body: `Dear postmaster,

this is an automatic message from the mail gateway {hostname}, about the
mail server at {ip} ({reverse}, HELO {helo}). Since {firstSeen} it sent us
{count} bounce(s) or "virus found" notice(s) about mail our users never sent.
Virus named in your server's message: {virus}.

The mail your server answered was sent by a worm, and worms forge the sender
address: they take it from the infected machine's address book. The person
your server bounced to or warned did not send the virus. Bouncing or
notifying the sender of a virus therefore
  - sends mail to innocent third parties (backscatter), by the thousand
    during an outbreak;
  - can spread the worm itself, when the bounce quotes the original with
    its attachment;
  - causes double bounces where the forged address does not exist, and
    loops between automatic responders;
  - wastes your bandwidth, queue and disk, and ours.

What to do instead:
  - scan before accepting and reject infected mail in the SMTP session
    (550), so that the connecting client - the infected machine - gets the
    error, not a stranger; or
  - where you can only scan after accepting: log the message and discard it;
    or
  - quarantine it and tell your own postmaster.
Never strip the attachment and deliver the rest, and never notify the
(forged) sender.

The header block of one message your server sent us is attached as
text/rfc822-headers. Nothing of the worm is attached.

You will get at most one such letter in 7 days. Replies to {from} are read
by a person.`,
  },
  de: {
    subject: 'Ihr Mailserver {ip} schickt Bounces und Virenwarnungen an gefälschte Absender',
    body: `Sehr geehrte Postmaster,

dies ist eine automatische Nachricht des Mail-Gateways {hostname} über den
Mailserver {ip} ({reverse}, HELO {helo}). Seit {firstSeen} hat er uns
{count} Unzustellbarkeitsnachricht(en) oder Virenwarnung(en) zu Mails
geschickt, die unsere Nutzer nie versandt haben.
Virus laut Ihrer Nachricht: {virus}.

Die Mail, auf die Ihr Server geantwortet hat, stammt von einem Wurm, und
Würmer fälschen den Absender: Sie nehmen ihn aus dem Adressbuch des
infizierten Rechners. Wer Ihre Warnung oder Ihren Bounce bekommt, hat den
Virus nicht verschickt. Bounces und Warnungen an den Absender eines Virus
  - schicken Mail an Unbeteiligte (Backscatter), während eines Ausbruchs
    tausendfach;
  - verbreiten den Wurm unter Umständen selbst, wenn der Bounce das Original
    mit Anhang zitiert;
  - erzeugen Doppel-Bounces, wo die gefälschte Adresse nicht existiert, und
    Schleifen zwischen Autorespondern;
  - verschwenden Bandbreite, Queue und Plattenplatz, Ihre und unsere.

Besser:
  - vor der Annahme prüfen und infizierte Mail in der SMTP-Sitzung ablehnen
    (550): Dann erhält der einliefernde Client - der infizierte Rechner - den
    Fehler, kein Fremder; oder
  - wo erst nach der Annahme geprüft werden kann: protokollieren und
    verwerfen; oder
  - in Quarantäne nehmen und den eigenen Postmaster informieren.
Niemals den Anhang entfernen und den Rest zustellen, und niemals den
(gefälschten) Absender benachrichtigen.

Der Header einer Nachricht Ihres Servers liegt als text/rfc822-headers bei.
Vom Wurm selbst ist nichts beigefügt.

Sie erhalten höchstens ein solches Schreiben in 7 Tagen. Antworten an {from}
liest ein Mensch.`,
  },
};

export interface ComplaintFacts {
  organisation: string;
  basis: string;
  to: string[];
  clientIp: string;
  reverseName: string | null;
  helo: string;
  reportingMta: string | null;
  virusName: string | null;
  /** Backscatter messages from this address in our record (last 7 days). */
  count: number;
  firstSeen: string;
  /** The bounce's header block (only the header block is ever used). */
  headers: string;
}

export interface ComplaintLetter extends ComplaintFacts {
  from: string;
  hostname: string;
  languages: string[];
  texts: Record<string, ComplaintText>;
  /** Stable per letter (the job id): one Message-ID across retries. */
  letterId: string;
  now: Date;
}

function fill(template: string, values: Record<string, string>): string {
  return template.replace(/\{([a-zA-Z]+)\}/g, (whole, name: string) => values[name] ?? whole);
}

/** The letter's text/plain body and subject, every language in order; unknown languages are skipped (English if none is left). */
export function complaintText(l: ComplaintLetter): ComplaintText {
  const texts = { ...COMPLAINT_TEXTS, ...l.texts };
  const langs = l.languages.filter((x) => texts[x]);
  const use = langs.length > 0 ? langs : ['en'];
  const c = (v: string | null, max = 253) => (v === null || v === '' ? '-' : cleanText(v, max));
  const values: Record<string, string> = {
    ip: c(l.clientIp, 45),
    reverse: l.reverseName ? c(l.reverseName) : 'no reverse name',
    helo: c(l.helo),
    organisation: c(l.organisation),
    hostname: c(l.hostname),
    count: String(Math.max(1, Math.floor(l.count))),
    firstSeen: c(l.firstSeen, 40),
    virus: l.virusName ? c(l.virusName, 120) : '-',
    from: c(l.from, 320),
  };
  return {
    subject: fill(texts[use[0]!]!.subject, values),
    body: use.map((lang) => fill(texts[lang]!.body, values)).join('\n\n----------------------------------------------------------------\n\n').replace(/\r?\n/g, '\r\n'),
  };
}

/** The complaint as RFC 5322 bytes: text/plain, then the bounce's header block as text/rfc822-headers. */
export async function composeComplaint(l: ComplaintLetter): Promise<Buffer> {
  const text = complaintText(l);
  const root = new MimeNode('multipart/mixed');
  root.setHeader({
    From: l.from,
    To: l.to.join(', '),
    Subject: text.subject,
    Date: rfc5322Date(l.now),
    'Message-ID': `<complaint-${cleanText(l.letterId, 64).replace(/[^A-Za-z0-9._-]/g, '')}@${cleanText(l.hostname, 253)}>`,
    // RFC 3834 §5: machine-generated; no automatic answers, please.
    'Auto-Submitted': 'auto-generated',
    'X-Auto-Response-Suppress': 'All',
    'Content-Language': l.languages.join(', '),
    'X-Mailer': `Backstop/${version}`,
  });
  root.createChild('text/plain; charset=utf-8').setContent(text.body);
  // Only the header block: everything after the first empty line (the worm) is cut off here.
  const block = headersOnly(l.headers).replace(/\r?\n/g, '\r\n');
  root.createChild('text/rfc822-headers; charset=utf-8').setContent(`${block}\r\n`);
  return root.build();
}

// ---------------------------------------------------------------------------
// The store: the organisation's 7-day slot.

/**
 * Counts a bounce of the organisation and claims its complaint slot when the
 * last one is 7 days old or there was none; true when claimed. The claim is
 * one conditional UPDATE: PostgreSQL re-checks its condition on the row a
 * concurrent claim just changed, so of two nodes claiming at once exactly
 * one wins, even in the same millisecond.
 */
export async function claimComplaint(db: Db, organisation: string, now = new Date()): Promise<boolean> {
  const cutoff = new Date(now.getTime() - COMPLAINT_INTERVAL_MS);
  await db
    .insertInto('backscatter_complaints')
    .values({ organisation, last_sent_at: null, bounces_seen: 1 })
    .onConflict((oc) => oc.column('organisation').doUpdateSet((eb) => ({ bounces_seen: eb('backscatter_complaints.bounces_seen', '+', 1) })))
    .execute();
  const claimed = await db
    .updateTable('backscatter_complaints')
    .set({ last_sent_at: now })
    .where('organisation', '=', organisation)
    .where((eb) => eb.or([eb('last_sent_at', 'is', null), eb('last_sent_at', '<=', cutoff)]))
    .returning('organisation')
    .executeTakeFirst();
  return claimed !== undefined;
}

// ---------------------------------------------------------------------------
// The jobs.

/** Sends one message to several recipients through the relay in one transaction; throws unless all are taken. */
export async function sendToMany(relay: string, hostname: string, envelopeFrom: string, to: readonly string[], raw: Buffer, handoff?: Pick<Handoff, 'sending' | 'sent'>): Promise<void> {
  for (const a of [envelopeFrom, ...to]) if (!ADDRESS.test(a.toLowerCase())) throw new Error('refusing to send to or from a malformed address');
  const hostPort = relay.slice('smtp://'.length);
  const at = hostPort.lastIndexOf(':');
  const client = await SmtpClient.open({ host: at === -1 ? hostPort : hostPort.slice(0, at).replace(/^\[(.*)\]$/, '$1'), port: at === -1 ? 25 : Number(hostPort.slice(at + 1)), heloName: hostname });
  try {
    const mail = await client.command(`MAIL FROM:<${envelopeFrom}>`);
    if (mail.code !== 250) throw new Error(`relay refused MAIL: ${mail.code} ${mail.text}`);
    for (const rcpt of to) {
      const r = await client.command(`RCPT TO:<${rcpt}>`);
      if (r.code !== 250 && r.code !== 251) throw new Error(`relay refused RCPT ${rcpt}: ${r.code} ${r.text}`);
    }
    await handoff?.sending(); // store/jobs: a crash from here to sent() is the one way this letter goes twice
    const done = await client.data([raw]);
    if (done.code !== 250) throw new Error(`relay refused DATA: ${done.code} ${done.text}`);
    await handoff?.sent();
  } finally {
    client.close();
  }
}

export interface ComplaintHandlerOptions {
  db: Db;
  config: Pick<Config, 'backscatter' | 'notify' | 'abuse' | 'smtp'>;
  /** The IP abuse-contact chain's sources (notify/record contactSources); absent: no IP contact. */
  sources?: ContactSources;
  reverse?: (ip: string) => Promise<string | null>;
  now?: () => Date;
  onOutcome?: (what: string, detail: Record<string, unknown>) => void;
}

/** The two job handlers; empty when complaints are off or there is no relay to send through. */
export function complaintHandlers(o: ComplaintHandlerOptions): Record<string, (payload: unknown, job: Job) => Promise<void>> {
  const b = o.config.backscatter;
  const notify = o.config.notify;
  if (!b || b.mode === 'off' || b.complaints.mode === 'off' || !notify) return {};
  const mode = b.complaints.mode;
  const from = b.complaints.from ?? notify.from;
  const hostname = o.config.smtp.hostname;
  const reverse = o.reverse ?? ((ip: string) => verifiedReverseName(ip));
  const now = o.now ?? (() => new Date());
  const report = o.onOutcome ?? (() => {});
  return {
    [BOUNCER_JOB]: async (payload) => {
      const p = payload as BouncerPayload;
      const reverseName = await reverse(p.clientIp).catch(() => null);
      const org = bouncerOrganisation({ clientIp: p.clientIp, reverseName, helo: p.helo, reportingMta: p.reportingMta });
      let ipContact: string | null = null;
      if (o.config.abuse && o.sources) {
        const found = await lookupContact(p.clientIp, o.config.abuse, o.sources);
        if (found.kind === 'email') ipContact = found.address;
      }
      const to = complaintRecipients(org, ipContact);
      if (to.length === 0) return report('no-recipient', { ip: p.clientIp, basis: org.basis });
      const at = now();
      if (!(await claimComplaint(o.db, org.key, at))) return report('already-complained', { organisation: org.key });
      const since = new Date(at.getTime() - COMPLAINT_INTERVAL_MS);
      const counted = await o.db
        .selectFrom('backscatter_events')
        .select((eb) => [eb.fn.countAll<number>().as('n'), eb.fn.min('received_at').as('first')])
        .where('client_ip', '=', p.clientIp)
        .where('verdict', '=', 'backscatter')
        .where('received_at', '>=', since)
        .executeTakeFirst();
      const facts: ComplaintFacts = {
        organisation: org.key,
        basis: org.basis,
        to,
        clientIp: p.clientIp,
        reverseName,
        helo: cleanText(p.helo, 253),
        reportingMta: p.reportingMta,
        virusName: p.virusName,
        count: Math.max(1, Number(counted?.n ?? 1)),
        firstSeen: (counted?.first ? new Date(counted.first as Date) : new Date(p.receivedAt)).toISOString(),
        headers: headersOnly(p.headers),
      };
      await enqueue(o.db, { kind: COMPLAINT_JOB, payload: facts, state: mode === 'review' ? 'review' : 'queued', dedupeKey: `complaint:${org.key}:${Math.floor(at.getTime() / COMPLAINT_INTERVAL_MS)}`, maxAttempts: 8 });
      report(mode === 'review' ? 'queued-for-review' : 'queued', { organisation: org.key, to });
    },
    [COMPLAINT_JOB]: async (payload, job, ctx?: JobContext) => {
      const facts = payload as ComplaintFacts;
      const raw = await composeComplaint({ ...facts, from, hostname, languages: b.complaints.languages, texts: b.complaints.texts, letterId: job.id, now: now() });
      await sendToMany(notify.relay, hostname, from, facts.to, raw, ctx?.handoff);
      await o.db.updateTable('backscatter_complaints').set((eb) => ({ complaints_sent: eb('complaints_sent', '+', 1) })).where('organisation', '=', facts.organisation).execute();
      report('sent', { organisation: facts.organisation, to: facts.to });
    },
  };
}
