import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { parseConfig } from '../../src/config/load.ts';
import { detectionFrom } from '../../src/notify/detection.ts';
import { composeDigest, composeNotice, type Detection } from '../../src/notify/notice.ts';
import { DIGEST_JOB, digestWindowEnd, NOTICE_JOB, postmasterHandlers, recordDetection } from '../../src/notify/postmaster.ts';
import { startSmtpSink } from '../../src/replay/processes.ts';
import { claim, complete, jobHandoff, runWorker } from '../../src/store/jobs.ts';
import { openStore } from '../../src/store/store.ts';
import { EICAR, startTestGateway, swaks, waitFor } from '../helpers/gateway.ts';
import { openTestStore } from '../helpers/pg.ts';

const settings = { from: 'backstop@example.net', postmaster: 'postmaster@example.net', hostname: 'mx.example.net' };
function detection(overrides: Partial<Detection> = {}): Detection {
  return {
    id: randomUUID(), receivedAt: '2004-01-26T13:00:00.000Z', verdict: 'infected', detail: 'Worm.Mydoom.A', engine: 'clamd',
    clientIp: '192.0.2.7', clientPort: 40123, helo: 'home-pc', mailFrom: 'forged@example.org', rcptTo: ['alice@example.net'],
    messageId: '<m1@example.org>', action: 'reject', quarantineId: null,
    headers: 'From: forged@example.org\r\nTo: alice@example.net\r\nSubject: hi\r\nMessage-ID: <m1@example.org>',
    ...overrides,
  };
}

/** Python's email package reads the notice: an independent parser, not ours. */
function pythonRead(raw: Buffer): { subject: string; autoSubmitted: string; to: string; types: string[]; text: string; headersPart: string } {
  const script = `
import sys, json, email
from email import policy
m = email.message_from_bytes(sys.stdin.buffer.read(), policy=policy.default)
parts = list(m.walk())
text = next(p for p in parts if p.get_content_type() == 'text/plain').get_content()
hp = [p for p in parts if p.get_content_type() == 'text/rfc822-headers']
print(json.dumps({'subject': str(m['subject']), 'autoSubmitted': str(m['auto-submitted']), 'to': str(m['to']),
  'types': [p.get_content_type() for p in parts], 'text': text,
  'headersPart': hp[0].get_payload(decode=True).decode('utf-8', 'replace') if hp else ''}))
`;
  return JSON.parse(execFileSync('python3', ['-c', script], { input: raw }).toString());
}

test('the notice says "possible virus found: NAME", names it in the body, carries headers only, and is auto-generated', async () => {
  const raw = await composeNotice(detection(), settings, 'pc7.dsl.example.net');
  const m = pythonRead(raw);
  assert.equal(m.subject, 'possible virus found: Worm.Mydoom.A');
  assert.equal(m.autoSubmitted, 'auto-generated');
  assert.equal(m.to, 'postmaster@example.net');
  assert.deepEqual(m.types, ['multipart/mixed', 'text/plain', 'text/rfc822-headers']);
  assert.match(m.text, /virus Worm\.Mydoom\.A \(found by clamd\)/);
  assert.match(m.text, /192\.0\.2\.7 port 40123, reverse name pc7\.dsl\.example\.net, HELO "home-pc"/);
  assert.match(m.text, /<forged@example\.org> \(unverified/);
  assert.match(m.headersPart, /^Subject: hi/m);
});

test('a banned test is the subject; hostile values cannot inject headers or hide behind bidi overrides', async () => {
  const raw = await composeNotice(detection({ verdict: 'banned', detail: 'forbidden file type (.pif)\r\nBcc: victim@example.org', helo: 'x\u202Eevil', engine: 'builtin policy' }), settings, null);
  const m = pythonRead(raw);
  assert.equal(m.subject, 'possible virus found: forbidden file type (.pif)??Bcc: victim@example.org');
  assert.doesNotMatch(raw.toString(), /^Bcc:/m);
  assert.match(m.text, /HELO "x\?evil"/);
  assert.match(m.text, /reverse name not verified/);
});

test('no part of the original body ever rides along', async () => {
  const d = detection({ headers: 'Subject: hi\r\nFrom: x@example.org\r\n\r\nTHE-WORM-BODY\r\n' });
  assert.doesNotMatch((await composeNotice(d, settings, null)).toString(), /THE-WORM-BODY/);
});

test('the digest counts per name and lists sources, never senders', async () => {
  const raw = await composeDigest('2004-01-26T13:15:00.000Z', [{ detail: 'Worm.Mydoom.A', count: 41, sources: ['192.0.2.7', '192.0.2.8'] }], settings, 'j1');
  const m = pythonRead(raw);
  assert.equal(m.subject, 'possible virus found: Worm.Mydoom.A (41 more)');
  assert.match(m.text, /41 {2}Worm\.Mydoom\.A {2}from 192\.0\.2\.7, 192\.0\.2\.8/);
});

test('digest windows are aligned so every node picks the same one', () => {
  assert.equal(digestWindowEnd(new Date('2004-01-26T13:07:00Z'), 15).toISOString(), '2004-01-26T13:15:00.000Z');
  assert.equal(digestWindowEnd(new Date('2004-01-26T13:15:00Z'), 15).toISOString(), '2004-01-26T13:30:00.000Z');
});

for (const kind of ['pglite', 'postgres'] as const) {
  describe(`outbreak-proof notices on ${kind}`, async () => {
    const { store, close } = await openTestStore(kind, 'bs_notify');
    after(close);

    test('one batch holding a new name twice gives one notice and one digest item', async () => {
      const { recordDetections } = await import('../../src/notify/postmaster.ts');
      const outcomes = await recordDetections(store.db, [detection({ detail: 'Batch.Worm' }), detection({ detail: 'Batch.Worm' })], 15, new Date('2004-01-26T12:01:00Z'));
      assert.deepEqual(outcomes, ['notice', 'digest']);
      await store.db.deleteFrom('notice_digest_items').execute();
      await store.db.deleteFrom('jobs').execute();
    });

    test('a wave of 200 detections of two names makes two notices and one digest job per window', async () => {
      const now = new Date('2004-01-26T13:01:00Z');
      const outcomes = [];
      for (let i = 0; i < 200; i++) {
        outcomes.push(await recordDetection(store.db, detection({ detail: i % 10 === 0 ? 'Worm.Mydoom.B' : 'Worm.Mydoom.A', clientIp: `192.0.2.${i % 50}` }), 15, now));
      }
      assert.equal(outcomes.filter((o) => o === 'notice').length, 2);
      const jobs = await store.db.selectFrom('jobs').select(['kind', 'run_at']).where('kind', 'in', [NOTICE_JOB, DIGEST_JOB]).execute();
      assert.equal(jobs.filter((j) => j.kind === NOTICE_JOB).length, 2);
      const digests = jobs.filter((j) => j.kind === DIGEST_JOB);
      assert.equal(digests.length, 1);
      assert.equal(digests[0]!.run_at.toISOString(), '2004-01-26T13:15:00.000Z');
      const items = await store.db.selectFrom('notice_digest_items').select('name').execute();
      assert.equal(items.length, 198);
    });

    test('the digest job sends one digest through the relay with a null sender, and a relay failure keeps the items', async () => {
      const handlers = postmasterHandlers(store.db, parseConfig({ notify: { relay: 'smtp://127.0.0.1:1', from: settings.from, postmaster: settings.postmaster } }).notify!, 'mx.example.net', async () => null);
      const [job] = await claim(store.db, 'w', [DIGEST_JOB], 1, 60_000, new Date('2004-01-26T13:16:00Z'));
      await assert.rejects(handlers[DIGEST_JOB](job!.payload, job!), /next hop unreachable/);
      assert.equal((await store.db.selectFrom('notice_digest_items').select('id').execute()).length, 198, 'nothing lost when the relay is down');
      const sink = await startSmtpSink(`/tmp/bs-notify-sink-${randomUUID()}`);
      try {
        const working = postmasterHandlers(store.db, parseConfig({ notify: { relay: `smtp://127.0.0.1:${sink.port}`, from: settings.from, postmaster: settings.postmaster } }).notify!, 'mx.example.net', async () => null);
        await working[DIGEST_JOB](job!.payload, job!);
        await complete(store.db, job!.id, 'w');
        const [digest] = sink.envelopes();
        assert.equal(digest!.mailFrom, '');
        assert.deepEqual(digest!.rcptTo, ['postmaster@example.net']);
        assert.match(digest!.text, /Subject: possible virus found: 198 detections of 2 names/);
        assert.equal((await store.db.selectFrom('notice_digest_items').select('id').execute()).length, 0);
      } finally {
        await sink.stop();
      }
    });

    test('a digest whose node died after the relay took it goes again with the same items and Message-ID, flagged; the next window\'s digest never takes its items', async () => {
      for (let i = 0; i < 5; i++) await recordDetection(store.db, detection({ detail: 'Crash.Worm', clientIp: `198.51.100.${i}` }), 15, new Date('2004-01-26T13:31:00Z'));
      for (let i = 0; i < 3; i++) await recordDetection(store.db, detection({ detail: 'Crash.Worm', clientIp: `203.0.113.${i}` }), 15, new Date('2004-01-26T13:46:00Z'));
      const sink = await startSmtpSink(`/tmp/bs-notify-sink-${randomUUID()}`);
      try {
        const notify = parseConfig({ notify: { relay: `smtp://127.0.0.1:${sink.port}`, from: settings.from, postmaster: settings.postmaster } }).notify!;
        const handlers = postmasterHandlers(store.db, notify, 'mx.example.net', async () => null);
        const t0 = new Date('2004-01-26T14:01:00Z');
        const [first] = await claim(store.db, 'node-a:1', [DIGEST_JOB], 1, 1000, t0);
        assert.equal(new Date((first!.payload as { windowEnd: string }).windowEnd).toISOString(), '2004-01-26T13:45:00.000Z');
        // node-a hands the 13:45 digest to the relay and dies before it can mark it done.
        const dying = jobHandoff(store.db, first!, 'node-a:1', 'mx.example.net');
        await assert.rejects(handlers[DIGEST_JOB](first!.payload, first!, { handoff: { ...dying, sent: async () => { throw new Error('SIGKILL'); } } }), /SIGKILL/);
        // Meanwhile node-b runs the 14:00 digest: it takes only its own window's items.
        const [next] = await claim(store.db, 'node-b:1', [DIGEST_JOB], 1, 60_000, new Date(t0.getTime() + 1000));
        assert.equal(new Date((next!.payload as { windowEnd: string }).windowEnd).toISOString(), '2004-01-26T14:00:00.000Z');
        await handlers[DIGEST_JOB](next!.payload, next!, { handoff: jobHandoff(store.db, next!, 'node-b:1', 'mx.example.net') });
        // node-a's lease runs out; node-b takes the 13:45 digest again.
        const [again] = await claim(store.db, 'node-b:1', [DIGEST_JOB], 1, 60_000, new Date(t0.getTime() + 5000));
        assert.equal(again!.id, first!.id);
        assert.equal(again!.possible_duplicate, true);
        await handlers[DIGEST_JOB](again!.payload, again!, { handoff: jobHandoff(store.db, again!, 'node-b:1', 'mx.example.net') });
        const sent = sink.envelopes().map((m) => ({ id: /^Message-ID: (.*)$/im.exec(m.text)?.[1]?.trim(), total: Number(/(\d+) message\(s\) in all/.exec(m.text)?.[1]) }));
        assert.deepEqual(sent.sort((a, b) => (a.id! < b.id! ? -1 : 1)), [
          { id: `<digest-${first!.id}@mx.example.net>`, total: 4 },
          { id: `<digest-${first!.id}@mx.example.net>`, total: 4 },
          { id: `<digest-${next!.id}@mx.example.net>`, total: 3 },
        ].sort((a, b) => (a.id < b.id ? -1 : 1)));
        const jobs = await store.db.selectFrom('jobs').select(['id', 'state', 'possible_duplicate', 'handoffs']).where('id', 'in', [first!.id, next!.id]).execute();
        assert.deepEqual(jobs.sort((a, b) => (a.id === first!.id ? -1 : b.id === first!.id ? 1 : 0)).map(({ state, possible_duplicate, handoffs }) => ({ state, possible_duplicate, handoffs })), [
          { state: 'done', possible_duplicate: true, handoffs: 2 },
          { state: 'done', possible_duplicate: false, handoffs: 1 },
        ]);
        assert.equal((await store.db.selectFrom('notice_digest_items').select('id').execute()).length, 0);
      } finally {
        await sink.stop();
      }
    });
  });
}

test('through the gateway: a wave of EICAR makes one notice to the postmaster and a digest, and nothing to any sender', async () => {
  const relay = await startSmtpSink(`/tmp/bs-notify-relay-${randomUUID()}`);
  const store = await openStore('pglite-memory:');
  const notify = parseConfig({ notify: { relay: `smtp://127.0.0.1:${relay.port}`, from: settings.from, postmaster: settings.postmaster, digestMinutes: 0.02 } }).notify!;
  const g = await startTestGateway({}, {
    store,
    hooks: { decided: [async (t, m) => { const d = detectionFrom(t, m); if (d) await recordDetection(store.db, d, notify.digestMinutes); }] },
  });
  const stop = new AbortController();
  const worker = runWorker({ db: store.db, worker: 'w', pollMs: 100, signal: stop.signal, handlers: postmasterHandlers(store.db, notify, 'mx.example.net', async () => null) });
  try {
    const waveStart = Date.now();
    for (let i = 0; i < 6; i++) {
      const r = await swaks(g.port, ['--to', 'alice@example.net', '--from', `forged${i}@example.org`, '--attach', '-'], EICAR);
      assert.match(r.last, /^550 5\.7\.1 /);
    }
    const waveEnd = Date.now();
    // Digest windows are aligned to the clock, so a wave may straddle two of them: count, don't assume.
    const digested = () => relay.envelopes().reduce((n, m) => n + Number(/^Subject: possible virus found: Eicar-Test-Signature \((\d+) more\)$/m.exec(m.text)?.[1] ?? 0), 0);
    await waitFor(() => digested() === 5, 15_000);
    const sent = relay.envelopes();
    for (const m of sent) {
      assert.equal(m.mailFrom, '');
      assert.deepEqual(m.rcptTo, ['postmaster@example.net']);
      assert.doesNotMatch(m.text, /EICAR-STANDARD-ANTIVIRUS-TEST-FILE/);
    }
    assert.equal(sent.filter((m) => /^Subject: possible virus found: Eicar-Test-Signature$/m.test(m.text)).length, 1, 'one immediate notice');
    // One immediate notice, then at most one digest per aligned window the wave touched (1.2 s
    // windows: a slow machine spreads the six messages over more of them, never over more digests).
    const windowMs = notify.digestMinutes * 60_000;
    const windows = Math.floor(waveEnd / windowMs) - Math.floor(waveStart / windowMs) + 1;
    assert.ok(sent.length <= 1 + Math.min(5, windows), `${sent.length} messages for a wave of 6 over ${windows} digest window(s)`);
  } finally {
    stop.abort();
    await worker;
    await g.close();
    await store.close();
    await relay.stop();
  }
});

test('a worm that varies its attachment names is one notice key per test, malware names stay whole', async () => {
  const { noticeKey } = await import('../../src/notify/notice.ts');
  assert.equal(noticeKey('banned', 'double extension (doc.txt.pif)'), 'double extension');
  assert.equal(noticeKey('banned', 'double extension (readme.txt.scr)'), 'double extension');
  assert.equal(noticeKey('banned', 'forbidden file type (.pif) in "x.zip"'), 'forbidden file type');
  assert.equal(noticeKey('infected', 'Win.Worm.Mydoom-1 (variant)'), 'Win.Worm.Mydoom-1 (variant)');
});
