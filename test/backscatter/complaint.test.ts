/*
 * Complaints to bouncing MTAs (R7): who bounced (table), who gets the letter
 * (table), the letter read back by Python's email package, the 7-day slot
 * on both stores (also under concurrent claims), and the two jobs end to end
 * through smtp-sink as the relay.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { bouncerOrganisation, claimComplaint, complaintHandlers, complaintRecipients, composeComplaint, COMPLAINT_JOB, type ComplaintLetter } from '../../src/backscatter/complaint.ts';
import { BOUNCER_JOB, complaintEligible } from '../../src/backscatter/hooks.ts';
import { parseConfig } from '../../src/config/load.ts';
import { startSmtpSink } from '../../src/replay/processes.ts';
import { setState } from '../../src/store/jobs.ts';
import { openStore } from '../../src/store/store.ts';
import { openTestStore, STORE_KINDS } from '../helpers/pg.ts';

test('bouncerOrganisation: the FCrDNS name decides, HELO or Reporting-MTA must agree, peer text alone never names a domain', () => {
  const cases = [
    { rev: 'mx1.far.example', helo: 'mx1.far.example', rep: null, want: ['far.example', 'far.example'] },
    { rev: 'mail.bigisp.co.uk', helo: 'localhost', rep: 'relay3.bigisp.co.uk', want: ['bigisp.co.uk', 'bigisp.co.uk'] },
    { rev: 'mx.far.example', helo: 'mx.victim.example', rep: 'mx.victim.example', want: ['ip:192.0.2.7', null] },
    { rev: null, helo: 'mx.far.example', rep: 'mx.far.example', want: ['ip:192.0.2.7', null] },
    { rev: 'mx.far.example.', helo: '[192.0.2.7]', rep: 'MX.FAR.EXAMPLE', want: ['far.example', 'far.example'] },
    { rev: '7.2.0.192.in-addr.example', helo: '192.0.2.7', rep: null, want: ['ip:192.0.2.7', null] },
  ];
  for (const c of cases) {
    const o = bouncerOrganisation({ clientIp: '192.0.2.7', reverseName: c.rev, helo: c.helo, reportingMta: c.rep });
    assert.deepEqual([o.key, o.domain], c.want, JSON.stringify(c));
  }
});

test('complaintRecipients and complaintEligible (tables)', () => {
  assert.deepEqual(complaintRecipients({ key: 'far.example', domain: 'far.example', basis: '' }, 'Abuse@Far.Example'), ['postmaster@far.example', 'abuse@far.example']);
  assert.deepEqual(complaintRecipients({ key: 'far.example', domain: 'far.example', basis: '' }, 'noc@transit.example'), ['postmaster@far.example', 'abuse@far.example', 'noc@transit.example']);
  assert.deepEqual(complaintRecipients({ key: 'ip:192.0.2.7', domain: null, basis: '' }, null), []);
  assert.deepEqual(complaintRecipients({ key: 'ip:192.0.2.7', domain: null, basis: '' }, 'bad address@x'), []);
  const table: [string, boolean, string, boolean][] = [
    ['av-notice', false, 'backscatter', true],
    ['dsn', true, 'backscatter', true],
    ['dsn', false, 'backscatter', false],
    ['av-notice', true, 'ours', false],
    ['delay', true, 'backscatter', false],
    ['challenge', false, 'backscatter', false],
  ];
  for (const [cls, virus, verdict, want] of table) assert.equal(complaintEligible({ class: cls as 'dsn', mentionsVirus: virus }, verdict as 'ours'), want, `${cls} ${virus} ${verdict}`);
});

const BOUNCE_HEADERS = 'Received: from mx.far.example ([192.0.2.7]) by mx.example.net\r\nFrom: NAV for Microsoft Exchange <nav@far.example>\r\nTo: alice@example.net\r\nSubject: Norton AntiVirus detected a virus\r\n\r\nTHE-WORM-BODY UEsDBBQ Virus W32.Novarg.A@mm was found.\r\n';

function letter(over: Partial<ComplaintLetter> = {}): ComplaintLetter {
  return {
    organisation: 'far.example', basis: 'fcrdns', to: ['postmaster@far.example', 'abuse@far.example'], clientIp: '192.0.2.7', reverseName: 'mx.far.example',
    helo: 'mx.far.example\r\nBcc: victim@example.org', reportingMta: null, virusName: 'W32.Novarg.A@mm', count: 17, firstSeen: '2004-01-26T13:00:00.000Z', headers: BOUNCE_HEADERS,
    from: 'backscatter-desk@example.net', hostname: 'mx.example.net', languages: ['en', 'de'], texts: {}, letterId: 'job-1', now: new Date('2004-01-26T14:00:00Z'),
    ...over,
  };
}

function pythonRead(raw: Buffer) {
  const script = `
import sys, json, email
from email import policy
m = email.message_from_bytes(sys.stdin.buffer.read(), policy=policy.default)
kids = m.get_payload()
print(json.dumps({'type': m.get_content_type(), 'from': str(m['from']), 'to': str(m['to']), 'subject': str(m['subject']),
  'autoSubmitted': str(m['auto-submitted']), 'messageId': str(m['message-id']), 'bcc': m['bcc'], 'keys': [k.lower() for k in m.keys()],
  'types': [p.get_content_type() for p in kids], 'text': kids[0].get_content(),
  'headersPart': kids[1].get_payload(decode=True).decode('utf-8', 'replace'),
  'defects': [type(d).__name__ for p in m.walk() for d in p.defects]}))
`;
  return JSON.parse(execFileSync('python3', ['-c', script], { input: raw }).toString()) as Record<string, unknown> & { text: string; headersPart: string; types: string[]; keys: string[] };
}

test('the complaint letter, read by Python: text in every language, the bounce’s headers only, nothing injected', async () => {
  const m = pythonRead(await composeComplaint(letter()));
  assert.equal(m.type, 'multipart/mixed');
  assert.deepEqual(m.types, ['text/plain', 'text/rfc822-headers']);
  assert.deepEqual(m.defects, []);
  assert.equal(m.from, 'backscatter-desk@example.net');
  assert.equal(m.to, 'postmaster@far.example, abuse@far.example');
  assert.equal(m.autoSubmitted, 'auto-generated');
  assert.equal(m.messageId, '<complaint-job-1@mx.example.net>');
  assert.equal(m.subject, 'Your mail server 192.0.2.7 sends bounces and virus notices to forged senders');
  assert.equal(m.bcc, null, 'a CRLF in the HELO must not add a header');
  assert.ok(!m.keys.includes('bcc'));
  // Why it harms and what to do instead, in English and German.
  for (const phrase of ['worms forge the sender', 'double bounces', 'reject infected mail in the SMTP session', 'log the message and discard it', 'quarantine it and tell your own postmaster', 'Never strip the attachment', 'Würmer fälschen den Absender', 'Doppel-Bounces', 'in der SMTP-Sitzung ablehnen']) {
    assert.ok(m.text.includes(phrase), phrase);
  }
  assert.match(m.text, /it sent us\r?\n17 bounce/);
  assert.match(m.text, /HELO mx\.far\.example\?\?Bcc: victim@example\.org/);
  // The headers part is the header block: the worm's body never rides along.
  assert.match(m.headersPart, /^Received: from mx\.far\.example/);
  assert.match(m.headersPart, /Subject: Norton AntiVirus detected a virus/);
  assert.doesNotMatch(m.headersPart, /THE-WORM-BODY|UEsDBBQ/);
  assert.doesNotMatch(m.text, /THE-WORM-BODY|UEsDBBQ/);
});

test('the letter’s texts are configuration: a language replaced, an unknown one skipped', async () => {
  const m = pythonRead(await composeComplaint(letter({ languages: ['fr', 'de'], texts: { fr: { subject: 'Votre serveur {ip}', body: 'Bonjour {organisation}, {count} messages.' } } })));
  assert.equal(m.subject, 'Votre serveur 192.0.2.7');
  assert.match(m.text, /^Bonjour far\.example, 17 messages\./);
  assert.match(m.text, /Sehr geehrte Postmaster/);
  assert.doesNotMatch(m.text, /Dear postmaster/);
  const onlyUnknown = pythonRead(await composeComplaint(letter({ languages: ['xx'] })));
  assert.match(onlyUnknown.text, /^Dear postmaster/);
});

for (const kind of STORE_KINDS) {
  test(`the 7-day slot per organisation (${kind}): one claim wins, even at once, and the slot opens again after 7 days`, async () => {
    const { store, close } = await openTestStore(kind, 'bs_complaint');
    try {
      const t0 = new Date('2004-01-26T13:00:00Z');
      const claims = await Promise.all(Array.from({ length: 8 }, () => claimComplaint(store.db, 'far.example', t0)));
      assert.equal(claims.filter(Boolean).length, 1, 'eight claims in the same millisecond: exactly one wins');
      assert.equal(await claimComplaint(store.db, 'far.example', new Date(t0.getTime() + 1000)), false);
      assert.equal(await claimComplaint(store.db, 'far.example', new Date(t0.getTime() + 6 * 86_400_000)), false);
      assert.equal(await claimComplaint(store.db, 'other.example', new Date(t0.getTime() + 1000)), true);
      assert.equal(await claimComplaint(store.db, 'far.example', new Date(t0.getTime() + 7 * 86_400_000)), true);
      const row = await store.db.selectFrom('backscatter_complaints').selectAll().where('organisation', '=', 'far.example').executeTakeFirstOrThrow();
      assert.equal(row.bounces_seen, 11);
    } finally {
      await close();
    }
  });
}

test('the jobs: bouncer finds the organisation and queues one letter for review; approved, it goes out through the relay to every recipient', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bs-complaint-'));
  const sink = await startSmtpSink(join(dir, 'sink'));
  const store = await openStore('pglite-memory:');
  try {
    const config = parseConfig({
      domains: ['example.net'], store: 'pglite-memory:', dataDir: join(dir, 'data'), smtp: { hostname: 'mx.example.net' },
      notify: { relay: `smtp://127.0.0.1:${sink.port}`, from: 'backstop@example.net', postmaster: 'postmaster@example.net' },
      abuse: { overrides: [{ cidr: '192.0.2.0/24', contact: 'abuse@transit.example' }], rdap: { enabled: false }, dns: { zone: '' } },
      backscatter: { mode: 'enforce', complaints: { from: 'backscatter-desk@example.net' } },
    });
    const outcomes: string[] = [];
    const handlers = complaintHandlers({
      db: store.db, config, sources: {}, reverse: async (ip) => (ip === '192.0.2.7' || ip === '192.0.2.8' ? 'mx.far.example' : null),
      onOutcome: (what) => outcomes.push(what),
    });
    const job = (id: string) => ({ id }) as never;
    const payload = (ip: string) => ({ clientIp: ip, helo: 'mx.far.example', reportingMta: null, class: 'av-notice', virusName: 'W32.Novarg.A@mm', headers: BOUNCE_HEADERS, receivedAt: '2004-01-26T13:00:00.000Z' });
    await handlers[BOUNCER_JOB]!(payload('192.0.2.7'), job('b1'));
    await handlers[BOUNCER_JOB]!(payload('192.0.2.8'), job('b2')); // same organisation, another address
    await handlers[BOUNCER_JOB]!(payload('203.0.113.9'), job('b3')); // no reverse name, no contact: nothing
    assert.deepEqual(outcomes, ['queued-for-review', 'already-complained', 'no-recipient']);
    const jobs = await store.db.selectFrom('jobs').selectAll().where('kind', '=', COMPLAINT_JOB).execute();
    assert.equal(jobs.length, 1);
    assert.equal(jobs[0]!.state, 'review');
    const facts = jobs[0]!.payload as { to: string[]; organisation: string };
    assert.deepEqual(facts.to, ['postmaster@far.example', 'abuse@far.example', 'abuse@transit.example']);
    assert.ok(await setState(store.db, jobs[0]!.id, 'approve'));
    await handlers[COMPLAINT_JOB]!(facts, job(jobs[0]!.id));
    const sent = sink.envelopes();
    assert.equal(sent.length, 1);
    assert.equal(sent[0]!.mailFrom, 'backscatter-desk@example.net');
    assert.deepEqual(sent[0]!.rcptTo, ['postmaster@far.example', 'abuse@far.example', 'abuse@transit.example']);
    assert.match(sent[0]!.text, /^Auto-Submitted: auto-generated/m);
    assert.doesNotMatch(sent[0]!.text, /THE-WORM-BODY/);
    const row = await store.db.selectFrom('backscatter_complaints').selectAll().where('organisation', '=', 'far.example').executeTakeFirstOrThrow();
    assert.deepEqual([row.bounces_seen, row.complaints_sent], [2, 1]);
    // Off, or no relay: no handlers at all.
    assert.deepEqual(complaintHandlers({ db: store.db, config: { ...config, backscatter: { ...config.backscatter!, complaints: { ...config.backscatter!.complaints, mode: 'off' } } } }), {});
    assert.deepEqual(complaintHandlers({ db: store.db, config: { ...config, notify: undefined } }), {});
  } finally {
    await sink.stop();
    await store.close();
  }
});
