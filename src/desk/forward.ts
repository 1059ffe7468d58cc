/*
 * desk/forward — passes an attributed report on to the customer (R8), in
 * Backstop's own standard format: our words in the customer's language, the
 * report's summary (built by desk/report-parse from machine-readable facts,
 * never the reporter's prose), the time in the customer's zone, and the
 * attached header block as text/rfc822-headers. Never a body, never who
 * reported it ("a third party"): the header block loses the fields that name
 * the reporter's side (its recipients, its own Received hops above the one
 * that names the customer's address, its authentication results).
 *
 * Sent through notify.relay with the desk's mailbox as envelope sender,
 * Auto-Submitted: auto-generated. The job retries until the relay says 250;
 * then the report is 'forwarded'.
 */
import MailComposer from 'nodemailer/lib/mail-composer';
import type { Config } from '../config/schema.ts';
import { sendThroughRelay } from '../notify/postmaster.ts';
import type { Job, JobContext } from '../store/jobs.ts';
import type { Db } from '../store/store.ts';
import { FORWARD_JOB, type DeskSettings } from './intake.ts';
import { canonicalIp } from './report-parse.ts';
import { timeInZone } from './zones.ts';

export interface CustomerContact {
  id: string;
  name: string;
  email: string;
  language: string;
  time_zone: string;
}

export interface ForwardPorts {
  getCustomer(db: Db, id: string): Promise<CustomerContact | null | undefined>;
}

interface Texts {
  subject: (ip: string) => string;
  body: (f: { name: string; ip: string; port: number | null; when: string; zone: string; summary: string; malware: string[]; headers: boolean }) => string[];
}

const TEXTS: Record<string, Texts> = {
  en: {
    subject: (ip) => `Abuse report about your connection (${ip})`,
    body: (f) => [
      `Dear ${f.name},`,
      '',
      `a third party has reported abuse coming from your Internet connection, address ${f.ip}${f.port ? ` port ${f.port}` : ''}, at ${f.when} (${f.zone}).`,
      '',
      `What was reported: ${f.summary}`,
      ...(f.malware.length ? [`Malware named in the report: ${f.malware.join(', ')}`] : []),
      '',
      'This often means that a computer or device behind your connection is infected and sends mail or attacks by itself.',
      'Please check all devices on your connection with up-to-date antivirus software.',
      ...(f.headers ? ['', 'The header lines of the message concerned are attached (no message content).'] : []),
      '',
      'This message was sent automatically by your provider\'s abuse desk. Reply to this message if you have questions.',
    ],
  },
  de: {
    subject: (ip) => `Missbrauchsmeldung zu Ihrem Anschluss (${ip})`,
    body: (f) => [
      `Guten Tag ${f.name},`,
      '',
      `ein Dritter hat Missbrauch gemeldet, der von Ihrem Internetanschluss ausging: Adresse ${f.ip}${f.port ? ` Port ${f.port}` : ''}, am ${f.when} (${f.zone}).`,
      '',
      `Gemeldet wurde: ${f.summary}`,
      ...(f.malware.length ? [`In der Meldung genannte Schadsoftware: ${f.malware.join(', ')}`] : []),
      '',
      'Meist bedeutet das, dass ein Computer oder Gerät an Ihrem Anschluss infiziert ist und selbständig E-Mails versendet oder angreift.',
      'Bitte prüfen Sie alle Geräte an Ihrem Anschluss mit aktueller Antivirensoftware.',
      ...(f.headers ? ['', 'Die Kopfzeilen der betroffenen Nachricht liegen bei (ohne Inhalt).'] : []),
      '',
      'Diese Nachricht wurde automatisch von der Abuse-Abteilung Ihres Anbieters versandt. Bei Fragen antworten Sie bitte auf diese Nachricht.',
    ],
  },
  fr: {
    subject: (ip) => `Signalement d'abus concernant votre connexion (${ip})`,
    body: (f) => [
      `Bonjour ${f.name},`,
      '',
      `un tiers a signalé un abus provenant de votre connexion Internet, adresse ${f.ip}${f.port ? ` port ${f.port}` : ''}, le ${f.when} (${f.zone}).`,
      '',
      `Signalement : ${f.summary}`,
      ...(f.malware.length ? [`Logiciel malveillant nommé : ${f.malware.join(', ')}`] : []),
      '',
      'Cela signifie souvent qu\'un ordinateur ou appareil derrière votre connexion est infecté.',
      'Veuillez vérifier tous vos appareils avec un antivirus à jour.',
      ...(f.headers ? ['', 'Les en-têtes du message concerné sont joints (sans contenu).'] : []),
      '',
      'Ce message a été envoyé automatiquement par le service abus de votre fournisseur.',
    ],
  },
};

/** Fields that name the reporter's side of the mail: dropped before the block reaches the customer. */
const REPORTER_FIELDS = /^(to|cc|bcc|delivered-to|x-original-to|x-forwarded-to|x-rcpt-to|envelope-to|x-envelope-to|apparently-to|x-hmxmroriginalrecipient|x-reporter-ip|authentication-results|arc-[a-z-]+|received-spf|x-ms-[a-z-]+|x-originalarrivaltime|x-spam-[a-z-]+|x-virus-[a-z-]+|return-path|x-received|dkim-filter|x-google-[a-z-]+|x-gm-[a-z-]+):/i;

/**
 * The header block as the customer sees it: Received lines from the one
 * whose `from` clause names the customer's address downwards (the ones above
 * are the reporter's own servers), that one's `by` part replaced, and the
 * reporter's recipient and verdict fields dropped.
 */
export function redactForCustomer(headers: string, ip: string): string {
  const fields: string[] = [];
  for (const line of headers.replace(/\r\n/g, '\n').split('\n')) {
    if (line === '') continue;
    if (/^[ \t]/.test(line) && fields.length) fields[fields.length - 1] += `\n${line}`;
    else fields.push(line);
  }
  const names = (f: string) => {
    const from = /^received:\s*from\s+([\s\S]*?)(?:\s+by\s|;|$)/i.exec(f);
    if (!from) return false;
    return [...(from[1] ?? '').matchAll(/[[(]\s*(?:IPv6:)?([0-9A-Fa-f:.]{2,45})\s*[\])]/g)].some((m) => canonicalIp(m[1]) === ip);
  };
  const at = fields.findIndex(names);
  const kept: string[] = [];
  fields.forEach((f, i) => {
    if (REPORTER_FIELDS.test(f)) return;
    if (/^received:/i.test(f)) {
      if (at === -1 || i < at) return;
      if (i === at) f = f.replace(/(\s)by\s[\s\S]*?(;|$)/i, '$1by [the recipient\'s server]$2');
    }
    kept.push(f);
  });
  return kept.length ? `${kept.join('\r\n').replace(/\r?\n/g, '\r\n')}\r\n` : '';
}

export async function composeForward(
  report: { ip: string; port: number | null; observedAt: Date; summary: string; malware: string[]; headers: string | null },
  customer: CustomerContact,
  from: string,
  now = new Date(),
  /** The job's Message-ID (store/jobs jobMessageId), the same on every attempt. */
  messageId?: string,
): Promise<Buffer> {
  const lang = (customer.language ?? '').toLowerCase().slice(0, 2);
  const texts = TEXTS[lang] ?? TEXTS.en!;
  const { when, zone } = timeInZone(report.observedAt, customer.time_zone);
  const headers = report.headers ? redactForCustomer(report.headers, report.ip) : '';
  const text = texts
    .body({ name: oneLine(customer.name, 100), ip: report.ip, port: report.port, when, zone, summary: oneLine(report.summary, 500), malware: report.malware.map((m) => oneLine(m, 80)), headers: headers !== '' })
    .join('\r\n');
  const mail = new MailComposer({
    from,
    to: customer.email,
    subject: texts.subject(report.ip),
    text,
    date: now,
    ...(messageId ? { messageId } : {}),
    headers: { 'Auto-Submitted': 'auto-generated', 'X-Auto-Response-Suppress': 'All', 'Content-Language': TEXTS[lang] ? lang : 'en' },
    attachments: headers ? [{ filename: 'headers.txt', contentType: 'text/rfc822-headers', content: headers, contentDisposition: 'inline' }] : [],
  });
  return mail.compile().build();
}

/** The worker's handler for forward jobs. */
export function forwardHandlers(
  db: Db,
  config: Pick<Config, 'notify'>,
  settings: DeskSettings,
  hostname: string,
  ports: ForwardPorts,
): Record<string, (payload: unknown, job: Job, ctx?: JobContext) => Promise<void>> {
  const mailbox = settings.mailbox ?? `abuse@${settings.abuseDomain}`;
  return {
    [FORWARD_JOB]: async (payload, _job, ctx?: JobContext) => {
      const reportId = (payload as { reportId?: unknown })?.reportId;
      if (typeof reportId !== 'string') throw new Error('forward job without a report id');
      const row = await db.selectFrom('desk_reports').selectAll().where('id', '=', reportId).executeTakeFirst();
      if (!row || row.state !== 'attributed' || !row.customer_id || !row.ip || !row.observed_at) return; // already forwarded, or nothing to send
      if (!config.notify) throw new Error('notify.relay is not configured: forwards wait');
      const customer = await ports.getCustomer(db, row.customer_id);
      if (!customer?.email) throw new Error(`customer ${row.customer_id} has no contact address`);
      const raw = await composeForward(
        { ip: row.ip, port: row.port, observedAt: new Date(row.observed_at), summary: row.summary, malware: row.malware ?? [], headers: row.headers },
        customer,
        `Abuse desk <${mailbox}>`,
        new Date(),
        ctx?.handoff.messageId,
      );
      await sendThroughRelay(config.notify.relay, hostname, customer.email, raw, mailbox, ctx?.handoff);
      await db.updateTable('desk_reports').set({ state: 'forwarded' }).where('id', '=', reportId).where('state', '=', 'attributed').execute();
    },
  };
}

function oneLine(s: string, max: number): string {
  const t = String(s ?? '').replace(/[\0-\x1f\x7f]+/g, ' ').trim();
  return t.length > max ? `${t.slice(0, max)}…` : t;
}
