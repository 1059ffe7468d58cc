import assert from 'node:assert/strict';
import { test } from 'node:test';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { classify, DEFAULT_CLASSIFY_LIMITS, FAMILY_SIGNS, familyOf, headerFields, type MessageClass } from '../../src/backscatter/classify.ts';
import { measure, treeRows } from '../../scripts/eval-corpus.ts';

const msg = (s: string) => Buffer.from(s.replace(/\n/g, '\r\n'));

const ORIGINAL = `Return-Path: <alice@ours.example>
Received: from pc (unknown [192.0.2.7]) by relay.ours.example with ESMTP id 1; Mon, 1 Jan 2024 00:00:00 +0000
Message-ID: <orig-1@ours.example>
From: Alice <alice@ours.example>
To: bob@far.example
Subject: hello
X-Backstop-Stamp: bs1.00000000000000000000

body
`;

function rfc3464(action: string, extra = ''): string {
  return `From: Mail Delivery System <MAILER-DAEMON@mx.far.example>
To: alice@ours.example
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"
${extra}
--B
Content-Type: text/plain

This is the mail system at host mx.far.example.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.far.example

Final-Recipient: rfc822; bob@far.example
Original-Recipient: rfc822;bob@far.example
Action: ${action}
Status: ${action === 'delayed' ? '4.4.1' : '5.1.1'}
Remote-MTA: dns; in.far.example
Diagnostic-Code: smtp; 550 5.1.1 <bob@far.example>: User unknown

--B
Content-Type: message/rfc822

${ORIGINAL}
--B--
`;
}

const TABLE: [string, string, MessageClass, string | null][] = [
  ['rfc3464 failure', rfc3464('failed'), 'dsn', 'rfc3464'],
  ['rfc3464 delayed', rfc3464('delayed'), 'delay', 'rfc3464'],
  [
    'qmail',
    `From: MAILER-DAEMON@mx.far.example\nTo: alice@ours.example\nSubject: failure notice\n\nHi. This is the qmail-send program at mx.far.example.\nI'm afraid I wasn't able to deliver your message to the following addresses.\nThis is a permanent error; I've given up. Sorry it didn't work out.\n\n<bob@far.example>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n--- Below this line is a copy of the message.\n\n${ORIGINAL}`,
    'dsn',
    'qmail',
  ],
  [
    'exim',
    `From: Mail Delivery System <Mailer-Daemon@mx.far.example>\nTo: alice@ours.example\nSubject: Mail delivery failed: returning message to sender\nAuto-Submitted: auto-replied\n\nThis message was created automatically by mail delivery software.\n\nA message that you sent could not be delivered to one or more of its\nrecipients. This is a permanent error. The following address(es) failed:\n\n  bob@far.example\n    unknown user\n\n------ This is a copy of the message, including all the headers. ------\n\n${ORIGINAL}`,
    'dsn',
    'exim',
  ],
  [
    'old sendmail',
    `From: Mail Delivery Subsystem <MAILER-DAEMON@mx.far.example>\nSubject: Returned mail: User unknown\n\nThe original message was received at Mon, 1 Jan 2024\nfrom pc [192.0.2.7]\n\n   ----- The following addresses had permanent fatal errors -----\n<bob@far.example>\n\n   ----- Transcript of session follows -----\n... while talking to in.far.example.:\n>>> RCPT To:<bob@far.example>\n<<< 550 5.1.1 User unknown\n`,
    'dsn',
    'sendmail',
  ],
  [
    'exchange',
    `From: postmaster@far.example\nSubject: Undeliverable: hello\n\nYour message did not reach some or all of the intended recipients.\n\n      Subject:  hello\n\nThe following recipient(s) could not be reached:\n\n      bob@far.example on 1/1/2024\n            The e-mail account does not exist at the organization this message was sent to.\n`,
    'dsn',
    'exchange',
  ],
  [
    'lotus notes',
    `From: Postmaster@far.example\nSubject: DELIVERY FAILURE: User bob (bob@far.example) not listed in Domino Directory\n\nYour document:\thello\nwas not delivered to:\tbob@far.example\nbecause:\tUser bob (bob@far.example) not listed in Domino Directory\n`,
    'dsn',
    'lotus',
  ],
  [
    'sendmail warning',
    `From: Mail Delivery Subsystem <MAILER-DAEMON@mx.far.example>\nSubject: Warning: could not send message for past 4 hours\n\n    **********************************************\n    **      THIS IS A WARNING MESSAGE ONLY      **\n    **  YOU DO NOT NEED TO RESEND YOUR MESSAGE  **\n    **********************************************\n`,
    'delay',
    'generic',
  ],
  [
    'MailScanner notice',
    `From: MailScanner <postmaster@far.example>\nTo: alice@ours.example\nSubject: Warning: E-mail viruses detected\n\nOur virus detector has just been triggered by a message you sent:-\n  To: bob@far.example\n  Subject: hello\nAny infected parts of the message have not been delivered.\n\nThis message is simply to warn you that your computer system may have a\nvirus present and should be checked.\n\nThe virus detector said this about the message:\nReport: /var/spool/MailScanner/x/document.zip  Found the W32/Mydoom.A@mm virus !!!\n\n-- \nMailScanner\n`,
    'av-notice',
    'mailscanner',
  ],
  [
    'Symantec notice',
    `From: SMTP Gateway <admin@far.example>\nSubject: Symantec Mail Security detected a virus in a message you sent (SYM:12345)\n\nSubject of the message: hello\nRecipient of the message: bob\n\nSymantec Mail Security detected the following virus: W32.Mydoom.A@mm\nThe attachment was quarantined.\n`,
    'av-notice',
    'symantec',
  ],
  [
    'Trend Micro ScanMail',
    `From: System Attendant <Administrator@far.example>\nSubject: ScanMail Message: To Sender virus found or matched file blocking setting.\n\nScanMail for Microsoft Exchange has detected virus(es) in your email attachment.\nDate: 1/1/2024\nMethod: Mail Delivery\nFile: document.pif\nAction: Quarantined\nVirus: WORM_MYDOOM.A\n`,
    'av-notice',
    'trendmicro',
  ],
  [
    'Antigen notice',
    `From: Antigen_EXCH01@far.example\nSubject: Antigen found VIRUS= W32/Mydoom.A@mm (Norman) worm\n\nAntigen for Exchange found document.pif infected with VIRUS= W32/Mydoom.A@mm (Norman) worm.\nThe file is currently Removed.  The message, "hello", was\nsent from alice@ours.example and was discovered in IMC Queues\\Inbound\nlocated at FAR/Site/EXCH01.\n`,
    'av-notice',
    'antigen',
  ],
  [
    'MAILsweeper notice',
    `From: MAILsweeper <mailsweeper@far.example>\nSubject: Mail Delivery Failure: Content Violation\n\nThe message you sent to bob@far.example was blocked by MAILsweeper because it contained a virus.\nVirus: W32/Mydoom.A@mm\nThe message has been quarantined.\n`,
    'av-notice',
    'mailsweeper',
  ],
  [
    'challenge',
    `From: Spam Arrest <noreply@spamarrest.com>\nSubject: Re: hello [Verification Needed]\n\nHello, I am protected by Spam Arrest. Please click the link below to verify that you are a real person and your message will be delivered:\nhttp://spamarrest.example/verify?x\n`,
    'challenge',
    'generic',
  ],
  [
    'vacation auto-reply',
    `From: Bob <bob@far.example>\nSubject: Out of Office: hello\nAuto-Submitted: auto-replied\n\nI am out of the office until Monday and will reply when I return.\n`,
    'auto-reply',
    'rfc3834',
  ],
  [
    'auto-reply-phrase-without-header is normal',
    `From: Bob <bob@far.example>\nSubject: Out of Office: hello\n\nI am out of the office until Monday.\n`,
    'normal',
    null,
  ],
  [
    'auto-reply-header-without-phrase is normal',
    `From: Bob <bob@far.example>\nSubject: minutes of the meeting\nAuto-Submitted: auto-generated\n\nAttached are the minutes.\n`,
    'normal',
    null,
  ],
  [
    'read receipt',
    `From: bob@far.example\nSubject: Read: hello\nMIME-Version: 1.0\nContent-Type: multipart/report; report-type=disposition-notification; boundary="R"\n\n--R\nContent-Type: text/plain\n\nYour message was displayed.\n--R\nContent-Type: message/disposition-notification\n\nReporting-UA: mua.far.example; Mail\nFinal-Recipient: rfc822; bob@far.example\nOriginal-Message-ID: <orig-1@ours.example>\nDisposition: manual-action/MDN-sent-manually; displayed\n--R--\n`,
    'read-receipt',
    'rfc8098',
  ],
  [
    'person-writing-about-a-bounce is normal',
    `From: Carol <carol@far.example>\nSubject: Re: your mail bounced?\n\nHi Alice, I think the mail could not be delivered because my mailbox was full. Please resend. Also, the virus scanner at work is annoying.\n`,
    'normal',
    null,
  ],
  [
    'newsletter-about-viruses is normal',
    `From: Security News <news@vendor.example>\nSubject: Virus alert: Mydoom spreading fast\nPrecedence: bulk\n\nA new worm, W32.Mydoom.A@mm, is spreading. Update your antivirus now.\n`,
    'normal',
    null,
  ],
];

test('classify: one message per format', async () => {
  for (const [name, text, cls, fmt] of TABLE) {
    const r = await classify(msg(text));
    assert.equal(r.class, cls, `${name}: ${r.reasons.join('; ')}`);
    assert.equal(r.format, fmt, name);
  }
});

test('classify extracts the RFC 3464 fields and the quoted original', async () => {
  const r = await classify(msg(rfc3464('failed')));
  assert.equal(r.reportingMta, 'mx.far.example');
  assert.deepEqual(r.recipients[0], {
    finalRecipient: 'bob@far.example',
    originalRecipient: 'bob@far.example',
    action: 'failed',
    status: '5.1.1',
    remoteMta: 'in.far.example',
    diagnostic: 'smtp; 550 5.1.1 <bob@far.example>: User unknown',
  });
  assert.equal(r.original?.source, 'message/rfc822');
  assert.equal(r.original?.messageId, '<orig-1@ours.example>');
  assert.equal(r.original?.envelopeSender, 'alice@ours.example');
  assert.equal(r.original?.headerFrom, 'Alice <alice@ours.example>');
  assert.equal(r.original?.received.length, 1);
  assert.equal(r.original?.fields['x-backstop-stamp'], 'bs1.00000000000000000000');
});

test('classify finds headers quoted inline by qmail and Exim', async () => {
  for (const [name, text] of TABLE.filter(([n]) => n === 'qmail' || n === 'exim')) {
    const r = await classify(msg(text));
    assert.equal(r.original?.source, 'inline-text', name);
    assert.equal(r.original?.messageId, '<orig-1@ours.example>', name);
    assert.match(r.original?.received[0] ?? '', /by relay\.ours\.example/, name);
  }
});

test('classify names the virus a notice names', async () => {
  const table: [string, string][] = [
    ['MailScanner notice', 'W32/Mydoom.A@mm'],
    ['Symantec notice', 'W32.Mydoom.A@mm'],
  ];
  for (const [name, virus] of table) {
    const r = await classify(msg(TABLE.find(([n]) => n === name)![1]));
    assert.equal(r.virusName, virus, name);
    assert.equal(r.mentionsVirus, true, name);
  }
});

test('dsn-with-10000-parts: classified from the header, bounded work', async () => {
  const parts = Array.from({ length: 10_000 }, (_, i) => `--B\nContent-Type: text/plain\n\npart ${i}\n`).join('');
  const raw = msg(`From: MAILER-DAEMON@mx.far.example\nSubject: Undelivered Mail Returned to Sender\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="B"\n\n${parts}--B--\n`);
  const t0 = performance.now();
  const r = await classify(raw);
  assert.ok(performance.now() - t0 < 2000, 'quick');
  assert.match(r.truncated ?? '', /MIME parts/);
  assert.equal(r.class, 'dsn', 'the header alone still says bounce');
});

test('dsn-nested-200-deep: refused by the pre-pass, no recursion', async () => {
  let body = 'x\n';
  for (let i = 199; i >= 0; i--) body = `Content-Type: multipart/mixed; boundary="b${i}"\n\n--b${i}\n${body}--b${i}--\n`;
  const r = await classify(msg(`From: someone@far.example\nSubject: hi\nMIME-Version: 1.0\n${body}`));
  assert.match(r.truncated ?? '', /deeper|parts/);
  assert.equal(r.class, 'normal');
});

test('dsn-of-20-megabytes: only maxBytes looked at', async () => {
  const raw = msg(rfc3464('failed').replace('body\n', `${'A'.repeat(20 * 1024 * 1024)}\n`));
  const r = await classify(raw);
  assert.match(r.truncated ?? '', /first \d+ bytes/);
  assert.equal(r.class, 'dsn');
});

test('dsn-with-5000-recipients: at most maxRecipients kept', async () => {
  const groups = Array.from({ length: 5000 }, (_, i) => `Final-Recipient: rfc822; u${i}@far.example\nAction: failed\nStatus: 5.1.1\n`).join('\n');
  const raw = msg(rfc3464('failed').replace(/Reporting-MTA: dns; mx.far.example\n\n[\s\S]*?\n\n--B\nContent-Type: message\/rfc822/, `Reporting-MTA: dns; mx.far.example\n\n${groups}\n--B\nContent-Type: message/rfc822`));
  const r = await classify(raw, { ...DEFAULT_CLASSIFY_LIMITS, maxParts: 64 });
  assert.equal(r.class, 'dsn');
  assert.equal(r.recipients.length, DEFAULT_CLASSIFY_LIMITS.maxRecipients);
});

test('dsn-with-control-characters: every extracted string is cleaned', async () => {
  const raw = Buffer.from(
    rfc3464('failed')
      .replace('Reporting-MTA: dns; mx.far.example', 'Reporting-MTA: dns; mx.far.example\u001b[2J\u202e')
      .replace('Message-ID: <orig-1@ours.example>', 'Message-ID: <evil\u0007\u202e@x>')
      .replace(/\n/g, '\r\n'),
    'utf8',
  );
  const r = await classify(raw);
  const all = JSON.stringify([r.reportingMta, r.original]);
  assert.doesNotMatch(all, /[\u0000-\u0008\u000b-\u001f\u007f\u202e]/);
});

test('forged-reporting-mta: fields are only extracted, never trusted here', async () => {
  const r = await classify(msg(rfc3464('failed').replace('Reporting-MTA: dns; mx.far.example', 'Reporting-MTA: dns; relay.ours.example')));
  assert.equal(r.reportingMta, 'relay.ours.example');
  assert.equal(r.class, 'dsn');
});

test('garbage never throws', async () => {
  const table = ['', '\r\n\r\n', 'From ', 'Content-Type: multipart/report; report-type=delivery-status\r\n\r\n--', '\u0000'.repeat(1000), 'Subject: =?x?q?=ZZ?=\r\n\r\n'];
  for (const t of table) await assert.doesNotReject(classify(Buffer.from(t, 'latin1')), JSON.stringify(t.slice(0, 20)));
});

test('headerFields unfolds and caps', () => {
  assert.deepEqual(headerFields('A: 1\n  2\nB:3\nnot a header\n'), [['a', '1 2'], ['b', '3']]);
  assert.equal(headerFields(Array.from({ length: 500 }, (_, i) => `X-${i}: y`).join('\n')).length, 200);
});

// One message per MTA family of issue 14, each in that family's own format
// (written here from the formats' descriptions, not copied from a corpus).
const FAMILY_TABLE: [string, string, MessageClass, string | null][] = [
  [
    'amazon-ses-smtp',
    `From: MAILER-DAEMON@email-bounces.amazonses.com\nTo: alice@ours.example\nSubject: Delivery Status Notification (Failure)\n\nAn error occurred while trying to deliver the mail to the following recipients:\nbob@far.example\n`,
    'dsn',
    'amazonses',
  ],
  [
    'amazon-ses-sns-bounce',
    `From: SES <no-reply@sns.amazonaws.com>\nTo: alice@ours.example\nSubject: AWS Notification Message\n\n{"Type" : "Notification", "Message" : "{\\"notificationType\\":\\"Bounce\\",\\"bounce\\":{\\"bounceType\\":\\"Permanent\\",\\"bouncedRecipients\\":[{\\"emailAddress\\":\\"bob@far.example\\"}]}}"}\n`,
    'dsn',
    'amazonses',
  ],
  [
    'amazon-ses-sns-delivery is normal',
    `From: SES <no-reply@sns.amazonaws.com>\nTo: alice@ours.example\nSubject: AWS Notification Message\n\n{"notificationType":"Delivery","delivery":{"recipients":["bob@far.example"]}}\n`,
    'normal',
    null,
  ],
  [
    'exchange-2003',
    `From: System Administrator <postmaster@far.example>\nTo: alice@ours.example\nSubject: Undeliverable: hello\n\nYour message\n\n  To:      bob@far.example\n  Subject: hello\n\ndid not reach the following recipient(s):\n\nbob@far.example on 1/1/2024\n    The recipient name is not recognized\n    MSEXCH:IMS:FAR:SITE:EXCH01 0 (000C05A6) Unknown Recipient\n`,
    'dsn',
    'exchange2003',
  ],
  [
    'exchange-2003-plain-subject',
    `From: System Administrator <admin@far.example>\nTo: alice@ours.example\nSubject: E\n\nYour message did not reach the following recipient(s):\nbob@far.example\n`,
    'dsn',
    'exchange2003',
  ],
  [
    'apache-james',
    `From: postmaster@far.example\nTo: alice@ours.example\nSubject: [BOUNCE]\n\nHi. This is the James mail server at far.example.\nError message below:\n550 - Requested action not taken: no such user here\n\nMessage details:\n  Subject: hello\n  MAIL FROM: alice@ours.example\n  RCPT TO: bob@far.example\n`,
    'dsn',
    'apachejames',
  ],
  [
    'verizon-mobile',
    `From: sysadmin@vzwpix.example\nTo: alice@ours.example\nSubject: Undeliverable Message\n\nMessage could not be delivered to mobile.\nError: 5.1.1 Invalid user address\n`,
    'dsn',
    'verizon',
  ],
  [
    'fml',
    `From: list-admin@far.example\nTo: alice@ours.example\nSubject: NOT MEMBER article from alice@ours.example (list ML)\nX-MLServer: fml [fml 4.0.3 release]\n\nYou are not a member of this mailing list <list@far.example>.\n\nOriginal mail as follows:\n\n   From: alice@ours.example\n   Subject: hello\n`,
    'dsn',
    'fml',
  ],
  [
    'fml-error-title',
    `From: list-admin@far.example\nTo: alice@ours.example\nSubject: fml system error message\nX-MLServer: fml [fml 4.0.3 release]\n\nLoop Back Warning: a message came back to the list.\n`,
    'dsn',
    'fml',
  ],
  [
    'postfix-rewritten-headline',
    `From: Mail Delivery System <MAILER-DAEMON@mx.far.example>\nTo: alice@ours.example\nSubject: Your mail to bob\n\nOur server could not pass on your message.\n\nIf you do so, please include this problem report. You can\ndelete your own text from the attached returned message.\n\n<bob@far.example>: host in.far.example[192.0.2.9] said: 550 5.1.1 unknown\n    (in reply to RCPT TO command)\n`,
    'dsn',
    'postfix',
  ],
  [
    'postfix-before-2.3',
    `From: MAILER-DAEMON@mx.far.example (Mail Delivery System)\nTo: alice@ours.example\nSubject: Undelivered Mail Returned to Sender\n\nThis is the Postfix program at host mx.far.example.\n\nI'm sorry to have to inform you that the message returned\nbelow could not be delivered to one or more destinations.\n`,
    'dsn',
    'postfix',
  ],
  [
    'postfix-delay-template',
    `From: MAILER-DAEMON@mx.far.example (Mail Delivery System)\nTo: alice@ours.example\nSubject: Delayed Mail (still being retried)\n\nThis is the mail system at host mx.far.example.\n\nYour message could not be delivered for more than 4 hour(s).\nIt will be retried until it is 5 day(s) old.\n`,
    'delay',
    'postfix',
  ],
  [
    'postfix-postmaster-delay-copy',
    `From: MAILER-DAEMON@mx.far.example (Mail Delivery System)\nTo: postmaster@mx.far.example\nSubject: Postmaster Warning: Delayed Mail\n\nThe message is still queued.\n`,
    'delay',
    'generic',
  ],
  [
    'postfix-transcript-pasted-by-a-person is normal',
    `From: Carol <carol@far.example>\nTo: alice@ours.example\nSubject: the log you asked for\n\nhere it is: host in.far.example said: 550 unknown (in reply to RCPT TO command)\n`,
    'normal',
    null,
  ],
  [
    'fml-words-without-its-header is normal',
    `From: Carol <carol@far.example>\nTo: alice@ours.example\nSubject: that old list\n\nI kept it. Original mail as follows:\n\nhello\n`,
    'normal',
    null,
  ],
  [
    'kddi-au',
    `From: no-reply@x.dion.ne.jp\nTo: alice@ours.example\nSubject: =?ISO-2022-JP?B?GyRCJWEhPCVrJSglaSE8REtDThsoQg==?=\n\nYour mail sent on: Mon, 1 Jan 2024 00:00:00 +0900\n     Could not be delivered to: <bob@ezweb.ne.jp>\n     As their mailbox is full.\n`,
    'dsn',
    'kddi',
  ],
  [
    'qmail-bounce-by-its-received-stamp',
    `Received: (qmail 4242 invoked for bounce); 1 Jan 2024 00:00:00 -0000\nFrom: MAILER-DAEMON@mx.far.example\nTo: alice@ours.example\nSubject: =?gb2312?B?zcvQxQ==?=\n\nbob@far.example:\n`,
    'dsn',
    'qmail',
  ],
  [
    'chinese-bounce-text',
    `From: MAILER-DAEMON@far.example\nTo: alice@ours.example\nSubject: (no subject)\nContent-Type: text/plain; charset=utf-8\n\n邮件无法发送到您指定的地址中。\n<bob@far.example>:\n`,
    'dsn',
    'generic',
  ],
  [
    'exim-bounce-with-a-scanner-stamp is a bounce, not a virus notice',
    `From: Mail Delivery System <Mailer-Daemon@mx.far.example>\nTo: alice@ours.example\nSubject: Mail delivery failed: returning message to sender\n\nThis message was created automatically by mail delivery software.\n\nA message that you sent could not be delivered to one or more of its\nrecipients. This is a permanent error. The following address(es) failed:\n\n  bob@far.example\n    mailbox is full\n\n__________ NOD32 1.1856 __________\nThis message was checked by NOD32 antivirus system\nhttp://www.eset.example\n`,
    'dsn',
    'exim',
  ],
  [
    'rfc3834-auto-replied-alone',
    `From: Bob <bob@far.example>\nTo: alice@ours.example\nSubject: kitununulinitoquekegu\nAuto-Submitted: auto-replied\nIn-Reply-To: <orig-1@ours.example>\n\nzukunftig karl@far.example\n`,
    'auto-reply',
    'rfc3834',
  ],
  [
    'apple-icloud-vacation',
    `From: bob@far.example\nTo: alice@ours.example\nSubject: Re: hello\nX-Apple-Action: VACATION\n\nI'm only sleeping.\n`,
    'auto-reply',
    'rfc3834',
  ],
  [
    'x-autoreply-yes',
    `From: bob@far.example\nTo: alice@ours.example\nSubject: hello\nX-Autoreply: yes\n\nThanks.\n`,
    'auto-reply',
    'rfc3834',
  ],
  [
    'exchange-oof-automatic-reply',
    `From: Bob <bob@far.example>\nTo: alice@ours.example\nSubject: Automatic reply: hello\n\nI am away.\n`,
    'auto-reply',
    'exchange-oof',
  ],
  [
    'exchange-oof-localized',
    `From: Bob <bob@far.example>\nTo: alice@ours.example\nSubject: =?iso-8859-1?Q?R=E9ponse_automatique=A0:_hello?=\n\nJe suis absent.\n`,
    'auto-reply',
    'exchange-oof',
  ],
  [
    'lotus-notes-out-of-office',
    `From: John.Smith@far.example\nTo: alice@ours.example\nSubject: AUTO: Smith, John is out of the office. (returning 05/01/2024)\n\nI am out of the office until 05/01/2024.\n\nNote: This is an automated response to your message "hello" sent on 04/01/2024.\n\nThis is the only notification you will receive while this person is away.\n`,
    'auto-reply',
    'lotus-oof',
  ],
  [
    'german-abwesenheitsnotiz',
    `From: Bob <bob@far.example>\nTo: alice@ours.example\nSubject: Abwesenheitsnotiz: hello\n\nIch bin bis Montag nicht im Büro.\n`,
    'auto-reply',
    'exchange-oof',
  ],
  [
    'autoresponder-prefix',
    `From: sales@far.example\nTo: alice@ours.example\nSubject: Auto-Reply: hello\n\nWe got it.\n`,
    'auto-reply',
    'autoresponder',
  ],
  [
    'chinese-autoreply-subject',
    `From: bob@far.example\nTo: alice@ours.example\nSubject: =?UTF-8?B?6Ieq5Yqo5Zue5aSNOiBoZWxsbw==?=\n\nhi\n`,
    'auto-reply',
    'autoresponder',
  ],
  [
    'a-subject-about-auto-replies is normal',
    `From: Carol <carol@far.example>\nTo: alice@ours.example\nSubject: autoreply rules for the team\n\nCan you set them up?\n`,
    'normal',
    null,
  ],
  [
    'a-person-forwarding-a-bounce is normal',
    `Return-Path: <carol@far.example>\nFrom: Carol <carol@far.example>\nTo: helpdesk@ours.example\nSubject: Fwd: Returned mail: see transcript for details\n\n---------- Forwarded message ----------\nThe original message was received at Mon, 1 Jan 2024\n\n   ----- The following addresses had permanent fatal errors -----\n<bob@far.example>\n`,
    'normal',
    null,
  ],
  [
    'a-mailer-daemon-bounce-with-a-fwd-subject is still a bounce',
    `Return-Path: <>\nFrom: MAILER-DAEMON@mx.far.example\nTo: alice@ours.example\nSubject: Fwd: hello\n\nThis is the mail system at host mx.far.example.\n`,
    'dsn',
    'postfix',
  ],
  [
    'reply-to-an-automatic-reply is normal',
    `From: Carol <carol@far.example>\nTo: alice@ours.example\nSubject: Re: Automatic reply: hello\n\nYou are away again?\n`,
    'normal',
    null,
  ],
  [
    'feedback-report is not a notice',
    `From: staff@far.example\nTo: abuse@ours.example\nSubject: Abuse report\nAuto-Submitted: auto-replied\nMIME-Version: 1.0\nContent-Type: multipart/report; report-type=feedback-report; boundary="F"\n\n--F\nContent-Type: text/plain\n\nThis is an email abuse report.\n--F\nContent-Type: message/feedback-report\n\nFeedback-Type: abuse\nUser-Agent: x/1\nVersion: 1\n--F\nContent-Type: message/rfc822\n\n${ORIGINAL}\n--F--\n`,
    'normal',
    'rfc5965',
  ],
];

test('classify: one message per MTA family and auto-reply program (issue 14)', async () => {
  for (const [name, text, cls, fmt] of FAMILY_TABLE) {
    const r = await classify(msg(text));
    assert.equal(r.class, cls, `${name}: ${r.reasons.join('; ')}`);
    assert.equal(r.format, fmt, name);
  }
});

test('the family table: every family has a table row that names it', () => {
  const tested = new Set([...TABLE, ...FAMILY_TABLE].map(([, , , fmt]) => fmt));
  for (const f of new Set(FAMILY_SIGNS.map((x) => x.family))) assert.ok(tested.has(f), `no table row classified as ${f}`);
});

test('the family table: every row has a sign that can fail', () => {
  for (const f of FAMILY_SIGNS) assert.ok(f.text.length > 0 || f.header !== undefined, f.family);
  assert.equal(familyOf('', ''), null);
  assert.equal(familyOf('hello, see you on monday', 'from: carol@far.example'), null);
});

test('family-signs-on-a-1-megabyte-line: every pattern stays linear', () => {
  // Near-misses for each pattern, repeated on one line: a backtracking pattern
  // would take seconds or more here.
  const bits = ['error message below', 'your mail sent on: Mon', '\\"notificationType\\":\\"Bounc', 'MSEXCH:', '(in reply to rcpt', 'did not reach the following recipient', 'the following message to <', 'could not be delivered to', ' '];
  const line = bits.join(' x ').repeat(Math.ceil((1024 * 1024) / bits.join(' x ').length)).slice(0, 1024 * 1024);
  const header = `received: (qmail ${'9'.repeat(5000)} invoked for\nx-mlserver: ${'f'.repeat(100000)}`;
  for (const f of FAMILY_SIGNS) {
    const t0 = performance.now();
    for (const re of f.text) re.test(line);
    f.header?.test(header);
    assert.ok(performance.now() - t0 < 1000, `${f.family}: ${Math.round(performance.now() - t0)} ms on a 1 MB line`);
  }
});

test('classify-a-1-megabyte-line: bounded work, a verdict', async () => {
  const line = 'Your message did not reach the following recipient '.repeat(20_000).slice(0, 1024 * 1024);
  const t0 = performance.now();
  const r = await classify(msg(`From: MAILER-DAEMON@mx.far.example\nSubject: ${'Undeliverable '.repeat(1000)}\n\n${line}\n`));
  assert.ok(performance.now() - t0 < 5000, 'bounded');
  assert.equal(r.class, 'dsn');
});

test('the evaluation corpora in the tree keep their licences beside them, each file small', () => {
  const root = new URL('./corpora/', import.meta.url).pathname;
  const names = readdirSync(root);
  assert.deepEqual(names.sort(), ['bounce-handler', 'mail-mime-parser', 'sisimai']);
  for (const n of names) {
    assert.ok(existsSync(join(root, n, 'LICENSE')), `${n}/LICENSE`);
    const walk = (d: string): string[] => readdirSync(d).flatMap((f) => (statSync(join(d, f)).isDirectory() ? walk(join(d, f)) : [join(d, f)]));
    for (const f of walk(join(root, n))) assert.ok(statSync(f).size < 2 * 1024 * 1024, f);
  }
});

test('dsn-with-bare-cr-line-ends: read with CR as the line end', async () => {
  for (const [name, text, cls, fmt] of TABLE.filter(([n]) => ['qmail', 'exim', 'rfc3464 failure', 'vacation auto-reply'].includes(n))) {
    const r = await classify(Buffer.from(text.replace(/\n/g, '\r')));
    assert.equal(r.class, cls, `${name}: ${r.reasons.join('; ')}`);
    assert.equal(r.format, fmt, name);
  }
  // A CR inside an LF message is left alone.
  const r = await classify(Buffer.from('From: carol@far.example\nSubject: a\rb\n\nhello\n'));
  assert.equal(r.from, 'carol@far.example');
  assert.equal(r.class, 'normal');
});

test('classify-hostile-1-megabyte-lines: near-misses of every phrase table, bounded time', async () => {
  // Each fragment starts a phrase and never completes it; repeated over a
  // megabyte line, a pattern with an unbounded wildcard between two parts
  // turns quadratic (one took 6 s before its wildcards were bounded).
  const fragments = ['-', 'not been able to deliver  for ', 'antigen ', 'virus ', 'permanent error ', 'x-mailer: ', 'click ', 'found the ', 'your mail sent on: ', 'error message below: ', 'warning: ', 'message ', 're: (', 'did not reach ', '<'];
  const envelopes: [string, (body: string) => string][] = [
    ['person', (b) => `From: carol@far.example\nSubject: ${b.slice(0, 200_000)}\n\n${b}\n`],
    ['daemon', (b) => `From: MAILER-DAEMON@mx.far.example\nSubject: Warning: ${b.slice(0, 200_000)}\nPrecedence: bulk\n\n${b}\n`],
    ['report', (b) => `From: MAILER-DAEMON@mx.far.example\nSubject: x\nMIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n--B\nContent-Type: text/plain\n\n${b}\n--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.far.example\n\nFinal-Recipient: rfc822; bob@far.example\n\n--B--\n`],
  ];
  for (const f of fragments) {
    const line = f.repeat(Math.ceil((1024 * 1024) / f.length)).slice(0, 1024 * 1024);
    for (const [name, wrap] of envelopes) {
      const t0 = performance.now();
      await classify(Buffer.from(wrap(line)));
      const ms = performance.now() - t0;
      assert.ok(ms < 1500, `${JSON.stringify(f)} in a ${name} message: ${Math.round(ms)} ms`);
    }
  }
});

test('the in-tree corpora (sisimai, node-bounce-handler, mail-mime-parser): issue 14\'s targets hold', async (t) => {
  // The same rows `npm run eval:classify` counts for these corpora, so a rule
  // change that loses a family fails here, offline, not only in the eval.
  const rows = await treeRows();
  const all = measure(rows);
  const train = measure(rows.filter((r) => r.set === 'train'));
  const held = measure(rows.filter((r) => r.set === 'held-out'));
  t.diagnostic(`bounce-like recall train ${train.tp}/${train.pos}, held-out ${held.tp}/${held.pos}; auto-replies ${all.autoHit}/${all.auto}; normal taken for a notice ${all.falseNormal}/${all.normal}`);
  assert.ok(rows.length > 800, `${rows.length} files read`);
  assert.equal(train.tp, train.pos, `every training bounce: ${rows.filter((r) => r.set === 'train' && r.label !== r.got && (r.label === 'dsn' || r.label === 'delay')).map((r) => r.file).join(', ')}`);
  assert.ok(all.tp >= 0.995 * all.pos, `bounce-like recall ${all.tp}/${all.pos}`);
  assert.equal(all.autoHit, all.auto, 'every RFC 3834 auto-reply');
  assert.equal(all.falseNormal, 0, 'no ordinary message taken for a bounce or notice');
  assert.equal(all.tp, all.predPos, 'nothing taken for a bounce that is not one');
});
