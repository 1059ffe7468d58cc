/*
 * notify/notice — the postmaster notice and its digest, as RFC 5322 bytes.
 * Pure apart from the MIME encoding, which nodemailer's MailComposer does.
 *
 * What the seeds asked for (R3, R4): the Subject always says
 * "possible virus found: NAME" (or the test that failed); the body names it;
 * the original message never rides along — at most its header block, as
 * text/rfc822-headers. Every value that came in the message is hostile:
 * cleaned of controls and bidirectional overrides, and only ever placed in
 * a text body or an encoded header, never raw.
 */
import MailComposer from 'nodemailer/lib/mail-composer';
import { cleanText } from '../obs/clean.ts';

export interface Detection {
  /** The message log id: stable, so the notice for one detection has one Message-ID across retries. */
  id: string;
  receivedAt: string;
  verdict: 'infected' | 'banned';
  /** Malware name or the failed test. */
  detail: string;
  engine: string;
  clientIp: string;
  clientPort: number;
  helo: string;
  mailFrom: string;
  rcptTo: string[];
  messageId: string | null;
  action: string;
  quarantineId: string | null;
  /** The original's header block only (never its body). */
  headers: string;
}

export interface NoticeSettings {
  from: string;
  postmaster: string;
  hostname: string;
}

/**
 * What "the same thing again" means for outbreak-proofing: a malware name as
 * it is; a failed test without its specifics (the file name), so a worm that
 * varies its attachment names still makes one notice, not one per name.
 */
export function noticeKey(verdict: 'infected' | 'banned', detail: string): string {
  return verdict === 'infected' ? detail : detail.replace(/\s*\(.*$/s, '').trim() || detail;
}

/** `possible virus found: NAME` — the one subject format the field can filter on (R3). */
export function noticeSubject(detail: string): string {
  return `possible virus found: ${cleanText(detail, 150)}`;
}

function describe(d: Detection, reverseName: string | null, senderLine = `<${cleanText(d.mailFrom, 320)}> (unverified: worms forge it; no notice was sent to it)`): string {
  const c = (v: string, max = 300) => cleanText(v, max);
  return [
    `What:        ${d.verdict === 'infected' ? `virus ${c(d.detail)} (found by ${c(d.engine, 20)})` : `forbidden content: ${c(d.detail)}`}`,
    `When:        ${d.receivedAt} (UTC)`,
    `From host:   ${d.clientIp} port ${d.clientPort}, reverse name ${reverseName ? c(reverseName, 255) : 'not verified'}, HELO "${c(d.helo, 255)}"`,
    `Sender:      ${senderLine}`,
    `Recipients:  ${d.rcptTo.map((r) => `<${c(r, 320)}>`).join(', ')}`,
    `Message-ID:  ${d.messageId ? c(d.messageId, 300) : '(none)'}`,
    `Action:      ${c(d.action, 40)}${d.quarantineId ? ` (quarantine id ${c(d.quarantineId, 40)})` : ''}`,
  ].join('\n');
}

async function compose(settings: NoticeSettings, subject: string, text: string, messageId: string, headers: string | null, to = settings.postmaster): Promise<Buffer> {
  const mail = new MailComposer({
    from: settings.from,
    to,
    subject,
    text,
    messageId,
    date: new Date(),
    headers: { 'Auto-Submitted': 'auto-generated', 'X-Auto-Response-Suppress': 'All' },
    attachments: headers
      ? [{ filename: 'original-headers.txt', contentType: 'text/rfc822-headers', content: headers.replace(/\r?\n/g, '\r\n'), contentDisposition: 'inline' }]
      : [],
  });
  return mail.compile().build();
}

/** Only the header block: everything up to the first empty line, bounded. */
export function headersOnly(rawHeaderBlock: string): string {
  const end = rawHeaderBlock.search(/\r?\n\r?\n/);
  const block = end === -1 ? rawHeaderBlock : rawHeaderBlock.slice(0, end);
  return block.slice(0, 64 * 1024);
}

/** `messageId`: the job's (store/jobs jobMessageId), the same on every attempt; by default one from the detection id. */
export async function composeNotice(d: Detection, settings: NoticeSettings, reverseName: string | null, messageId?: string): Promise<Buffer> {
  const text = [
    `Backstop at ${settings.hostname} found ${d.verdict === 'infected' ? 'a virus' : 'forbidden content'} in a message and ${d.action === 'reject' ? 'refused it during the SMTP session' : d.action === 'quarantine' ? 'kept the whole message in quarantine' : d.action === 'discard' ? 'discarded it' : 'did not accept it'}.`,
    'This is the first detection of this name; further ones are gathered into a digest.',
    '',
    describe(d, reverseName),
    '',
    'The original message is not attached (it carries the payload); its header block is, as text/rfc822-headers.',
  ].join('\n');
  return compose(settings, noticeSubject(d.detail), text, messageId ?? `<notice-${d.id}@${settings.hostname}>`, headersOnly(d.headers));
}

/**
 * The same notice for an authenticated sender (R2; notify/sender decides who
 * qualifies): same subject and facts, addressed to the sender, saying how it
 * was authenticated, and still without the message's body.
 */
export async function composeSenderNotice(d: Detection, settings: NoticeSettings, authenticatedVia: string, messageId?: string): Promise<Buffer> {
  const text = [
    `Backstop at ${settings.hostname} did not deliver a message sent from your address, because it ${d.verdict === 'infected' ? 'contains a virus' : 'contains a file type that is not accepted'}.`,
    'You are told because your address was authenticated for this message; check the computer it was sent from.',
    '',
    describe(d, null, `<${cleanText(d.mailFrom, 320)}> (${cleanText(authenticatedVia, 200)})`),
    '',
    `Nothing was delivered. Questions: ${settings.postmaster}. The message is not attached; its header block is, as text/rfc822-headers.`,
  ].join('\n');
  return compose(settings, noticeSubject(d.detail), text, messageId ?? `<sender-notice-${d.id}@${settings.hostname}>`, headersOnly(d.headers), d.mailFrom);
}

export interface DigestEntry {
  detail: string;
  count: number;
  sources: string[];
}

export async function composeDigest(windowEnd: string, entries: DigestEntry[], settings: NoticeSettings, digestId: string): Promise<Buffer> {
  const total = entries.reduce((n, e) => n + e.count, 0);
  const names = entries.map((e) => cleanText(e.detail, 80));
  const subject = noticeSubject(names.length === 1 ? `${names[0]} (${total} more)` : `${total} detections of ${names.length} names`);
  const text = [
    `Backstop at ${settings.hostname}: detections since the last notice, up to ${windowEnd} (UTC).`,
    '',
    ...entries.map((e) => `${String(e.count).padStart(7)}  ${cleanText(e.detail, 150)}  from ${e.sources.slice(0, 10).map((s) => cleanText(s, 45)).join(', ')}${e.sources.length > 10 ? ` and ${e.sources.length - 10} more` : ''}`),
    '',
    `${total} message(s) in all. Senders are not listed: worms forge them.`,
  ].join('\n');
  return compose(settings, subject, text, `<digest-${digestId}@${settings.hostname}>`, null);
}
