/*
 * Abuse reports: the pure aggregation decisions as tables; windows, sampling
 * and the hourly cap in both stores; a worm wave of 5,000 messages from 50
 * IPs; several nodes on one PostgreSQL; the report job end to end through a
 * real SMTP server (smtp-sink), read back with Python's email parser.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { parseConfig } from '../../src/config/load.ts';
import { ABUSE_JOB, decideWindow, feedbackTypeFor, optOut, recordAbuse, reportable, sampledIn } from '../../src/notify/abuse.ts';
import type { Detection } from '../../src/notify/notice.ts';
import { NOTICE_JOB } from '../../src/notify/postmaster.ts';
import { notifyHandlers, notifyPolicy, recordDetections } from '../../src/notify/record.ts';
import { startSmtpSink } from '../../src/replay/processes.ts';
import { runWorker } from '../../src/store/jobs.ts';
import { openStore } from '../../src/store/store.ts';
import { createTestDatabase, openTestStore } from '../helpers/pg.ts';
import { waitFor } from '../helpers/gateway.ts';

function detection(o: Partial<Detection> = {}): Detection {
  return {
    id: randomUUID(), receivedAt: '2004-01-26T13:00:00.000Z', verdict: 'infected', detail: 'Worm.Mydoom.A', engine: 'clamd',
    clientIp: '198.51.100.7', clientPort: 40123, helo: 'home-pc', mailFrom: 'forged@example.org', rcptTo: ['alice@example.net'],
    messageId: '<m1@example.org>', action: 'reject', quarantineId: null,
    headers: 'From: forged@example.org\r\nTo: alice@example.net\r\nSubject: hi\r\nMessage-ID: <m1@example.org>\r\n\r\nTHE-WORM-BODY',
    ...o,
  };
}
const notify = { relay: 'smtp://127.0.0.1:1', from: 'backstop@example.net', postmaster: 'postmaster@example.net' };
const abuseConfig = (a: Record<string, unknown> = {}) => parseConfig({ notify, abuse: a }).abuse!;

const streaks: [number, boolean][] = [[1, true], [2, true], [3, false], [4, true], [5, false], [7, false], [8, true], [12, false], [16, true], [0, false]];
for (const [streak, expected] of streaks) {
  test(`inverse-exponential sampling: window ${streak} of a streak is ${expected ? 'reported' : 'skipped'}`, () => assert.equal(sampledIn(streak), expected));
}

test('window decisions: off, sampled out, capped, reported; the cap is only asked when it would report', () => {
  let asked = 0;
  const cap = (ok: boolean) => () => (asked++, ok);
  assert.equal(decideWindow('off', 1, cap(true)), 'off');
  assert.equal(decideWindow('on', 3, cap(true)), 'sampled-out');
  assert.equal(asked, 0);
  assert.equal(decideWindow('on', 1, cap(false)), 'capped');
  assert.equal(decideWindow('on', 2, cap(true)), 'report');
});

test('Feedback-Type per destination: exact address, then the longest matching domain, else the default', () => {
  const s = { feedbackType: 'virus' as const, destinations: [{ match: 'isp.example', feedbackType: 'abuse' as const }, { match: 'dsl.isp.example', feedbackType: 'other' as const }, { match: 'abuse@dsl.isp.example', feedbackType: 'fraud' as const }] };
  assert.equal(feedbackTypeFor('ABUSE@dsl.isp.example', s), 'fraud');
  assert.equal(feedbackTypeFor('noc@dsl.isp.example', s), 'other');
  assert.equal(feedbackTypeFor('abuse@mail.isp.example', s), 'abuse');
  assert.equal(feedbackTypeFor('abuse@notisp.example', s), 'virus');
});

test('a feedback report is never counted', () => {
  assert.equal(reportable(detection({ headers: 'Content-Type: multipart/report; report-type=feedback-report; boundary=x\r\n' })), false);
  assert.equal(reportable(detection()), true);
});

for (const kind of ['pglite', 'postgres'] as const) {
  describe(`abuse windows on ${kind}`, async () => {
    const { store, close } = await openTestStore(kind, 'bs_abuse');
    after(close);
    const t0 = new Date('2004-01-26T13:00:00Z');
    const hours = (h: number) => new Date(t0.getTime() + h * 3_600_000);

    test('a worm wave of 5,000 messages from 50 IPs: one report job per IP, every detection counted, none for the ARF', async () => {
      const policy = notifyPolicy(parseConfig({ notify, abuse: {} }));
      const wave = Array.from({ length: 5000 }, (_, i) => detection({ clientIp: `198.51.100.${i % 50}`, detail: i % 7 ? 'Worm.Mydoom.A' : 'Worm.Mydoom.B' }));
      for (let i = 0; i < wave.length; i += 500) await recordDetections(store.db, wave.slice(i, i + 500), policy, new Date(t0.getTime() + i));
      await recordDetections(store.db, [detection({ clientIp: '203.0.113.5', headers: 'Content-Type: multipart/report; report-type=feedback-report\r\n' })], policy, t0);
      const jobs = await store.db.selectFrom('jobs').select(['payload', 'run_at']).where('kind', '=', ABUSE_JOB).execute();
      assert.equal(jobs.length, 50);
      assert.equal(new Set(jobs.map((j) => (j.payload as { clientIp: string }).clientIp)).size, 50);
      assert.equal(jobs[0]!.run_at.toISOString(), '2004-01-26T13:15:00.000Z', 'sent reportDelay after the window opens');
      const sources = await store.db.selectFrom('abuse_sources').select(['client_ip', 'detections', 'decision']).execute();
      assert.equal(sources.length, 50, 'the feedback report opened no window');
      assert.equal(sources.reduce((n, s) => n + s.detections, 0), 5000);
      assert.ok(sources.every((s) => s.decision === 'report' && s.detections === 100));
      const notices = await store.db.selectFrom('jobs').select('id').where('kind', '=', NOTICE_JOB).execute();
      assert.equal(notices.length, 2, 'one postmaster notice per new malware name');
      for (const j of jobs) assert.doesNotMatch(JSON.stringify(j.payload), /forged@example\.org.*"to"/, 'nothing addressed to a sender');
    });

    test('a source infected day after day is reported in windows 1, 2, 4 of its streak; a gap resets the streak', async () => {
      const a = abuseConfig();
      const ip = '192.0.2.99';
      const seen: string[] = [];
      for (const h of [0, 25, 50, 75, 100]) seen.push((await recordAbuse(store.db, [detection({ clientIp: ip })], a, hours(h))).get(ip)!);
      assert.deepEqual(seen, ['report', 'report', 'sampled-out', 'report', 'sampled-out']);
      assert.equal((await recordAbuse(store.db, [detection({ clientIp: ip })], a, hours(200))).get(ip), 'report', 'after a quiet window the streak starts again');
      assert.equal((await recordAbuse(store.db, [detection({ clientIp: ip })], a, hours(201))).size, 0, 'inside an open window: counted, nothing to decide');
    });

    test('the global hourly cap holds, and reports: off records without sending', async () => {
      const capped = abuseConfig({ hourlyCap: 3 });
      const at = hours(1000);
      const ds = Array.from({ length: 10 }, (_, i) => detection({ clientIp: `203.0.113.${100 + i}` }));
      const decisions = [...(await recordAbuse(store.db, ds, capped, at)).values()];
      assert.equal(decisions.filter((d) => d === 'report').length, 3);
      assert.equal(decisions.filter((d) => d === 'capped').length, 7);
      const off = await recordAbuse(store.db, [detection({ clientIp: '203.0.113.200' })], abuseConfig({ reports: 'off' }), at);
      assert.equal(off.get('203.0.113.200'), 'off');
    });
  });
}

test('four nodes on one PostgreSQL recording the same wave at once open one window and one report per IP', async () => {
  const database = await createTestDatabase('bs_abuse_nodes');
  const nodes = await Promise.all([0, 1, 2, 3].map(() => openStore(database.url, { poolSize: 4 })));
  try {
    const a = abuseConfig();
    const now = new Date('2004-01-26T13:00:00Z');
    await Promise.all(nodes.map(async (node, n) => {
      for (let b = 0; b < 10; b++) {
        const batch = Array.from({ length: 40 }, (_, i) => detection({ clientIp: `198.51.100.${(i + n + b) % 20}` }));
        await recordAbuse(node.db, batch, a, now);
      }
    }));
    const jobs = await nodes[0]!.db.selectFrom('jobs').select('payload').where('kind', '=', ABUSE_JOB).execute();
    assert.equal(jobs.length, 20);
    const total = await nodes[0]!.db.selectFrom('abuse_sources').select(({ fn }) => fn.sum<number>('detections').as('n')).executeTakeFirst();
    assert.equal(Number(total!.n), 4 * 10 * 40);
  } finally {
    await Promise.all(nodes.map((n) => n.close()));
    await database.drop();
  }
});

function pythonFields(raw: string): { to: string; type: string; fields: Record<string, string> } {
  const script = `
import sys, json, email
from email import policy
m = email.message_from_bytes(sys.stdin.buffer.read(), policy=policy.default)
fr = m.get_payload()[1]
inner = fr.get_payload()[0]
print(json.dumps({'to': str(m['to']), 'type': m.get_content_type() + ';' + str(m.get_param('report-type')), 'fields': {k.lower(): str(v) for k, v in inner.items()}}))
`;
  return JSON.parse(execFileSync('python3', ['-c', script], { input: Buffer.from(raw, 'latin1') }).toString());
}

test('the report job: each IP reported to its own contact, opt-outs honoured, the desk and "never" get no mail', async () => {
  const sink = await startSmtpSink(`/tmp/bs-abuse-sink-${randomUUID()}`);
  const store = await openStore('pglite-memory:');
  const config = parseConfig({
    notify: { ...notify, relay: `smtp://127.0.0.1:${sink.port}` },
    abuse: {
      reportDelay: '1s', window: '24h',
      overrides: [
        { cidr: '192.0.2.0/26', contact: 'abuse@isp-a.example' },
        { cidr: '192.0.2.64/26', contact: 'abuse@isp-b.example' },
        { cidr: '192.0.2.128/26', contact: 'never' },
        { cidr: '192.0.2.192/27', contact: 'stop@isp-c.example' },
      ],
      customerSpace: ['198.51.100.0/24'],
      destinations: [{ match: 'isp-b.example', feedbackType: 'abuse' }],
      rdap: { enabled: false }, dns: { zone: '' }, reverseFallback: false,
    },
  });
  await optOut(store.db, 'Stop@isp-c.example', 'asked by reply');
  const outcomes: string[] = [];
  const stop = new AbortController();
  const worker = runWorker({
    db: store.db, worker: 'w', pollMs: 50, signal: stop.signal,
    handlers: notifyHandlers(store.db, config, 'mx.example.net', { sources: {}, reverse: async () => null, onOutcome: (o, p) => outcomes.push(`${p.clientIp} ${o}`) }),
  });
  try {
    const ips = ['192.0.2.7', '192.0.2.8', '192.0.2.70', '192.0.2.130', '192.0.2.200', '198.51.100.9', '203.0.113.1'];
    const now = new Date(Date.now() - 2000);
    await recordDetections(store.db, ips.flatMap((ip) => [detection({ clientIp: ip }), detection({ clientIp: ip })]), notifyPolicy(config), now);
    await waitFor(async () => (await store.db.selectFrom('abuse_reports').select('job_id').execute()).length === ips.length, 15_000);
    await waitFor(() => sink.envelopes().length >= 4, 10_000);
    const mail = sink.envelopes();
    const reports = mail.filter((m) => !m.rcptTo.includes('postmaster@example.net'));
    assert.deepEqual(reports.map((m) => m.rcptTo[0]).sort(), ['abuse@isp-a.example', 'abuse@isp-a.example', 'abuse@isp-b.example']);
    for (const m of reports) {
      assert.equal(m.mailFrom, 'backstop@example.net');
      assert.doesNotMatch(m.text, /THE-WORM-BODY/);
      const p = pythonFields(m.text.slice(m.text.search(/^From: /m)));
      assert.equal(p.type, 'multipart/report;feedback-report');
      assert.equal(p.fields['incidents'], '2');
      assert.equal(p.fields['feedback-type'], p.to === 'abuse@isp-b.example' ? 'abuse' : 'virus');
      assert.match(p.fields['source-ip']!, /^192\.0\.2\.(7|8|70)$/);
    }
    assert.ok(mail.every((m) => !m.rcptTo.includes('forged@example.org')), 'nothing to the sender');
    const rows = await store.db.selectFrom('abuse_reports').select(['client_ip', 'outcome', 'source', 'steps']).orderBy('client_ip').execute();
    const byIp = Object.fromEntries(rows.map((r) => [r.client_ip, r.outcome]));
    assert.deepEqual(byIp, { '192.0.2.7': 'sent', '192.0.2.8': 'sent', '192.0.2.70': 'sent', '192.0.2.130': 'never', '192.0.2.200': 'opted-out', '198.51.100.9': 'desk', '203.0.113.1': 'no-contact' });
    assert.ok(rows.every((r) => Array.isArray(r.steps) && (r.steps as unknown[]).length > 0), 'each step recorded');
    assert.ok(outcomes.includes('198.51.100.9 desk'));
  } finally {
    stop.abort();
    await worker;
    await store.close();
    await sink.stop();
  }
});
