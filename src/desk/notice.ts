/*
 * desk/notice — the customer notice about an incident (RFC 6561 §5): our
 * words in the customer's language, times in their zone, the portal link,
 * the malware names and times of the evidence. Never the worm, never a body,
 * never who reported it. Texts are configurable (config.desk.notice.texts);
 * placeholders {name} {ip} {portal} {graceUntil} {evidence} {state}.
 */
import MailComposer from 'nodemailer/lib/mail-composer';
import { timeInZone } from './zones.ts';

export type NoticeReason = 'opened' | 'restricted' | 'recurrence';

export interface NoticeText {
  subject: string;
  body: string;
}

export const NOTICE_TEXTS: Record<string, Record<NoticeReason, NoticeText>> = {
  en: {
    opened: {
      subject: 'Security notice about your Internet connection',
      body: [
        'Dear {name},',
        '',
        'a computer or device behind your Internet connection appears to be infected: it has been seen sending malicious mail.',
        '',
        '{evidence}',
        '',
        'Please check all devices on your connection with up-to-date antivirus software.',
        'If the problem is not solved by {graceUntil}, outgoing mail from your connection will be restricted until you confirm that it is clean.',
        '',
        'Details and cleanup guidance: {portal}',
        '',
        'This message was sent automatically by your provider\'s abuse desk.',
      ].join('\n'),
    },
    restricted: {
      subject: 'Your Internet connection has been restricted',
      body: [
        'Dear {name},',
        '',
        'because the infection reported earlier has not been resolved, your connection has been restricted.',
        '',
        '{evidence}',
        '',
        'When all devices behind your connection have been cleaned, confirm it on this page and the restriction is lifted:',
        '{portal}',
        '',
        'This message was sent automatically by your provider\'s abuse desk.',
      ].join('\n'),
    },
    recurrence: {
      subject: 'Your Internet connection has been restricted again',
      body: [
        'Dear {name},',
        '',
        'an infected device behind your connection has been seen again after the last cleanup, so the connection has been restricted again.',
        '',
        '{evidence}',
        '',
        'Details, cleanup guidance and the confirmation: {portal}',
        '',
        'This message was sent automatically by your provider\'s abuse desk.',
      ].join('\n'),
    },
  },
  de: {
    opened: {
      subject: 'Sicherheitshinweis zu Ihrem Internetanschluss',
      body: [
        'Guten Tag {name},',
        '',
        'ein Computer oder Gerät an Ihrem Internetanschluss ist offenbar infiziert: Von ihm wurden schädliche E-Mails versandt.',
        '',
        '{evidence}',
        '',
        'Bitte prüfen Sie alle Geräte an Ihrem Anschluss mit aktueller Antivirensoftware.',
        'Ist das Problem bis {graceUntil} nicht behoben, wird der ausgehende Mailverkehr Ihres Anschlusses eingeschränkt, bis Sie bestätigen, dass er sauber ist.',
        '',
        'Einzelheiten und Anleitung zur Bereinigung: {portal}',
        '',
        'Diese Nachricht wurde automatisch von der Abuse-Abteilung Ihres Anbieters versandt.',
      ].join('\n'),
    },
    restricted: {
      subject: 'Ihr Internetanschluss wurde eingeschränkt',
      body: [
        'Guten Tag {name},',
        '',
        'da die gemeldete Infektion nicht behoben wurde, ist Ihr Anschluss jetzt eingeschränkt.',
        '',
        '{evidence}',
        '',
        'Wenn alle Geräte an Ihrem Anschluss bereinigt sind, bestätigen Sie es auf dieser Seite, und die Einschränkung wird aufgehoben:',
        '{portal}',
        '',
        'Diese Nachricht wurde automatisch von der Abuse-Abteilung Ihres Anbieters versandt.',
      ].join('\n'),
    },
    recurrence: {
      subject: 'Ihr Internetanschluss wurde erneut eingeschränkt',
      body: [
        'Guten Tag {name},',
        '',
        'nach der letzten Bereinigung wurde erneut ein infiziertes Gerät an Ihrem Anschluss festgestellt; der Anschluss ist wieder eingeschränkt.',
        '',
        '{evidence}',
        '',
        'Einzelheiten, Anleitung und Bestätigung: {portal}',
        '',
        'Diese Nachricht wurde automatisch von der Abuse-Abteilung Ihres Anbieters versandt.',
      ].join('\n'),
    },
  },
};

export interface NoticeContact {
  name: string;
  email: string;
  language: string;
  time_zone: string;
}

export interface NoticeEvidence {
  observedAt: Date;
  ip: string;
  malware: string[];
  summary: string;
}

const EVIDENCE_LINE: Record<string, (when: string, ip: string, what: string) => string> = {
  en: (when, ip, what) => `- ${when}, address ${ip}: ${what}`,
  de: (when, ip, what) => `- ${when}, Adresse ${ip}: ${what}`,
};

function oneLine(s: string, max: number): string {
  const t = String(s ?? '').replace(/[\0-\x1f\x7f]+/g, ' ').trim();
  return t.length > max ? `${t.slice(0, max)}…` : t;
}

/** Picks the language: the customer's if we have texts for it, else the configured default, else en. */
export function noticeLanguage(language: string, texts: Record<string, Partial<Record<NoticeReason, NoticeText>>>, fallback = 'en'): string {
  const lang = String(language ?? '').toLowerCase().slice(0, 2);
  if (texts[lang] || NOTICE_TEXTS[lang]) return lang;
  return texts[fallback] || NOTICE_TEXTS[fallback] ? fallback : 'en';
}

export function composeCustomerNotice(opts: {
  reason: NoticeReason;
  contact: NoticeContact;
  evidence: NoticeEvidence[];
  portalUrl: string;
  graceUntil: Date | null;
  from: string;
  messageId: string;
  now: Date;
  /** Configured texts per language and reason ({subject, body}) override the built-in ones. */
  texts?: Record<string, Partial<Record<NoticeReason, NoticeText>> | NoticeText>;
  defaultLanguage?: string;
}): Promise<Buffer> {
  const configured = (opts.texts ?? {}) as Record<string, Partial<Record<NoticeReason, NoticeText>>>;
  const lang = noticeLanguage(opts.contact.language, configured, opts.defaultLanguage);
  const text = configured[lang]?.[opts.reason] ?? NOTICE_TEXTS[lang]?.[opts.reason] ?? NOTICE_TEXTS.en![opts.reason];
  const zone = opts.contact.time_zone;
  const line = EVIDENCE_LINE[lang] ?? EVIDENCE_LINE.en!;
  const evidence = opts.evidence
    .slice(-10)
    .map((e) => line(timeInZone(e.observedAt, zone).when, e.ip, oneLine(e.malware.length ? e.malware.join(', ') : e.summary, 200)))
    .join('\n');
  const fill = (s: string) =>
    s.replace(/\{(name|ip|portal|graceUntil|evidence)\}/g, (_m, k: string) => {
      switch (k) {
        case 'name':
          return oneLine(opts.contact.name, 100);
        case 'ip':
          return opts.evidence[opts.evidence.length - 1]?.ip ?? '';
        case 'portal':
          return opts.portalUrl;
        case 'graceUntil':
          return opts.graceUntil ? timeInZone(opts.graceUntil, zone).when : '-';
        default:
          return evidence;
      }
    });
  const mail = new MailComposer({
    from: opts.from,
    to: opts.contact.email,
    subject: fill(text.subject),
    text: fill(text.body).replace(/\r?\n/g, '\r\n'),
    date: opts.now,
    messageId: opts.messageId,
    headers: { 'Auto-Submitted': 'auto-generated', 'X-Auto-Response-Suppress': 'All', 'Content-Language': lang },
  });
  return mail.compile().build();
}
