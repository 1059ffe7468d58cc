/*
 * ARF reports read back by an independent parser: Python's `email` package,
 * not our code. Field by field, and no part of the original body.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { composeArf, feedbackFields, isFeedbackReport, rfc5322Date, type ArfReport } from '../../src/notify/arf.ts';
import type { Detection } from '../../src/notify/notice.ts';
import { version } from '../../src/version.ts';

function detection(overrides: Partial<Detection> = {}): Detection {
  return {
    id: randomUUID(), receivedAt: '2004-01-26T13:00:05.000Z', verdict: 'infected', detail: 'Worm.Mydoom.A', engine: 'clamd',
    clientIp: '198.51.100.7', clientPort: 40123, helo: 'home-pc', mailFrom: 'forged@example.org', rcptTo: ['alice@example.net', 'bob@example.net'],
    messageId: '<m1@example.org>', action: 'reject', quarantineId: null,
    headers: 'Received: from home-pc ([198.51.100.7])\r\nFrom: forged@example.org\r\nTo: alice@example.net\r\nSubject: hi\r\nMessage-ID: <m1@example.org>\r\n\r\nTHE-WORM-BODY UEsDBBQ\r\n',
    ...overrides,
  };
}

function report(overrides: Partial<ArfReport> = {}, d: Partial<Detection> = {}): ArfReport {
  return {
    detection: detection(d), incidents: 42, firstSeen: new Date('2004-01-26T13:00:05Z'), lastSeen: new Date('2004-01-26T13:14:00Z'), windowMs: 86_400_000,
    feedbackType: 'virus', to: 'abuse@isp.example', from: 'backstop@example.net', hostname: 'mx.example.net',
    reportId: 'r-1', contactSource: 'RDAP https://rdap.example/ip/198.51.100.7', now: new Date('2004-01-26T13:15:00Z'),
    ...overrides,
  };
}

interface Parsed {
  contentType: string; reportType: string; subject: string; to: string; from: string; autoSubmitted: string; messageId: string;
  types: string[]; text: string; fields: Record<string, string[]>; headersPart: string; defects: string[]; topHeaders: string[];
}

/** Python's email package reads the report; message/feedback-report parts come back as a header block. */
function pythonRead(raw: Buffer): Parsed {
  const script = `
import sys, json, email
from email import policy
m = email.message_from_bytes(sys.stdin.buffer.read(), policy=policy.default)
parts = list(m.walk())
kids = m.get_payload()
fr = kids[1]
inner = fr.get_payload()[0] if fr.is_multipart() else email.message_from_string(fr.get_payload(), policy=policy.default)
fields = {}
for k, v in inner.items():
    fields.setdefault(k.lower(), []).append(str(v))
hp = kids[2]
print(json.dumps({'contentType': m.get_content_type(), 'reportType': m.get_param('report-type'),
  'subject': str(m['subject']), 'to': str(m['to']), 'from': str(m['from']), 'autoSubmitted': str(m['auto-submitted']),
  'messageId': str(m['message-id']), 'types': [p.get_content_type() for p in kids],
  'text': kids[0].get_content(), 'fields': fields,
  'headersPart': hp.get_payload(decode=True).decode('utf-8', 'replace'),
  'defects': [type(d).__name__ for p in parts for d in p.defects], 'topHeaders': [k.lower() for k in m.keys()]}))
`;
  return JSON.parse(execFileSync('python3', ['-c', script], { input: raw }).toString());
}

test('an ARF report is multipart/report; report-type=feedback-report with the three parts in order', async () => {
  const m = pythonRead(await composeArf(report()));
  assert.equal(m.contentType, 'multipart/report');
  assert.equal(m.reportType, 'feedback-report');
  assert.deepEqual(m.types, ['text/plain', 'message/feedback-report', 'text/rfc822-headers']);
  assert.deepEqual(m.defects, []);
  assert.equal(m.to, 'abuse@isp.example');
  assert.equal(m.from, 'backstop@example.net');
  assert.equal(m.autoSubmitted, 'auto-generated');
  assert.equal(m.messageId, '<arf-r-1@mx.example.net>');
  assert.equal(m.subject, 'possible virus found: Worm.Mydoom.A (abuse report for 198.51.100.7)');
});

test('the feedback-report part carries every field RFC 5965 §3 asks for and RFC 6692 Source-Port, read by Python', async () => {
  const m = pythonRead(await composeArf(report()));
  assert.deepEqual(m.fields, {
    'feedback-type': ['virus'],
    'user-agent': [`Backstop/${version}`],
    version: ['1'],
    'original-mail-from': ['<forged@example.org>'],
    'original-rcpt-to': ['<alice@example.net>', '<bob@example.net>'],
    'arrival-date': ['Mon, 26 Jan 2004 13:00:05 +0000'],
    'reporting-mta': ['dns; mx.example.net'],
    'source-ip': ['198.51.100.7'],
    'source-port': ['40123'],
    incidents: ['42'],
  });
});

test('Feedback-Type follows the destination (many desks only take "abuse")', async () => {
  assert.deepEqual(pythonRead(await composeArf(report({ feedbackType: 'abuse' }))).fields['feedback-type'], ['abuse']);
});

test('the human-readable part names the virus, the window, the contact source and the opt-out', async () => {
  const { text } = pythonRead(await composeArf(report()));
  assert.match(text, /carried the virus Worm\.Mydoom\.A \(found by clamd\)/);
  assert.match(text, /42 time\(s\) between 2004-01-26T13:00:05\.000Z and 2004-01-26T13:14:00\.000Z/);
  assert.match(text, /RDAP https:\/\/rdap\.example\/ip\/198\.51\.100\.7 names you as the abuse contact/);
  assert.match(text, /At most one report per address is sent in a day/);
  assert.match(text, /To stop these reports, reply to backstop@example\.net/);
});

test('the entire original header block rides along, and no part of the body', async () => {
  const raw = await composeArf(report());
  const m = pythonRead(raw);
  assert.equal(m.headersPart, 'Received: from home-pc ([198.51.100.7])\r\nFrom: forged@example.org\r\nTo: alice@example.net\r\nSubject: hi\r\nMessage-ID: <m1@example.org>\r\n');
  assert.doesNotMatch(raw.toString('latin1'), /THE-WORM-BODY|UEsDBBQ/);
});

test('a header block with 8-bit text and long lines arrives intact through the transfer encoding', async () => {
  const headers = `Subject: Grüße ${'x'.repeat(1200)}\r\nFrom: a@example.org`;
  const m = pythonRead(await composeArf(report({}, { headers })));
  assert.equal(m.headersPart, `${headers}\r\n`);
});

const hostile: [string, Partial<Detection>][] = [
  ['CRLF and a Bcc in the malware name', { detail: 'Worm.X\r\nBcc: victim@example.org' }],
  ['CRLF in the envelope sender', { mailFrom: 'a@example.org>\r\nIncidents: 999999\r\nX: <b' }],
  ['a report field smuggled in a recipient', { rcptTo: ['x@example.net\nSource-IP: 10.0.0.1'] }],
  ['RTL override in the HELO', { helo: 'pc\u202Eexe.txt' }],
  ['a 10 kB malware name', { detail: 'W'.repeat(10_000) }],
  ['a 10 kB sender', { mailFrom: `${'s'.repeat(10_000)}@example.org` }],
];
for (const [name, d] of hostile) {
  test(`hostile values cannot inject headers or report fields: ${name}`, async () => {
    const raw = await composeArf(report({}, d));
    const m = pythonRead(raw);
    assert.deepEqual(m.defects, []);
    assert.doesNotMatch(raw.toString('latin1'), /^(Bcc|X):/im);
    assert.deepEqual(m.fields['incidents'], ['42']);
    assert.deepEqual(m.fields['source-ip'], ['198.51.100.7']);
    assert.equal(m.fields['original-mail-from']!.length, 1);
    assert.ok(!m.topHeaders.includes('bcc'));
    assert.ok(m.subject.length <= 200, 'subject bounded');
    assert.doesNotMatch(m.text + m.subject, /\u202E/);
    for (const line of raw.toString('latin1').split('\r\n')) assert.ok(line.length <= 998, 'RFC 5322 §2.1.1 line limit');
  });
}

test('the report fields are US-ASCII even when the envelope was not', () => {
  const fields = feedbackFields(report({}, { mailFrom: 'jörg@exämple.org' }));
  assert.match(fields, /^Original-Mail-From: <j\?rg@ex\?mple\.org>\r$/m);
  assert.match(fields, /^[\x00-\x7f]*$/);
});

test('rfc5322Date uses a numeric zone', () => {
  assert.equal(rfc5322Date(new Date('2004-03-08T15:15:47Z')), 'Mon, 08 Mar 2004 15:15:47 +0000');
});

test('a feedback report is recognised so it is never reported itself', async () => {
  const ours = (await composeArf(report())).toString('latin1');
  assert.equal(isFeedbackReport(ours), true);
  assert.equal(isFeedbackReport('Subject: x\r\nContent-Type: multipart/report;\r\n\treport-type="feedback-report"; boundary=b\r\n'), true);
  assert.equal(isFeedbackReport('Content-Type: MULTIPART/REPORT; Report-Type=Feedback-Report\r\n'), true);
  assert.equal(isFeedbackReport('Content-Type: multipart/report; report-type=delivery-status\r\n'), false);
  assert.equal(isFeedbackReport('Content-Type: multipart/mixed\r\n\r\nContent-Type: multipart/report; report-type=feedback-report\r\n'), false, 'only the header block counts');
});
