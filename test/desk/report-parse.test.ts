/*
 * Report parsing on real abuse reports (see fixtures/reports/README.md for
 * where each came from) and on hostile ones built here.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { canonicalIp, malwareNames, parseMailDate, parseReport, parseXarfDate } from '../../src/desk/report-parse.ts';

const dir = join(import.meta.dirname, 'fixtures', 'reports');
const fixture = (name: string) => readFileSync(join(dir, name));

interface Expect {
  kind: string;
  ip: string | null;
  at: string | null;
  timeSource: string;
  zoneless: boolean;
  feedbackType: string | null;
  headersInclude?: string;
}

const REAL: [string, Expect][] = [
  ['sisimai-arf-01.eml', { kind: 'arf', ip: '192.0.2.89', at: '2009-04-29T00:00:00.000Z', timeSource: 'arrival-date', zoneless: true, feedbackType: 'abuse', headersInclude: 'Subject: Kijitora cat family' }],
  ['sisimai-arf-15.eml', { kind: 'arf', ip: '192.0.2.222', at: '2015-04-29T23:34:45.000Z', timeSource: 'arrival-date', zoneless: false, feedbackType: 'abuse' }],
  ['sisimai-arf-19.eml', { kind: 'arf', ip: '203.0.113.2', at: '2015-04-29T14:34:45.000Z', timeSource: 'arrival-date', zoneless: false, feedbackType: 'auth-failure', headersInclude: 'Received: from mail.ietf.org (unknown [198.51.100.22])' }],
  ['sisimai-arf-22.eml', { kind: 'free-text', ip: '203.0.113.245', at: '2016-04-29T23:34:45.000Z', timeSource: 'received', zoneless: false, feedbackType: null, headersInclude: 'X-SID-PRA: sironeko@example.com' }],
  ['sisimai-arf-25.eml', { kind: 'arf', ip: '10.0.0.1', at: '2020-10-31T18:02:57.000Z', timeSource: 'arrival-date', zoneless: false, feedbackType: 'abuse' }],
  ['abuseio-comcast-1.eml', { kind: 'arf', ip: '10.17.18.5', at: '2016-01-19T12:42:56.000Z', timeSource: 'arrival-date', zoneless: false, feedbackType: 'abuse', headersInclude: 'Received: from mta15.domain3.tld ([10.17.18.5])' }],
  ['abuseio-spamexperts-1.eml', { kind: 'arf', ip: '172.16.10.13', at: '2015-08-04T08:51:18.000Z', timeSource: 'arrival-date', zoneless: true, feedbackType: 'abuse' }],
  ['abuseio-blocklistde-1.eml', { kind: 'x-arf', ip: '10.0.2.150', at: '2014-01-31T06:19:02.000Z', timeSource: 'x-arf-date', zoneless: false, feedbackType: 'regbot' }],
  ['rfc5965-b1-minimal.eml', { kind: 'arf', ip: '192.0.2.1', at: '2005-03-08T18:00:00.000Z', timeSource: 'received', zoneless: false, feedbackType: 'abuse', headersInclude: 'Message-ID: 8787KJKJ3K4J3K4J3K4J3.mail@example.net' }],
  ['pyxarf-login-attack.eml', { kind: 'x-arf', ip: '83.169.54.26', at: '2014-02-03T01:13:35.000Z', timeSource: 'x-arf-date', zoneless: false, feedbackType: 'login-attack' }],
];

for (const [name, want] of REAL) {
  test(`real report ${name}`, async () => {
    const r = await parseReport(fixture(name));
    assert.equal(r.kind, want.kind);
    assert.equal(r.ip, want.ip);
    assert.equal(r.observedAt?.toISOString() ?? null, want.at);
    assert.equal(r.timeSource, want.timeSource);
    assert.equal(r.zoneless, want.zoneless);
    assert.equal(r.feedbackType, want.feedbackType);
    if (want.headersInclude) assert.ok(r.headers?.includes(want.headersInclude), r.headers ?? 'no headers');
    assert.ok(r.summary.length > 10 && r.summary.length < 400);
  });
}

test('the header block never carries the attached body', async () => {
  const comcast = await parseReport(fixture('abuseio-comcast-1.eml'));
  assert.ok(comcast.headers);
  // The original's text/html alternative is in the fixture's body; none of it may come back.
  assert.ok(fixture('abuseio-comcast-1.eml').toString().includes('<html') || fixture('abuseio-comcast-1.eml').toString().includes('<HTML'));
  assert.doesNotMatch(comcast.headers, /<html|<body|Content-Type: text\/html/i);
  const arf01 = await parseReport(fixture('sisimai-arf-01.eml'));
  assert.doesNotMatch(arf01.headers ?? '', /^test$/m);
  for (const line of (arf01.headers ?? '').split('\r\n').filter(Boolean)) assert.match(line, /^([\x21-\x39\x3b-\x7e]+:|[ \t])/);
});

test('the summary is ours: no reporter prose, address or URLs', async () => {
  const r = await parseReport(fixture('abuseio-blocklistde-1.eml'));
  assert.doesNotMatch(r.summary, /blocklist|http|@/i);
  const f = await parseReport(fixture('sisimai-arf-22.eml'));
  assert.doesNotMatch(f.summary, /hotmail|@/i);
});

test('a per-IP alias names the IP: its Received line sets the time', async () => {
  // sisimai-arf-22 (Hotmail complaint): the attached message's Received line names 203.0.113.245.
  const r = await parseReport(fixture('sisimai-arf-22.eml'), { targetIp: '203.0.113.245' });
  assert.equal(r.ip, '203.0.113.245');
  assert.equal(r.timeSource, 'received');
  // An alias for another address: no Received line names it, the attached Date (+0200) is used.
  const other = await parseReport(fixture('sisimai-arf-22.eml'), { targetIp: '192.0.2.7' });
  assert.equal(other.ip, '192.0.2.7');
  assert.equal(other.timeSource, 'attached-date');
  assert.equal(other.observedAt?.toISOString(), '2016-04-29T21:34:45.000Z');
});

const CRLF = '\r\n';
function mail(lines: string[]): string {
  return lines.join(CRLF);
}

test('free text with attached headers: Received naming the IP wins over the attached Date, which wins over the report Date', async () => {
  const base = (received: string, date: string | null) =>
    mail([
      'From: someone@reporter.example', 'To: abuse@abuse.example.net', 'Subject: spam from your network', 'Date: Mon, 2 Mar 2026 10:00:00 +0000', 'MIME-Version: 1.0',
      'Content-Type: multipart/mixed; boundary="b"', '', '--b', 'Content-Type: text/plain', '', 'Your customer spammed us. The virus Worm.Mydoom.A was attached.', '',
      '--b', 'Content-Type: text/rfc822-headers', '',
      received,
      'From: x@y.example', ...(date ? [`Date: ${date}`] : []), 'Subject: buy', '', '--b--', '',
    ]);
  const withReceived = await parseReport(base('Received: from pc7.isp.example (pc7.isp.example [192.0.2.7])\r\n\tby mx.reporter.example; Mon, 2 Mar 2026 09:13:14 +0100', 'Mon, 2 Mar 2026 08:00:00 +0000'), { targetIp: '192.0.2.7' });
  assert.equal(withReceived.kind, 'free-text');
  assert.equal(withReceived.timeSource, 'received');
  assert.equal(withReceived.observedAt?.toISOString(), '2026-03-02T08:13:14.000Z');
  assert.deepEqual(withReceived.malware, ['Worm.Mydoom.A']);
  const otherIp = await parseReport(base('Received: from a (a [198.51.100.1]) by b; Mon, 2 Mar 2026 09:13:14 +0100', 'Mon, 2 Mar 2026 08:00:00'), { targetIp: '192.0.2.7' });
  assert.equal(otherIp.timeSource, 'attached-date');
  assert.equal(otherIp.zoneless, true, 'a Date without a zone is zoneless');
  const none = await parseReport(base('X-Nothing: here', null), { targetIp: '192.0.2.7' });
  assert.equal(none.timeSource, 'report-date');
  assert.equal(none.observedAt?.toISOString(), '2026-03-02T10:00:00.000Z');
});

test('ARF Source-Port (RFC 6692) and a virus named in the report', async () => {
  const raw = mail([
    'From: reports@mx.example.org', 'To: abuse@abuse.example.net', 'Subject: abuse report', 'Date: Mon, 26 Jan 2004 13:15:00 +0000', 'MIME-Version: 1.0',
    'Content-Type: multipart/report; report-type=feedback-report; boundary="x"', '', '--x', 'Content-Type: text/plain', '',
    'Our mail gateway received mail from 192.0.2.7 that carried the virus Worm.Mydoom.A (found by clamd).', '', '--x', 'Content-Type: message/feedback-report', '',
    'Feedback-Type: virus', 'User-Agent: Backstop/0.1.0', 'Version: 1', 'Arrival-Date: Mon, 26 Jan 2004 13:00:05 +0000', 'Source-IP: 192.0.2.7', 'Source-Port: 40123', '',
    '--x', 'Content-Type: text/rfc822-headers', '', 'Received: from home-pc ([192.0.2.7])', 'Subject: hi', '', '--x--', '',
  ]);
  const r = await parseReport(raw);
  assert.equal(r.kind, 'arf');
  assert.equal(r.port, 40123);
  assert.equal(r.feedbackType, 'virus');
  assert.deepEqual(r.malware, ['Worm.Mydoom.A']);
  assert.match(r.summary, /Worm\.Mydoom\.A/);
});

// ── hostile ──────────────────────────────────────────────────────────────

test('hostile: garbage, empty, binary and truncated input give a report with nothing in it, never a throw', async () => {
  for (const raw of ['', '\0\0\0', 'not a mail at all', Buffer.from([0xff, 0xfe, 0x00, 0x41]), 'Content-Type: multipart/report; report-type=feedback-report; boundary="x"\r\n\r\n--x\r\nContent-Type: message/feedback-report\r\n\r\nSource-IP: 1']) {
    const r = await parseReport(raw);
    assert.equal(r.ip, null);
    assert.ok(['arf', 'free-text'].includes(r.kind));
  }
});

test('hostile: Source-IP values that are not one address are refused', async () => {
  for (const v of ['010.0.0.1', '192.0.2.256', '0xc0.0.2.7', '3221225991', '192.0.2.7, 198.51.100.1', '192.0.2.7\u0000', 'fe80::1%eth0', '<script>', '1.2.3', '::ffff:192.0.2.7']) {
    const raw = mail(['Content-Type: multipart/report; report-type=feedback-report; boundary="x"', '', '--x', 'Content-Type: message/feedback-report', '', 'Feedback-Type: abuse', `Source-IP: ${v}`, '', '--x--', '']);
    const r = await parseReport(raw);
    if (v === '::ffff:192.0.2.7') assert.equal(r.ip, '192.0.2.7', 'a mapped address is its IPv4');
    else assert.equal(r.ip, null, v);
  }
});

test('hostile: header injection in fields stays inside the summary as text, no CR/LF', async () => {
  const raw = mail([
    'Content-Type: multipart/report; report-type=feedback-report; boundary="x"', '', '--x', 'Content-Type: message/feedback-report', '',
    'Feedback-Type: abuse\u0007<b>x</b>', 'Reported-Domain: evil.example\u0000Bcc: victim@example.org', 'Source-IP: 192.0.2.7', '', '--x--', '',
  ]);
  const r = await parseReport(raw);
  assert.equal(r.feedbackType, 'abuse');
  assert.doesNotMatch(r.summary, /[\r\n\0\x07]/);
});

test('hostile: X-ARF YAML is read as lines, never executed; anchors, tags and huge values do nothing', async () => {
  const raw = mail([
    'X-XARF: PLAIN', 'Content-Type: multipart/mixed; boundary="b"', '', '--b', 'Content-Type: text/plain', '', 'hello', '--b', 'Content-Type: text/plain', '',
    'Source: !!js/function "function(){return 1}"', 'Source-Type: ip-address', 'Date: &a ' + 'x'.repeat(5000), 'Report-Type: *a', '--b--', '',
  ]);
  const r = await parseReport(raw, { targetIp: '192.0.2.7' });
  assert.equal(r.kind, 'x-arf');
  assert.equal(r.ip, '192.0.2.7', 'the alias IP stands when the report names none');
  assert.notEqual(r.timeSource, 'x-arf-date');
});

test('hostile: Received lines that only mention the IP outside the from clause do not set the time', async () => {
  const raw = mail([
    'Date: Mon, 2 Mar 2026 10:00:00 +0000', 'Content-Type: multipart/mixed; boundary="b"', '', '--b', 'Content-Type: text/plain', '', 'spam', '',
    '--b', 'Content-Type: text/rfc822-headers', '', 'Received: from a.example (a.example [198.51.100.1]) by b.example (192.0.2.7); Sun, 1 Mar 2026 00:00:00 +0000', 'Subject: x', '', '--b--', '',
  ]);
  const r = await parseReport(raw, { targetIp: '192.0.2.7' });
  assert.notEqual(r.timeSource, 'received');
});

test('hostile: deep nesting and a huge header block are bounded', async () => {
  let nested = 'Subject: inner\r\n\r\nbody\r\n';
  for (let i = 0; i < 200; i++) nested = `Content-Type: message/rfc822\r\n\r\n${nested}`;
  const r = await parseReport(`Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n${nested}--b--\r\n`);
  assert.ok(r);
  const big = mail(['Content-Type: multipart/mixed; boundary="b"', '', '--b', 'Content-Type: text/rfc822-headers', '', ...Array.from({ length: 20000 }, (_, i) => `X-Junk-${i}: ${'y'.repeat(20)}`), '', '--b--', '']);
  const r2 = await parseReport(big);
  assert.ok((r2.headers?.length ?? 0) <= 64 * 1024 + 2);
});

// ── pieces ───────────────────────────────────────────────────────────────

test('dates: zones, obsolete names, -0000 and missing zones', () => {
  const cases: [string, string | null, boolean][] = [
    ['Thu, 29 Apr 2015 23:34:45 +0900', '2015-04-29T14:34:45.000Z', false],
    ['Thu, 29 Apr 2015 23:34:45 +0900 (JST)', '2015-04-29T14:34:45.000Z', false],
    ['29 Apr 2013 23:45:50 PST', '2013-04-30T07:45:50.000Z', false],
    ['Thu, 9 Apr 2006 23:34:45 JST', '2006-04-09T23:34:45.000Z', true],
    ['Thu, 29 Apr 2009 00:00:00 -0000 (EST)', '2009-04-29T00:00:00.000Z', true],
    ['Thu, 29 Apr 2009 00:00:00', '2009-04-29T00:00:00.000Z', true],
    ['2026-03-02T09:13:14Z', '2026-03-02T09:13:14.000Z', false],
    ['2026-03-02T09:13:14+01:00', '2026-03-02T08:13:14.000Z', false],
    ['2026-03-02 09:13:14', '2026-03-02T09:13:14.000Z', true],
    ['Thu, 29 Foo 2009 00:00:00 +0000', null, false],
    ['Thu, 32 Apr 2009 00:00:00 +0000', null, false],
    ['Thu, 29 Apr 2009 00:00:00 +9999', null, false],
    ['yesterday', null, false],
  ];
  for (const [input, iso, zoneless] of cases) {
    const d = parseMailDate(input);
    assert.equal(d?.at.toISOString() ?? null, iso, input);
    if (d) assert.equal(d.zoneless, zoneless, input);
  }
  assert.equal(parseXarfDate('Feb  3 2014 02:13:35 +0100')?.at.toISOString(), '2014-02-03T01:13:35.000Z');
  assert.equal(parseXarfDate("'2014-02-03T01:13:35Z'")?.at.toISOString(), '2014-02-03T01:13:35.000Z');
});

test('canonicalIp and malwareNames', () => {
  assert.equal(canonicalIp('[2001:DB8::1]'), '2001:db8::1');
  assert.equal(canonicalIp('IPv6:2001:db8:0::1'), '2001:db8::1');
  assert.equal(canonicalIp('01.2.3.4'), null);
  assert.deepEqual(malwareNames(['Virus: Win.Trojan.Agent-123', 'infected with W32/Netsky.P@mm', 'the virus was found']), ['Win.Trojan.Agent-123', 'W32/Netsky.P']);
});

test('X-ARF 4 JSON (xarf-spec sample): as an application/json attachment, and as the second part of an X-XARF mail', async () => {
  const json = readFileSync(join(dir, 'xarf4-connection-login-attack.json'), 'utf8');
  const attached = mail([
    'From: honeypot@reporter.example', 'To: abuse@abuse.example.net', 'Subject: abuse report', 'Date: Sat, 11 Jan 2025 13:00:00 +0000', 'MIME-Version: 1.0',
    'Content-Type: multipart/mixed; boundary="b"', '', '--b', 'Content-Type: text/plain', '', 'See the attached report.', '',
    '--b', 'Content-Type: application/json; name="xarf.json"', 'Content-Disposition: attachment; filename="xarf.json"', 'Content-Transfer-Encoding: base64', '',
    Buffer.from(json).toString('base64').replace(/(.{76})/g, '$1\r\n'), '--b--', '',
  ]);
  const a = await parseReport(attached);
  assert.equal(a.kind, 'x-arf');
  assert.equal(a.ip, '198.51.100.77');
  assert.equal(a.port, 45621, "X-ARF 4's source_port is the source's own port");
  assert.equal(a.observedAt?.toISOString(), '2025-01-11T12:17:20.000Z');
  assert.equal(a.timeSource, 'x-arf-date');
  assert.equal(a.zoneless, false);
  assert.equal(a.feedbackType, 'login_attack');
  assert.doesNotMatch(a.summary, /sshsecurity|honeypot@/i, 'the reporter block stays out of the summary');

  const inline = mail(['X-XARF: PLAIN', 'Content-Type: multipart/mixed; boundary="b"', '', '--b', 'Content-Type: text/plain', '', 'hello', '--b', 'Content-Type: application/json', '', json, '--b--', '']);
  const b = await parseReport(inline, { targetIp: '198.51.100.77' });
  assert.equal(b.kind, 'x-arf');
  assert.equal(b.ip, '198.51.100.77');
  assert.equal(b.port, 45621);

  // An alias for another address: the report's port is not about it.
  const other = await parseReport(inline, { targetIp: '192.0.2.7' });
  assert.equal(other.ip, '198.51.100.77');
  assert.equal(other.port, 45621);
  // X-ARF 0.2's Port is the attacked service's: never taken as the source port.
  const v02 = await parseReport(fixture('abuseio-blocklistde-1.eml'));
  assert.equal(v02.port, null);
});

test('hostile: JSON that is not an X-ARF report, or is huge or nested, names nothing', async () => {
  for (const body of ['{"a":', '[1,2,3]', '{"source": {"nested": "192.0.2.7"}}', `{"xarf_version":"4","source_identifier":"${'9'.repeat(300000)}"}`]) {
    const raw = mail(['Content-Type: multipart/mixed; boundary="b"', '', '--b', 'Content-Type: text/plain', '', 'x', '--b', 'Content-Type: application/json', 'Content-Disposition: attachment', '', body, '--b--', '']);
    const r = await parseReport(raw);
    assert.equal(r.ip, null, body.slice(0, 40));
  }
});

test('IPv6 and qmail-style Received lines name the alias address', async () => {
  const raw = (received: string) =>
    mail(['Date: Mon, 2 Mar 2026 10:00:00 +0000', 'Content-Type: multipart/mixed; boundary="b"', '', '--b', 'Content-Type: text/plain', '', 'spam', '', '--b', 'Content-Type: message/rfc822', '', received, 'Date: Mon, 2 Mar 2026 08:00:00 +0000', 'Subject: x', '', 'body', '--b--', '']);
  const v6 = await parseReport(raw('Received: from pc.example (pc.example [IPv6:2001:DB8:0:0::7]) by mx.reporter.example; Mon, 2 Mar 2026 09:13:14 +0100'), { targetIp: '2001:db8::7' });
  assert.equal(v6.ip, '2001:db8::7');
  assert.equal(v6.timeSource, 'received');
  assert.equal(v6.observedAt?.toISOString(), '2026-03-02T08:13:14.000Z');
  const qmail = await parseReport(raw('Received: from unknown (HELO pc) (192.0.2.7)\r\n  by mx.reporter.example with SMTP; 2 Mar 2026 09:13:14 -0000'), { targetIp: '192.0.2.7' });
  assert.equal(qmail.timeSource, 'received');
  assert.equal(qmail.zoneless, true, '-0000: the time is UTC, the zone unknown');
});
