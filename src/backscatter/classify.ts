/*
 * backscatter/classify — what kind of automatic mail a message is, and what
 * it says about the message it answers. One classifier for `backstop
 * classify` and for the gateway at end of DATA.
 *
 * Classes:
 *   dsn          a delivery failure: RFC 3464 multipart/report with
 *                report-type=delivery-status, or an MTA family's own format
 *                (FAMILY_SIGNS: qmail, Exim, Postfix, Sendmail, Exchange and
 *                Exchange 2003, Lotus, Amazon SES, Apache James, Verizon, fml,
 *                KDDI, …), or generic bounce phrases with a second sign (a
 *                mail-system sender, a null Return-Path, a bounce subject)
 *   delay        a delivery *warning* (RFC 3464 2.3.3 Action: delayed, or
 *                the MTAs' "still being retried" texts): not a failure
 *   av-notice    an antivirus product telling the (forged) sender that "his"
 *                mail carried a virus (Norton/Symantec, McAfee, Trend Micro,
 *                MailScanner, MessageLabs, Antigen, MAILsweeper, Sophos, …)
 *   challenge    a challenge/response system asking the sender to confirm
 *   auto-reply   RFC 3834 automatic response (vacation, out of office):
 *                Auto-Submitted: auto-replied or a vacation program's own
 *                header alone; an out-of-office program's fixed words
 *                (Exchange's "Automatic reply:", Lotus Notes' agent); or a
 *                weaker header sign (auto-generated, Precedence, X-Loop) and
 *                a phrase
 *   read-receipt RFC 8098 message disposition notification
 *   normal       anything else, RFC 5965 feedback reports and a person's
 *                forward of a bounce included
 * and it extracts: the quoted original's Message-ID, envelope (Return-Path)
 * and header sender, Subject and Received chain; the DSN's Reporting-MTA and,
 * per recipient, Final-Recipient, Action, Status and Diagnostic-Code.
 *
 * Trusts nothing: a bounce is mail like any other, written by whoever sent
 * it — often a worm. The work is bounded (bytes looked at, MIME parts and
 * depth checked by a structural pre-pass before postal-mime builds anything,
 * text scanned, fields and Received lines kept) and every extracted string
 * is cleaned (obs/clean). Must never: throw on a message, keep state, or let
 * a field a peer wrote decide that a message is ours — that is verdict.ts's
 * job, which only believes cryptographic marks and our own host names in the
 * quoted original.
 */
import PostalMime from 'postal-mime';
import { cleanText } from '../obs/clean.ts';
import { measureMime } from '../scan/mime.ts';

export type MessageClass = 'dsn' | 'delay' | 'av-notice' | 'challenge' | 'auto-reply' | 'read-receipt' | 'normal';
export const MESSAGE_CLASSES: readonly MessageClass[] = ['dsn', 'delay', 'av-notice', 'challenge', 'auto-reply', 'read-receipt', 'normal'];

export interface ClassifyLimits {
  /** Bytes of the message looked at; the rest is ignored (a DSN is small; a quoted original need not be whole). */
  maxBytes: number;
  /** MIME entities allowed before the message is classified from its top header and first text only. */
  maxParts: number;
  /** MIME nesting allowed (same fallback). */
  maxDepth: number;
  /** Characters of decoded text searched for phrases and a quoted header block. */
  maxTextChars: number;
  /** Per-recipient groups kept from a delivery-status part. */
  maxRecipients: number;
  /** Received lines kept from the quoted original. */
  maxReceived: number;
}

export const DEFAULT_CLASSIFY_LIMITS: ClassifyLimits = {
  maxBytes: 1024 * 1024,
  maxParts: 64,
  maxDepth: 8,
  maxTextChars: 64 * 1024,
  maxRecipients: 20,
  maxReceived: 30,
};

export interface DsnRecipient {
  finalRecipient: string | null;
  originalRecipient: string | null;
  action: string | null;
  status: string | null;
  remoteMta: string | null;
  diagnostic: string | null;
}

export interface QuotedOriginal {
  /** Where it was found: a message/rfc822 part, a text/rfc822-headers part, or headers quoted in the text. */
  source: 'message/rfc822' | 'text/rfc822-headers' | 'inline-text';
  messageId: string | null;
  /** Return-Path of the quoted message: its envelope sender as delivered. */
  envelopeSender: string | null;
  headerFrom: string | null;
  subject: string | null;
  /** Received lines of the quoted message, topmost first. */
  received: string[];
  /** Every header field the quoted block had, lower-cased names (first occurrence), for the verdict's stamp check. */
  fields: Record<string, string>;
}

export interface Classification {
  class: MessageClass;
  /** The format or product recognised: rfc3464, qmail, exim, postfix, sendmail, exchange, lotus, mailscanner, … */
  format: string | null;
  /** Why, in short fixed phrases (no peer text). */
  reasons: string[];
  /** The bounce or notice says the original carried a virus (for complaints, R7). */
  mentionsVirus: boolean;
  /** The malware name, when a notice names one (cleaned). */
  virusName: string | null;
  /** Top-level fields of the notice itself (cleaned). */
  subject: string | null;
  from: string | null;
  returnPath: string | null;
  reportingMta: string | null;
  recipients: DsnRecipient[];
  original: QuotedOriginal | null;
  /** A limit cut the work short; the class then rests on what was looked at. */
  truncated: string | null;
}

// ---------------------------------------------------------------------------
// Header helpers (bounded, no recursion).

/** Unfolded header fields of one header block: [lower-case name, value], at most `max`. */
export function headerFields(block: string, max = 200): [string, string][] {
  const out: [string, string][] = [];
  for (const line of block.split(/\r?\n/)) {
    if (/^[ \t]/.test(line)) {
      const last = out[out.length - 1];
      if (last && last[1].length < 4096) last[1] += ` ${line.trim()}`;
      continue;
    }
    const m = /^([!-9;-~]{1,76}):[ \t]?(.*)$/.exec(line);
    if (!m) continue;
    if (out.length >= max) break;
    out.push([m[1]!.toLowerCase(), m[2]!.trim()]);
  }
  return out;
}

function first(fields: [string, string][], name: string): string | null {
  return fields.find(([k]) => k === name)?.[1] ?? null;
}

function angle(value: string | null): string | null {
  if (value === null) return null;
  const m = /<([^<>]*)>/.exec(value);
  return (m ? m[1]! : value).trim();
}

/** RFC 3464 address fields are "type; address" (2.3.2 Final-Recipient). */
function typedAddress(value: string | null): string | null {
  if (value === null) return null;
  const i = value.indexOf(';');
  return angle(i >= 0 ? value.slice(i + 1) : value);
}

// Tabs inside unfolded fields become spaces, not cleanText's "?".
const c = (v: string | null, max = 200) => (v === null ? null : cleanText(v.replace(/\t/g, ' '), max));

function quoted(block: string, source: QuotedOriginal['source'], maxReceived: number): QuotedOriginal {
  const fields = headerFields(block);
  const map: Record<string, string> = {};
  for (const [k, v] of fields) if (!(k in map) && Object.keys(map).length < 60) map[k] = c(v, 300)!;
  const mid = first(fields, 'message-id');
  return {
    source,
    messageId: c(mid === null ? null : mid.trim(), 250),
    envelopeSender: c(angle(first(fields, 'return-path')), 256),
    headerFrom: c(first(fields, 'from'), 256),
    subject: c(first(fields, 'subject'), 200),
    received: fields.filter(([k]) => k === 'received').slice(0, maxReceived).map(([, v]) => c(v, 300)!),
    fields: map,
  };
}

// A line that starts a quoted header block in a bounce's text. Lines may be
// indented or "> "-quoted by the bouncing MTA (qmail and Exim do not, Lotus
// and some Exchange versions do).
const QUOTED_START = /^[ \t>]*(Return-Path|Received|Message-ID|From|Date|Subject|To|X-[A-Za-z-]+|MIME-Version|Content-Type|Delivered-To):[ \t]/i;

/** The first run of ≥3 header-like lines in the text that includes Received, Message-ID or Return-Path. */
function inlineHeaders(text: string): string | null {
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    if (!QUOTED_START.test(lines[i]!)) continue;
    const prefix = /^[ \t>]*/.exec(lines[i]!)![0];
    const block: string[] = [];
    let j = i;
    for (; j < lines.length && block.length < 400; j++) {
      const l = lines[j]!.startsWith(prefix) ? lines[j]!.slice(prefix.length) : lines[j]!;
      if (/^[!-9;-~]{1,76}:/.test(l) || (/^[ \t]+\S/.test(l) && block.length > 0)) block.push(l);
      else break;
    }
    const joined = block.join('\n');
    if (block.length >= 3 && /^(received|message-id|return-path):/im.test(joined)) return joined;
    i = j;
  }
  return null;
}

// ---------------------------------------------------------------------------
// Phrase tables. Each entry names the format it identifies, for `format`.

type Marker = [RegExp, string];

// Sender local parts of mail systems (RFC 5321 4.5.1 postmaster; the
// conventional MAILER-DAEMON) and the display names MTAs use.
const DAEMON_FROM = /(^|[<\s"])(mailer-daemon|postmaster|mail-daemon|mailerdaemon|mmdf|mail delivery (system|subsystem)|mail administrator|internet mail delivery|mail ?delivery ?service|nobody|mdaemon|system administrator)[@\s">]|^(mailer-daemon|postmaster)$|mail delivery (system|subsystem)|<\s*>\s*$/i;

const DSN_SUBJECT: Marker[] = [
  [/undelivered mail returned to sender|^postmaster copy: undelivered mail/i, 'postfix'],
  [/^mail delivery failed/i, 'exim'],
  [/^failure notice/i, 'qmail'],
  [/^returned mail:/i, 'sendmail'],
  [/delivery status notification \((failure|failed)\)/i, 'exchange'],
  [/^undeliverable( mail)?:/i, 'exchange'],
  [/^delivery failure:/i, 'lotus'],
  [/^(delivery notification: )?delivery has failed/i, 'lotus'],
  [/^(undeliverable|undelivered|non-?deliverable|returned|failed|bounced?) (mail|message|e-?mail)/i, 'generic'],
  [/^(mail|message|e-?mail) (delivery )?(failed|failure|could not be delivered|undeliverable|returned|not delivered|status - undeliverable)/i, 'generic'],
  [/^(delivery|email delivery) (failure|failed|problem|status notification)/i, 'generic'],
  [/^(failure|failed) (delivery|notice)/i, 'generic'],
  [/^non[- ]?delivery\b/i, 'exchange'],
  // Exchange's "Undeliverable:" in other languages (French, German, Dutch, Spanish, Italian).
  [/^non remis|: non remis$|^unzustellbar|^nicht zustellbar|^onbestelbaar|^no se puede entregar|^imposible entregar|^non recapitabile|^impossible de remettre/i, 'exchange'],
  [/^(permanent |temporary )?(mail )?delivery (failure|failed|problem|error)/i, 'generic'],
  [/^warning: .{0,200} user unknown/i, 'generic'],
  [/could not be delivered/i, 'generic'],
  [/^(returned|rejected) (mail|message)/i, 'generic'],
  [/^mail system error/i, 'generic'],
  [/\b(e-?mail |mail )?bounce (notification|notice|message)\b/i, 'generic'],
  [/^message you sent blocked/i, 'generic'],
  [/^(automatically )?rejected (mail|message)|^automatically rejected/i, 'generic'],
  // Anywhere in the subject, still needing a second sign (see classify()).
  [/\b(delivery|message|mail) (has )?failed\b|\bnon remis\b|\bundeliverable\b|\bundelivered\b/i, 'generic'],
];

// The MTA families: each family's own fixed words, as its source or its
// bounces show them. Any one row is enough to call a message a bounce of
// that family: these are sentences (or a header and a sentence together)
// that only the mail system writes, never a person. A row's regexes are all
// tried on the notice's text (whitespace collapsed, first 16 KiB) and, when
// `header` is set, on the notice's top header block too.
// Every pattern is linear: literals, bounded classes and runs ("-{1,8}", not
// "-+" before a literal, which a line of dashes makes quadratic), no nested
// quantifiers.
export interface FamilySign {
  family: string;
  /** Every one must match the notice's text. */
  text: RegExp[];
  /** When set, must match the top header block ("name: value" lines, lower-case names). */
  header?: RegExp;
}

export const FAMILY_SIGNS: readonly FamilySign[] = [
  // qmail-send's bounce (qmail-send.c: "Hi. This is the qmail-send program at …").
  { family: 'qmail', text: [/this is the qmail-send program at/i] },
  { family: 'qmail', text: [/i'm afraid i wasn't able to deliver|this is a permanent error; i've given up/i] },
  // qmail stamps the bounces it writes "Received: (qmail N invoked for bounce)", whatever text a site gave them.
  { family: 'qmail', text: [], header: /^received: \(qmail \d{1,12} invoked for bounce\)/im },
  // Exim's deliver.c bounce text.
  { family: 'exim', text: [/this message was created automatically by mail delivery software/i] },
  { family: 'exim', text: [/a message that you sent could not be delivered to (one or more of its|all of its) recipients/i] },
  // Postfix bounce_template: failure_template and the older wording.
  { family: 'postfix', text: [/this is the mail system at host/i] },
  { family: 'postfix', text: [/i'm sorry to have to inform you that (your|the) message (returned below )?could not/i] },
  // Postfix before 2.3 signed as the program, not the system.
  { family: 'postfix', text: [/this is the postfix program at host/i] },
  // Postfix's bounce when the template is cut: the ": host … said:" transcript and the daemon.
  { family: 'postfix', text: [/\(in reply to (rcpt to|end of data|mail from|data) command\)/i], header: /^(from: .{0,200}(mail(er)?[- ]?daemon|mail delivery system|postmaster)|return-path: <>)/im },
  // The default failure template's closing advice, which sites keep when they rewrite the headline.
  { family: 'postfix', text: [/you can delete your own text from the attached returned message/i] },
  // Sendmail's returned-mail text (and V5/V8 "Transcript of session").
  { family: 'sendmail', text: [/the original message was received at/i] },
  { family: 'sendmail', text: [/-{1,8} ?transcript of session follows ?-/i] },
  { family: 'sendmail', text: [/-{1,8} the following addresses had permanent fatal errors -/i] },
  // Exchange 2007 and later, Office 365, Outlook.com.
  { family: 'exchange', text: [/your message did not reach some or all of the intended recipients/i] },
  { family: 'exchange', text: [/delivery has failed to these recipients or (groups|distribution lists)/i] },
  { family: 'exchange', text: [/the following recipient\(s\) could not be reached/i] },
  // Exchange 2000/2003: "Your message … did not reach the following recipient(s):" and its MSEXCH diagnostic.
  { family: 'exchange2003', text: [/did not reach the following recipient\(s\)/i] },
  { family: 'exchange2003', text: [/\bMSEXCH:[A-Z]{2,12}:/] },
  // Lotus Notes / Domino.
  { family: 'lotus', text: [/(was|were) not delivered to:/i] },
  // Amazon SES: the SMTP bounce text, and the SNS bounce notification (JSON).
  { family: 'amazonses', text: [/an error occurred while trying to deliver the mail to the following recipients/i] },
  { family: 'amazonses', text: [/the following message to <[^<>\s]{1,256}> was undeliverable/i] },
  // (SNS wraps SES's JSON as a string inside its own, so the quotes may come escaped.)
  { family: 'amazonses', text: [/\\?"notificationType\\?" ?: ?\\?"Bounce\\?"/, /\\?"bounceType\\?" ?: ?\\?"(Permanent|Transient|Undetermined)\\?"/] },
  // Apache James AbstractNotify/DSNBounce (also Verizon's vtext.com gateways): "Error message below:" … "Message details:".
  { family: 'apachejames', text: [/error message below:/i, /message details:/i] },
  // Verizon's mobile gateways.
  { family: 'verizon', text: [/message could not be delivered to mobile/i] },
  // fml mailing-list manager's error mail: its X-MLServer header and "Original mail as follows:".
  { family: 'fml', text: [/original mail as follows:/i], header: /^x-mlserver: *fml\b/im },
  // … and fml's error titles (not a member, rejected, loop, security), with its header.
  { family: 'fml', text: [/not member article from|you are not a member of this mailing list|fml system error message|loop alert:|loop back warning:|duplicated message-id|has detected a loop condition|security alert|reject mail from|spam mail from a spammer is rejected/i], header: /^x-mlserver: *fml\b/im },
  // KDDI / au one net (dion.ne.jp, ezweb.ne.jp): "Your mail sent on: … Could not be delivered to:".
  { family: 'kddi', text: [/your mail (sent on|attempted to be delivered on):? [a-z]{3},/i, /could not be delivered to:/i] },
];

// Generic bounce phrases: not one MTA's words; a bounce only with a second sign.
const DSN_BODY: Marker[] = [
  [/could not be delivered to the following recipients/i, 'generic'],
  [/your message (was not|could not be|cannot be|has not been) delivered/i, 'generic'],
  [/delivery to the following recipients? (failed|has failed|was unsuccessful)/i, 'generic'],
  [/(could not|cannot|can not|couldn't|can't) be delivered|(could not|cannot|couldn't|unable to) deliver (the )?(message|mail)? ?to/i, 'generic'],
  [/(mail|message) (has been|was|is being) returned|returned mail follows|delivery failure notification/i, 'generic'],
  [/fatal delivery errors?|permanent(ly)? (fatal )?(delivery )?(error|failure)/i, 'generic'],
  [/n'a pas pu [eê]tre (d[eé]livr|remis|transmis)|konnte nicht zugestellt werden|no (ha )?pudo ser entregado|non (è stato|e' stato) (possibile )?recapitat/i, 'generic'],
  // Chinese ("the mail could not be sent/delivered") and Japanese ("could not be sent/delivered").
  [/(邮件|郵件|信件)无法(发送|送达|投递)|无法(送达|投递)|(送信|配信|配送)(でき|出来)ませんでした/, 'generic'],
  [/unable to deliver (your )?(the )?(message|mail)/i, 'generic'],
  [/undeliverable (to|message|mail)|is undeliverable/i, 'generic'],
  [/(permanent|fatal) (error|failure)s?\b.{0,200}(deliver|recipient|address)|delivery (permanently )?failed/i, 'generic'],
  [/\b(user|mailbox|recipient|address)( name)? (unknown|not found|does not exist|unavailable|is not valid|doesn't exist|disabled|inactive)\b/i, 'generic'],
  [/\bno such (user|mailbox|recipient|address)\b|\bnot a valid (user|recipient|address|mailbox)\b/i, 'generic'],
  [/\b55[0-4][ -]5\.\d{1,3}\.\d{1,3}\b|\b5\.[1-7]\.\d{1,3}\b/, 'generic'],
  [/returned to sender|returning message to sender/i, 'generic'],
  [/\b(an? |the |your )(e-?mail|message|mail) (you sent |you have sent )?(was|has been) (rejected|refused|bounced)/i, 'generic'],
];

// Postfix's defaults (bounce(8) templates) included: "Delayed Mail (still being
// retried)", "Postmaster Warning: Delayed Mail", "could not be delivered for
// more than N hour(s)".
const DELAY_SUBJECT = /^(postmaster warning: delayed mail|warning: (could not send message for past|message .{0,200}delayed|message has not yet been delivered)|delayed mail|delivery status notification \(delay\)|mail delivery (warning|delayed)|delivery delayed|message delayed|delivery warning|mail delivery delay)/i;
const DELAY_BODY = /this is a warning message only|(is|was) only a warning|you do not need to resend your message|no action is required on your part|will (continue to|keep) (try|attempt|retry)|(delivery|retry) attempts? will continue|still (being )?(retried|trying|undelivered)|has not yet been delivered|message (has been )?delayed|delivery (is|has been) delayed|not been able to deliver .{0,160} for .{0,24}(hours|days)|could not be delivered for (more than )?\d{1,4} ?(hours?|days?|\(?hour\(s\)|day\(s\))/i;

// Antivirus notices: the products' own texts and the common generic ones.
const AV_VENDOR: Marker[] = [
  [/symantec mail security|norton anti-?virus|symantec anti-?virus|symantec (scan engine|antivirus for smtp)/i, 'symantec'],
  [/mcafee|groupshield|webshield|virusscan/i, 'mcafee'],
  [/trend ?micro|scanmail for|interscan|imss/i, 'trendmicro'],
  [/mailscanner/i, 'mailscanner'],
  [/messagelabs/i, 'messagelabs'],
  [/antigen (for|found)|antigen\b.{0,200}(virus|quarantin)/i, 'antigen'],
  [/mail ?sweeper|mimesweeper|clearswift/i, 'mailsweeper'],
  [/sophos|puremessage|sav ?interface/i, 'sophos'],
  [/amavis|clamav|clamd|f-secure|kaspersky|panda antivirus|avg (anti|e-?mail)|eset|nod32|barracuda|ironport|postini|sybari|inflex|viruswall|e-?safe|cyberguard/i, 'other'],
];
const AV_SUBJECT = /virus (found|detected|alert|warning|notification|infected)|(found|detected|contains?) (a )?virus|virus in (your|a|the) (mail|message|e-?mail)|e-?mail virus(es)? detected|infected (message|mail|attachment|file)|\bvirus\b.{0,200}\b(blocked|removed|deleted|quarantined|cleaned)|banned (file|attachment|content)|(blocked|quarantined|rejected) (mail|message|attachment)|content (alert|violation|filter)|mail ?sweeper|scanmail|antivirus|anti-virus|virus|malware/i;
const AV_BODY = /infected attachment|virus-infected|(possible|potential) virus|virus \S{1,60} (was|has been|is) (found|detected)|contained \S{1,60} virus|(was|were) quarantined|(detected|found|identified) the following (virus|viruses|malware|worm|threat)|virus (detector|scanner|scanning|checker)|anti-?virus (software|system|scanner|gateway)|found the .{1,60} virus|contains? (a |the )?virus|virus(es)? (were |was |has been )?(detected|found)|(found|detected|contained|contains|discovered|identified)( an?| the)? (virus|worm|trojan|malware|malicious)|(virus|worm|trojan|malware) (was |has been )?(found|detected|discovered|identified)|infected (with|by)|(is|was|were) infected|has been (quarantined|deleted|removed|cleaned|blocked)|(virus|infection) (name|type|identity|information)|scan(ner)? (result|report|information)|banned (filename|attachment|file type)|(dangerous|prohibited|forbidden) (content|attachment|file)/i;
const VIRUS_NAME = /(?:virus(?: name| identity| information| type)?|infected (?:with|by)|found|detected|malware|worm|identified as|infection)\s*(?:is|was|:|=|"|')?\s*(?:the\s+)?["'(]?((?:W32|Win32|I-Worm|W32\.|Worm|Trojan|Email-Worm|Net-Worm|HTML|VBS|JS|Exploit|Eicar)[\w.\/@!:-]{0,60}|(?:Mydoom|MyDoom|Novarg|Netsky|Bagle|Beagle|Sober|Klez|Sobig|Mimail|Swen|Zafi|Lovgate|Mytob)[\w.\/@!:-]{0,40})/i;
// What a notice says when a scanner *found* something, as against a scanner's
// stamp ("analysed by … antivirus system") that any mail, a bounce too, may carry.
const AV_FOUND = /infected attachment|virus-infected|(possible|potential) virus|virus \S{1,60} (was|has been|is) (found|detected)|contained \S{1,60} virus|(detected|found|identified) the following (virus|viruses|malware|worm|threat)|found the .{1,60} virus|contains? (a |the )?virus|virus(es)? (were |was |has been )?(detected|found)|(found|detected|contained|contains|discovered|identified)( an?| the)? (virus|worm|trojan|malware|malicious)|(virus|worm|trojan|malware) (was |has been )?(found|detected|discovered|identified)|infected (with|by)|(is|was|were) infected|banned (filename|attachment|file type)/i;
const VIRUS_WORD = /\b(virus|viruses|worm|trojan|malware|infected|eicar)\b/i;

// Challenge/response: the products by name, and the texts that ask the
// sender to prove he exists before the mail is delivered.
const CHALLENGE_PRODUCT = /\b(spam ?arrest|mailblocks|boxbe|bluebottle|choicemail|sendio|spamblocker|qurb|cleanmymailbox|spamcease|mailsbroadcast|vanquish)\b/i;
const CHALLENGE = /please (confirm|verify) (that )?(you are|your (message|email|identity|address))|(click|visit|go to|reply to|use).{0,80}(to (confirm|verify|validate)|to (get|have|ensure) (your )?(message|email|mail)s? (is |are )?delivered|(added|add yourself) to)|verify (that )?you are (a )?(real|human|person)|(awaiting|pending|requires?) (your )?(verification|confirmation)|(held|on hold|quarantined|waitlisted)( pending| until| for)?( your)? (verification|confirmation|authori[sz]ation)?|challenge[- ]response|permission to (send|deliver)|(add|added) (yourself )?to (my|the|the recipient's) (approved|allowed|guest) (senders |sender )?list|guest list|approved senders list|allowed list/i;
const CHALLENGE_SUBJECT = /verif|confirm|approv|authori[sz]|challenge|spam ?arrest|boxbe|whitelist|guest list|pending|held|permission|please (reply|respond)|awaiting/i;

// RFC 3834 3.1.7 and 5: "auto-replied" marks a response to a message, on
// its own; so do the vacation programs' own headers (X-Autoreply: yes,
// X-Autorespond, Apple iCloud's X-Apple-Action: VACATION). A bounce carries
// Auto-Submitted: auto-replied too (Exim), which is why bounces are decided
// first.
const AUTO_REPLY_HEADER = /^(auto-submitted: *auto-replied\b|x-autoreply: *(yes|true|1)\b|x-autorespond: *\S|x-apple-action: *vacation\b|x-vacation: *\S)/im;
// Out-of-office programs that set no header at all, by their own fixed words:
// Exchange's and Outlook's subject prefixes, Lotus Notes' Out of Office agent.
// (A bare "Out of Office:" subject could be a person's; it needs a header sign.)
const AUTO_REPLY_PRODUCT: Marker[] = [
  [/^(automatic reply|out of office autoreply|r[ée]ponse automatique|automatische antwort|abwesenheitsnotiz|respuesta autom[aá]tica|risposta automatica|resposta autom[aá]tica|automatisch antwoord|automatyczna odpowied[zź])\s?:\s/i, 'exchange-oof'],
  // The vacation programs' and webmail autoresponders' own prefixes (Apple, cPanel, QQ, Japanese webmail).
  [/^(auto[- ]?reply|auto[- ]?response|autorespond(er)?)\s?:\s|^(自动回复|自動回覆|自動返信|自動応答|不在通知)/i, 'autoresponder'],
  [/^auto: .{1,200} is out of the office/i, 'lotus-oof'],
];
const AUTO_REPLY_PRODUCT_BODY: Marker[] = [
  [/this is the only notification you will receive while this person is away/i, 'lotus-oof'],
];
// The weaker signs (auto-generated, Precedence, X-Loop, Exchange's inbox
// rules) need an auto-reply phrase as well.
const AUTO_HEADER = /^(auto-submitted: *auto-(replied|generated|notified)|x-autoreply:|x-autorespond:|x-autoresponder:|x-auto-response:|precedence: *(auto_reply|bulk|junk|list)|x-precedence: *auto_reply|x-mailer:.{0,200}(vacation|autorespond|auto-?reply)|x-autogenerated: *reply|x-ms-exchange-inbox-rules-loop:|x-autorespond:|x-vacation:|x-loop:)/im;
const AUTO_SUBJECT = /^(auto(matic)?[\s_-]*(reply|response|antwort|answer|respuesta|risposta)|auto:|autoreply|\[?auto(matic)?(\s|-)?reply\]?|out of (the )?office|abwesenheit|absence|vacation|on vacation|away from|r[ée]ponse automatique|risposta automatica|automatyczna|respuesta autom[aá]tica|fuera de la oficina|thank you for (your|contacting)|we have received your|(re: )?.{0,200}\((auto(matic)? ?(reply|response))\)|\[automatyczna)/i;
const AUTO_BODY = /out of (the )?office|(i am|i'm|i will be) (currently )?(away|out|on (vacation|holiday|leave|annual leave))|on (vacation|holiday|leave) (until|till|from)|(will|shall) (be )?(back|return|returning)( to the office)? (on|by|after|in)|limited access to (my )?e-?mail|away from (my|the) (desk|office|computer|e-?mail)|this is an auto(matic|mated)?[- ]?(reply|response|generated)|auto(matic|mated) (reply|response|message)|abwesend|bin (ab|bis)|im urlaub|en vacances|absent(e)? du|thank you for (your (e-?mail|message|inquiry|enquiry)|contacting)|we (have )?received your (e-?mail|message)|will (respond|reply|get back to you) (as soon as|shortly|within)/i;

// ---------------------------------------------------------------------------

interface Parts {
  top: [string, string][];
  text: string;
  deliveryStatus: string | null;
  dispositionNotification: boolean;
  reportType: string | null;
  original: QuotedOriginal | null;
  truncated: string | null;
}

const decoder = new TextDecoder('utf-8', { fatal: false });

function bytesOf(content: ArrayBuffer | Uint8Array | string): Uint8Array {
  if (typeof content === 'string') return Buffer.from(content, 'utf8');
  return content instanceof Uint8Array ? content : new Uint8Array(content);
}

function headerBlockOf(raw: string): string {
  const m = /\r?\n\r?\n/.exec(raw);
  return m ? raw.slice(0, m.index) : raw;
}

/** An mbox "From " separator (and some archives' own lines before it) is not a header. */
function stripEnvelopeLine(raw: Uint8Array): Uint8Array {
  if (raw[0] === 0x46 && raw[1] === 0x72 && raw[2] === 0x6f && raw[3] === 0x6d && raw[4] === 0x20) {
    const nl = raw.indexOf(0x0a);
    return nl < 0 ? raw : raw.subarray(nl + 1);
  }
  return raw;
}

/**
 * Old Mac mail stores end lines with a bare CR. With no LF at all in the
 * header's reach every header would run into one line and a bounce would
 * pass as normal mail, so such a message is read with CR as the line end.
 */
function bareCrLines(raw: Uint8Array): Uint8Array {
  const probe = raw.subarray(0, 64 * 1024);
  if (probe.indexOf(0x0a) >= 0 || probe.indexOf(0x0d) < 0) return raw;
  const out = Uint8Array.from(raw);
  for (let i = 0; i < out.length; i++) if (out[i] === 0x0d) out[i] = 0x0a;
  return out;
}

async function parts(rawIn: Uint8Array, limits: ClassifyLimits): Promise<Parts> {
  let truncated: string | null = null;
  let raw = rawIn;
  if (raw.length > limits.maxBytes) {
    raw = raw.subarray(0, limits.maxBytes);
    truncated = `looked at the first ${limits.maxBytes} bytes only`;
  }
  raw = stripEnvelopeLine(bareCrLines(raw));
  const head = decoder.decode(raw.subarray(0, Math.min(raw.length, 256 * 1024)));
  const top = headerFields(headerBlockOf(head));
  const ctype = first(top, 'content-type') ?? '';
  const reportType = /^\s*multipart\/report\b/i.test(ctype) ? (/report-type\s*=\s*"?([\w-]+)/i.exec(ctype)?.[1]?.toLowerCase() ?? '') : null;

  let tooBig = false;
  try {
    measureMime(raw, limits.maxDepth, limits.maxParts);
  } catch {
    tooBig = true;
    truncated = `more than ${limits.maxParts} MIME parts or deeper than ${limits.maxDepth} levels: classified from the header and first text only`;
  }
  if (tooBig) {
    const bodyStart = head.search(/\r?\n\r?\n/);
    const text = bodyStart < 0 ? '' : head.slice(bodyStart, bodyStart + limits.maxTextChars);
    return { top, text, deliveryStatus: null, dispositionNotification: false, reportType, original: null, truncated };
  }

  let email;
  try {
    email = await PostalMime.parse(raw, { forceRfc822Attachments: true, attachmentEncoding: 'arraybuffer', maxNestingDepth: limits.maxDepth + 2, maxHeadersSize: 256 * 1024 });
  } catch {
    const bodyStart = head.search(/\r?\n\r?\n/);
    return { top, text: bodyStart < 0 ? '' : head.slice(bodyStart, bodyStart + limits.maxTextChars), deliveryStatus: null, dispositionNotification: false, reportType, original: null, truncated: 'MIME could not be parsed: classified from the header and first text only' };
  }
  let text = (email.text ?? '').slice(0, limits.maxTextChars);
  if (!text && email.html) text = email.html.slice(0, limits.maxTextChars * 2).replace(/<[^>]{0,2000}>/g, ' ').replace(/&nbsp;/g, ' ').slice(0, limits.maxTextChars);
  // A multipart whose boundary parameter the parser could not read (Verizon's
  // gateways put it on an unfolded line) leaves no text at all: the raw body
  // is searched instead, still bounded.
  if (!text && email.attachments.length === 0) {
    const bodyStart = head.search(/\r?\n\r?\n/);
    if (bodyStart >= 0) text = head.slice(bodyStart, bodyStart + limits.maxTextChars);
  }
  let deliveryStatus: string | null = null;
  let dispositionNotification = false;
  let original: QuotedOriginal | null = null;
  for (const a of email.attachments.slice(0, limits.maxParts)) {
    const type = a.mimeType.toLowerCase();
    if ((type === 'message/delivery-status' || type === 'message/global-delivery-status') && deliveryStatus === null) {
      deliveryStatus = decoder.decode(bytesOf(a.content).subarray(0, 64 * 1024));
    } else if (type === 'message/disposition-notification' || type === 'message/global-disposition-notification') {
      dispositionNotification = true;
    } else if ((type === 'message/rfc822' || type === 'message/global') && (original === null || original.source !== 'message/rfc822')) {
      const block = headerBlockOf(decoder.decode(bytesOf(a.content).subarray(0, 128 * 1024)));
      const q = quoted(block, 'message/rfc822', limits.maxReceived);
      if (Object.keys(q.fields).length > 0) original = q;
    } else if ((type === 'text/rfc822-headers' || type === 'text/global-headers') && original === null) {
      original = quoted(decoder.decode(bytesOf(a.content).subarray(0, 128 * 1024)), 'text/rfc822-headers', limits.maxReceived);
    } else if (type.startsWith('text/') && text.length < limits.maxTextChars && a.disposition !== 'attachment') {
      // Some MTAs send the human-readable part as text/* other than plain.
      text += `\n${decoder.decode(bytesOf(a.content).subarray(0, limits.maxTextChars - text.length))}`;
    }
  }
  if (original === null) {
    const inline = inlineHeaders(text);
    if (inline) original = quoted(inline, 'inline-text', limits.maxReceived);
  }
  return { top, text, deliveryStatus, dispositionNotification, reportType, original, truncated };
}

/** RFC 3464 2.2/2.3: a per-message group, then per-recipient groups separated by blank lines. */
function parseDeliveryStatus(body: string, maxRecipients: number): { reportingMta: string | null; recipients: DsnRecipient[] } {
  const groups = body.split(/\r?\n[ \t]*\r?\n/).map((g) => headerFields(g, 40)).filter((g) => g.length > 0);
  const perMessage = groups[0] ?? [];
  const recipients: DsnRecipient[] = [];
  for (const g of groups.slice(1)) {
    if (recipients.length >= maxRecipients) break;
    if (!g.some(([k]) => k === 'final-recipient' || k === 'action' || k === 'status')) continue;
    recipients.push({
      finalRecipient: c(typedAddress(first(g, 'final-recipient')), 256),
      originalRecipient: c(typedAddress(first(g, 'original-recipient')), 256),
      action: c(first(g, 'action')?.toLowerCase().split(/[\s(]/)[0] ?? null, 20),
      status: c(/\d\.\d{1,3}\.\d{1,3}/.exec(first(g, 'status') ?? '')?.[0] ?? null, 20),
      remoteMta: c(typedAddress(first(g, 'remote-mta')), 256),
      diagnostic: c(first(g, 'diagnostic-code'), 300),
    });
  }
  // Some MTAs write everything as one group.
  if (recipients.length === 0 && perMessage.some(([k]) => k === 'final-recipient' || k === 'action')) {
    recipients.push({
      finalRecipient: c(typedAddress(first(perMessage, 'final-recipient')), 256),
      originalRecipient: c(typedAddress(first(perMessage, 'original-recipient')), 256),
      action: c(first(perMessage, 'action')?.toLowerCase().split(/[\s(]/)[0] ?? null, 20),
      status: c(/\d\.\d{1,3}\.\d{1,3}/.exec(first(perMessage, 'status') ?? '')?.[0] ?? null, 20),
      remoteMta: c(typedAddress(first(perMessage, 'remote-mta')), 256),
      diagnostic: c(first(perMessage, 'diagnostic-code'), 300),
    });
  }
  return { reportingMta: c(typedAddress(first(perMessage, 'reporting-mta')), 256), recipients };
}

function match(markers: Marker[], s: string): string | null {
  for (const [re, fmt] of markers) if (re.test(s)) return fmt;
  return null;
}

/** The first MTA family whose signature the notice's text (and top header) shows. */
export function familyOf(text: string, headerBlock: string): string | null {
  for (const f of FAMILY_SIGNS) if (f.text.every((re) => re.test(text)) && (!f.header || f.header.test(headerBlock))) return f.family;
  return null;
}

// The forward prefixes of mail programs: English, German (WG), French (TR),
// Spanish/Portuguese (RV/ENC), Italian (I), Dutch (Doorst), Scandinavian (VS).
const FORWARD_SUBJECT = /^(fwd?|fw|wg|tr|rv|enc|i|doorst|vs|vb)\s?:/i;

// Where a notice's quoted copy of the original starts, in whitespace-collapsed
// text: the MTAs' separator lines, or the quoted header block itself.
const QUOTE_CUT = /-{2,8} ?(this is a copy of the message|below this line is a copy of the message|original message|forwarded message|the original message headers)|original mail as follows:|\breturn-path: ?</i;

/**
 * Classifies one message (the whole raw message, as received). Never throws
 * on the message's content.
 */
export async function classify(raw: Uint8Array, limits: ClassifyLimits = DEFAULT_CLASSIFY_LIMITS): Promise<Classification> {
  const p = await parts(raw, limits);
  const subjectRaw = first(p.top, 'subject') ?? '';
  const subject = subjectRaw.replace(/=\?[^?]{1,40}\?[bq]\?[^?]{0,400}\?=/gi, (w) => decodeWord(w));
  const from = first(p.top, 'from') ?? '';
  const returnPath = first(p.top, 'return-path');
  const headerBlock = p.top.map(([k, v]) => `${k}: ${v}`).join('\n');
  // Phrases are matched on whitespace-collapsed text: MTAs wrap their sentences.
  const text = p.text.slice(0, 32768).replace(/\s+/g, ' ');
  // The notice's own words: the text before the copy of the original it
  // quotes (a virus scanner's stamp in the quoted mail is not the notice's).
  const cut = QUOTE_CUT.exec(text);
  const own = (cut ? text.slice(0, cut.index) : text).slice(0, 16384);
  const reasons: string[] = [];
  const ds = p.deliveryStatus !== null ? parseDeliveryStatus(p.deliveryStatus, limits.maxRecipients) : { reportingMta: null, recipients: [] as DsnRecipient[] };
  // Plain-text DSN bodies (some MTAs) carry the same fields inline.
  if (p.deliveryStatus === null && /^Reporting-MTA:/im.test(text)) {
    const at = text.search(/^Reporting-MTA:/im);
    const inline = parseDeliveryStatus(text.slice(at, at + 8192), limits.maxRecipients);
    ds.reportingMta = inline.reportingMta;
    ds.recipients = inline.recipients;
  }
  const daemon = DAEMON_FROM.test(from) || DAEMON_FROM.test(first(p.top, 'sender') ?? '');
  const nullSender = returnPath !== null && /^<\s*>$|^<?mailer-daemon\b/i.test(returnPath.trim());
  const autoHeader = AUTO_HEADER.test(headerBlock) || AUTO_REPLY_HEADER.test(headerBlock);
  const autoReplyHeader = AUTO_REPLY_HEADER.test(headerBlock);
  const family = familyOf(text.slice(0, 16384), headerBlock);
  const haystack = `${subject}\n${text}`;
  const mentionsVirus = VIRUS_WORD.test(haystack) || VIRUS_WORD.test(ds.recipients.map((r) => r.diagnostic ?? '').join(' '));
  const virusMatch = VIRUS_NAME.exec(`${subject}\n${text}\n${ds.recipients.map((r) => r.diagnostic ?? '').join('\n')}`);
  const virusName = virusMatch ? cleanText(virusMatch[1]!.replace(/[.,;:)'"]+$/, ''), 80) : null;

  const result = (cls: MessageClass, format: string | null): Classification => ({
    class: cls,
    format,
    reasons,
    mentionsVirus: cls === 'normal' || cls === 'auto-reply' || cls === 'read-receipt' ? false : mentionsVirus,
    virusName: cls === 'normal' || cls === 'auto-reply' || cls === 'read-receipt' ? null : virusName,
    subject: c(subject, 200),
    from: c(from, 256),
    returnPath: c(angle(returnPath), 256),
    reportingMta: ds.reportingMta,
    recipients: ds.recipients,
    original: p.original,
    truncated: p.truncated,
  });

  // 1. The standard report formats decide by structure (RFC 3462/6522, 3464, 8098).
  // An MDN that a mail system sends to say it threw the message away (some
  // filters reject this way) is a bounce, not a receipt.
  if ((p.reportType === 'disposition-notification' || p.dispositionNotification) && !((daemon || nullSender) && (family !== null || match(DSN_BODY, text.slice(0, 16384)) !== null || /rejected|undeliver/i.test(subject)))) {
    reasons.push('multipart/report with a disposition notification (RFC 8098)');
    return result('read-receipt', 'rfc8098');
  }
  // An abuse feedback report (RFC 5965) is no bounce and no auto-reply: the
  // desk reads those; here it is ordinary mail.
  if (p.reportType === 'feedback-report') {
    reasons.push('multipart/report; report-type=feedback-report (RFC 5965): not a notice about delivery');
    return result('normal', 'rfc5965');
  }
  // The report type alone is not enough: challenge systems (Boxbe) send
  // multipart/report; report-type=delivery-status with no status part.
  if (p.deliveryStatus !== null || (ds.reportingMta !== null && ds.recipients.length > 0)) {
    const actions = ds.recipients.map((r) => r.action);
    reasons.push(p.reportType === 'delivery-status' ? 'multipart/report; report-type=delivery-status (RFC 3464)' : 'delivery-status fields (RFC 3464)');
    if (actions.length > 0 && actions.every((a) => a === 'delayed')) {
      reasons.push('every recipient has Action: delayed (RFC 3464 2.3.3)');
      return result('delay', 'rfc3464');
    }
    if (actions.length === 0 && (DELAY_SUBJECT.test(subject) || DELAY_BODY.test(text))) {
      reasons.push('no Action field; a delay text');
      return result('delay', 'rfc3464');
    }
    // Boxbe and its kind dress a challenge as a failed DSN.
    if (CHALLENGE_PRODUCT.test(`${from}\n${text}`) && CHALLENGE.test(text)) {
      reasons.push('a challenge/response product text inside the report');
      return result('challenge', 'generic');
    }
    return result('dsn', 'rfc3464');
  }

  // 2. Antivirus notices: a virus phrase, and either a product's name or the
  // signs of an automatic message. Discussions of viruses between people
  // have neither the product nor the automatic sender.
  const automatic = daemon || nullSender || autoHeader || p.reportType !== null || /(^|[<\s"])(no-?reply|do-?not-?reply|donotreply)@/i.test(from) || /^(antivirus|anti-virus|virus|virusalert|virus-?scan|av|mailscanner|scanmail|security|mailsweeper|quarantine|amavis|clamav|content-?filter|mailadmin|administrator|admin|root|system)[@\s"-]|(anti-?virus|virus|mail ?scanner|scanmail|content filter|mailsweeper|security) ?(system|service|administrator|alert|gateway|scanner|notification|robot|daemon)?\s*[<"]/i.test(from.replace(/^"?/, ''));
  const vendor = match(AV_VENDOR, `${from}\n${subject}\n${own}\n${headerBlock}`);
  const avSubject = AV_SUBJECT.test(subject);
  // An MTA's own bounce text with a scanner's stamp is still a bounce: then
  // only a finding makes it a virus notice.
  const avBody = family !== null ? AV_FOUND.test(own) : AV_BODY.test(own);
  if (avBody && (avSubject || vendor) && (automatic || vendor)) {
    reasons.push(vendor ? `antivirus product text (${vendor})` : 'antivirus notice text from an automatic sender');
    return result('av-notice', vendor ?? 'generic');
  }

  // 3. MTAs' own bounce formats (pre-RFC 3464, or with the report part lost).
  const subjectFmt = match(DSN_SUBJECT, subject.trim());
  const bodyFmt = family ?? match(DSN_BODY, text.slice(0, 16384));
  const delaySubject = DELAY_SUBJECT.test(subject.trim());
  const delayBody = DELAY_BODY.test(text.slice(0, 16384));
  const strongBody = family !== null;
  const evidence = [daemon, nullSender, subjectFmt !== null, bodyFmt !== null, strongBody, p.original !== null].filter(Boolean).length;
  if ((delaySubject && (daemon || nullSender || delayBody)) || (delayBody && daemon && !subjectFmt)) {
    reasons.push('an MTA delay warning (subject/body text)');
    return result('delay', subjectFmt ?? bodyFmt ?? 'generic');
  }
  // A person forwarding a bounce ("Fwd: Returned mail: …", with a person's
  // sender and envelope) wrote a message of his own; the bounce is quoted in it.
  const forwardedByPerson = !daemon && !nullSender && FORWARD_SUBJECT.test(subject.trim());
  if (forwardedByPerson) reasons.push('a person forwards a bounce (Fwd: subject, a sender that is no mail system)');
  else if (strongBody || (subjectFmt !== null && (daemon || nullSender || bodyFmt !== null)) || (daemon && bodyFmt !== null) || evidence >= 4) {
    if (daemon) reasons.push('sender is a mail system (MAILER-DAEMON/postmaster)');
    if (nullSender) reasons.push('null Return-Path');
    if (subjectFmt) reasons.push(`bounce subject (${subjectFmt})`);
    if (family) reasons.push(`the ${family} family's own bounce text`);
    else if (bodyFmt) reasons.push('bounce text (generic)');
    return result('dsn', strongBody ? bodyFmt : (subjectFmt ?? bodyFmt ?? 'generic'));
  }

  // 4. Challenge/response: an automatic message that asks the sender to act.
  if ((automatic || CHALLENGE_SUBJECT.test(subject) || CHALLENGE_PRODUCT.test(`${from}\n${headerBlock}\n${text.slice(0, 16384)}`)) && CHALLENGE.test(haystack)) {
    reasons.push('asks the sender to confirm before delivery (challenge/response)');
    return result('challenge', 'generic');
  }

  // 5. RFC 3834 auto-reply: Auto-Submitted: auto-replied (or a vacation
  // program's own header) alone, or a weaker header sign AND a phrase.
  if (autoReplyHeader) {
    reasons.push('Auto-Submitted: auto-replied or a vacation program header (RFC 3834 5)');
    return result('auto-reply', 'rfc3834');
  }
  const product = match(AUTO_REPLY_PRODUCT, subject.trim()) ?? match(AUTO_REPLY_PRODUCT_BODY, text.slice(0, 8192));
  if (product) {
    reasons.push(`an out-of-office program's own words (${product})`);
    return result('auto-reply', product);
  }
  if (autoHeader && (AUTO_SUBJECT.test(subject) || AUTO_BODY.test(text.slice(0, 8192)))) {
    reasons.push('Auto-Submitted/X-Autoreply-style header and an auto-reply phrase (RFC 3834)');
    return result('auto-reply', 'rfc3834');
  }

  reasons.push('no bounce, notice or auto-reply sign');
  return result('normal', null);
}

/** Decodes one RFC 2047 encoded word (for subject matching only; unknown charsets as latin1). */
function decodeWord(word: string): string {
  const m = /^=\?([^?]+)\?([bq])\?([^?]*)\?=$/i.exec(word);
  if (!m) return word;
  const bytes = m[2]!.toLowerCase() === 'b' ? Buffer.from(m[3]!, 'base64') : Buffer.from(m[3]!.replace(/_/g, ' ').replace(/=([0-9a-f]{2})/gi, (_, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1');
  try {
    return new TextDecoder(m[1]!.toLowerCase()).decode(bytes);
  } catch {
    return bytes.toString('latin1');
  }
}
