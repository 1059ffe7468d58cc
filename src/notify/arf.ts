/*
 * notify/arf — the abuse report to the connecting network, in the Abuse
 * Reporting Format (RFC 5965, applied as RFC 6650 describes), as RFC 5322
 * bytes. Pure: no I/O, the clock comes in as an argument.
 *
 *   multipart/report; report-type=feedback-report      (RFC 5965 §2)
 *     1. text/plain          what happened, in words, and how to opt out
 *     2. message/feedback-report   Feedback-Type, User-Agent, Version: 1,
 *                            Source-IP, Arrival-Date, Reporting-MTA,
 *                            Original-Mail-From, Original-Rcpt-To, Incidents
 *     3. text/rfc822-headers the original's entire header block (RFC 5965 §2 (d)
 *                            allows headers only: the body is the worm, R4)
 *
 * Built with nodemailer's MimeNode, which folds and encodes headers and picks
 * transfer encodings. Not MailComposer: its root is always multipart/mixed
 * (or alternative/related), and RFC 5965 §2 needs multipart/report with the
 * report-type parameter at the root.
 *
 * Trusts nothing that came in the message: every such value is cleaned of
 * controls and bidi overrides (obs/clean), bounded, and the fields of the
 * machine-readable part are US-ASCII (RFC 5965 §3.1) — so a hostile
 * "\r\nBcc:" can neither add a header nor a report field. Must never carry
 * the original's body or attachments.
 */
import MimeNode from 'nodemailer/lib/mime-node';
import { cleanText } from '../obs/clean.ts';
import { version } from '../version.ts';
import { headersOnly, noticeSubject, type Detection } from './notice.ts';

export type FeedbackType = 'virus' | 'abuse' | 'fraud' | 'other' | 'not-spam' | 'auth-failure';

export interface ArfReport {
  /** One detection of the window, standing for all of them (its headers ride along). */
  detection: Detection;
  /** Every detection from this source IP in the window (RFC 5965 §3.2 Incidents). */
  incidents: number;
  firstSeen: Date;
  lastSeen: Date;
  /** The aggregation window (abuse.window), stated in the text. */
  windowMs: number;
  feedbackType: FeedbackType;
  /** The abuse contact found for the source IP. */
  to: string;
  /** Our reporting mailbox, which takes replies and opt-outs. */
  from: string;
  /** Our host name, for Reporting-MTA and the Message-ID. */
  hostname: string;
  /** Stable per report (the job id): one Message-ID across retries. */
  reportId: string;
  /** How the contact was found, in words ("RDAP: https://…", "local override 192.0.2.0/24"). */
  contactSource: string;
  now: Date;
}

/** RFC 5322 §3.3 date-time in UTC, numeric zone (not the obsolete "GMT"). */
export function rfc5322Date(d: Date): string {
  const day = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'][d.getUTCDay()];
  const month = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'][d.getUTCMonth()];
  const p = (n: number) => String(n).padStart(2, '0');
  return `${day}, ${p(d.getUTCDate())} ${month} ${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
}

/** A report field value: cleaned, US-ASCII only (RFC 5965 §3.1), bounded. */
function field(value: string, max = 320): string {
  return cleanText(value, max).replace(/[^\x20-\x7e]/g, '?');
}

/** An addr-spec for Original-Mail-From / Original-Rcpt-To, in angle brackets (RFC 5965 §3.2). */
function angle(address: string): string {
  return `<${field(address.replace(/[<>\s]/g, ''), 320)}>`;
}

/**
 * True for a message that is itself a feedback report: Backstop never
 * reports one (a report about a report is a loop between two desks).
 * RFC 5965 §2: the top-level Content-Type is multipart/report with
 * report-type=feedback-report; header folding and case do not matter.
 */
export function isFeedbackReport(rawHeaders: string): boolean {
  const block = headersOnly(rawHeaders).replace(/\r?\n[ \t]+/g, ' ');
  const ct = /^content-type:(.*)$/im.exec(block)?.[1] ?? '';
  return /^\s*multipart\/report\b/i.test(ct) && /;\s*report-type\s*=\s*"?feedback-report"?/i.test(ct);
}

/** The machine-readable part, field per line (RFC 5965 §3.1–3.2). */
export function feedbackFields(r: ArfReport): string {
  const d = r.detection;
  const lines = [
    `Feedback-Type: ${r.feedbackType}`,
    `User-Agent: Backstop/${version}`,
    'Version: 1',
    `Original-Mail-From: ${angle(d.mailFrom)}`,
    ...d.rcptTo.slice(0, 50).map((rcpt) => `Original-Rcpt-To: ${angle(rcpt)}`),
    `Arrival-Date: ${rfc5322Date(new Date(d.receivedAt))}`,
    `Reporting-MTA: dns; ${field(r.hostname, 255)}`,
    `Source-IP: ${field(d.clientIp, 45)}`,
    // RFC 6692: behind carrier-grade NAT the address alone names thousands of customers.
    ...(Number.isInteger(d.clientPort) && d.clientPort > 0 && d.clientPort < 65536 ? [`Source-Port: ${d.clientPort}`] : []),
    `Incidents: ${Math.max(1, Math.floor(r.incidents))}`,
  ];
  return `${lines.join('\r\n')}\r\n`;
}

function windowWords(ms: number): string {
  const hours = ms / 3_600_000;
  return hours === 24 ? 'a day' : hours >= 1 && Number.isInteger(hours) ? `${hours} hour(s)` : `${Math.round(ms / 60_000)} minute(s)`;
}

function humanText(r: ArfReport): string {
  const d = r.detection;
  const c = (v: string, max = 300) => cleanText(v, max);
  const what = d.verdict === 'infected' ? `the virus ${c(d.detail)} (found by ${c(d.engine, 20)})` : `forbidden content: ${c(d.detail)}`;
  return [
    `This is an abuse report about the host at ${c(d.clientIp, 45)}.`,
    '',
    `Our mail gateway ${c(r.hostname, 255)} received mail from ${c(d.clientIp, 45)} that carried ${what}.`,
    `It did so ${r.incidents} time(s) between ${r.firstSeen.toISOString()} and ${r.lastSeen.toISOString()} (UTC);`,
    `the first connection came from port ${d.clientPort}, HELO "${c(d.helo, 255)}".`,
    'The machine at that address (at that time) is probably infected and sending the worm by itself.',
    '',
    `We report it to you because ${c(r.contactSource, 300)} names you as the abuse contact for ${c(d.clientIp, 45)}.`,
    'We did not deliver the message, and we did not tell its sender: worms forge sender addresses.',
    'The message itself is not attached (it carries the worm); its header block is, as text/rfc822-headers.',
    `At most one report per address is sent in ${windowWords(r.windowMs)}, however many messages arrive.`,
    '',
    `To stop these reports, reply to ${c(r.from, 320)} and say so: we will not send reports to ${c(r.to, 320)} again.`,
  ].join('\r\n');
}

export async function composeArf(r: ArfReport): Promise<Buffer> {
  const root = new MimeNode('multipart/report; report-type=feedback-report');
  root.setHeader({
    From: r.from,
    To: r.to,
    Subject: noticeSubject(`${r.detection.detail} (abuse report for ${cleanText(r.detection.clientIp, 45)})`),
    Date: rfc5322Date(r.now),
    'Message-ID': `<arf-${field(r.reportId, 64)}@${field(r.hostname, 255)}>`,
    // RFC 3834 §5: machine-generated, so responders do not answer it.
    'Auto-Submitted': 'auto-generated',
    'X-Auto-Response-Suppress': 'All',
  });
  root.createChild('text/plain; charset=utf-8').setContent(humanText(r));
  // MimeNode never transfer-encodes message/* parts; the fields are plain US-ASCII lines (RFC 5965 §3.1).
  root.createChild('message/feedback-report').setContent(feedbackFields(r));
  const block = headersOnly(r.detection.headers).replace(/\r?\n/g, '\r\n');
  root.createChild('text/rfc822-headers; charset=utf-8').setContent(`${block}\r\n`);
  return root.build();
}
