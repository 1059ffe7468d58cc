/*
 * The backscatter shield in a real gateway (test/helpers/gateway: Backstop in
 * front of Postfix's smtp-sink, swaks as the client): what the client is
 * answered, what smtp-sink receives (envelope and headers), and what the
 * store records.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { batvDay, parsePrvs, signPrvs, verifyPrvs } from '../../src/backscatter/batv.ts';
import { rfc5322Date } from '../../src/notify/arf.ts';
import { backscatterHooks, BOUNCER_JOB, ShieldRecorder, signDate, type ShieldSettings } from '../../src/backscatter/hooks.ts';
import { KeyCache } from '../../src/backscatter/keys.ts';
import { STAMP_HEADER, verifyMessageIdStamp, isStampedMessageId } from '../../src/backscatter/verdict.ts';
import { buildRaw, type BackscatterEntry, type BackscatterStyle } from '../../src/replay/traffic.ts';
import { openStore, type Store } from '../../src/store/store.ts';
import { startTestGateway, swaks, waitFor, type TestGateway } from '../helpers/gateway.ts';

const OUTBOUND_CLIENT = '127.0.0.9';

function backscatter(style: BackscatterStyle, rcpt: string, seq = 1): Buffer {
  const entry: BackscatterEntry = {
    kind: 'backscatter', seq, sourceIp: '127.0.0.1', helo: 'mx.far.example', bouncingDomain: 'far.example', rcpt, style,
    quoted: { mailFrom: rcpt, rcpt: 'bob@far.example', subject: 'hi', messageId: '<worm1@home-pc>', fromIp: '198.51.100.7' },
  };
  return buildRaw(entry);
}

interface Shielded {
  g: TestGateway;
  store: Store;
  keys: KeyCache;
  recorder: ShieldRecorder;
  close(): Promise<void>;
}

async function shielded(settings: Partial<ShieldSettings> = {}, complaints: ShieldSettings['complaints'] = 'off'): Promise<Shielded> {
  const store = await openStore('pglite-memory:');
  const keys = await KeyCache.open(store.db, 0);
  const recorder = new ShieldRecorder(store.db, (err) => console.error(err), 10);
  const full: ShieldSettings = {
    mode: 'enforce', batvDomains: ['example.net'], onBackscatter: 'refuse', ourRelays: ['mx.example.net'], relayFrom: [`${OUTBOUND_CLIENT}/32`],
    hostname: 'mx.example.net', complaints, ...settings,
  };
  const g = await startTestGateway({ relayFrom: [`${OUTBOUND_CLIENT}/32`] }, { store, hooks: backscatterHooks({ settings: full, keys: () => keys.current, recorder }) });
  return {
    g, store, keys, recorder,
    async close() {
      await g.close();
      await recorder.flush();
      keys.close();
      await store.close();
    },
  };
}

async function events(store: Store) {
  return store.db.selectFrom('backscatter_events').select(['class', 'verdict', 'action', 'reasons', 'format']).orderBy('received_at').execute();
}

async function logActions(s: Shielded) {
  await s.g.messageLog.flush();
  return (await s.store.db.selectFrom('messages').select(['action', 'rcpt_to']).execute()).map((r) => r.action);
}

describe('enforce mode', () => {
  let s: Shielded;
  before(async () => (s = await shielded({}, 'review')));
  after(async () => s.close());

  test('a null sender to an untagged address of a BATV domain is refused 550 5.7.1 at RCPT, and recorded', async () => {
    const r = await swaks(s.g.port, ['--from', '<>', '--to', 'alice@example.net', '--data', '-'], backscatter('postfix-dsn', 'alice@example.net'));
    assert.match(r.transcript, /RCPT TO:<alice@example\.net>\s*\n<\*\* +550 5\.7\.1 <alice@example\.net>: bounce to an address we never used as a sender/);
    assert.equal(s.g.sink!.messages().length, 0);
    await s.recorder.flush();
    const rows = await events(s.store);
    assert.deepEqual(rows.map((e) => [e.class, e.verdict, e.action, e.format]), [['dsn', 'backscatter', 'refuse', 'null-sender']]);
  });

  test('a bounce to a valid tag passes RCPT and DATA, and the next hop sees the address without the tag', async () => {
    const before = s.g.sink!.messages().length;
    const tagged = signPrvs('alice@example.net', s.keys.current.ring, Date.now());
    assert.match(tagged, /^prvs=0\d{3}[0-9a-f]{6}=alice@example\.net$/);
    const r = await swaks(s.g.port, ['--from', '<>', '--to', tagged, '--data', '-'], backscatter('postfix-dsn', tagged));
    assert.match(r.last, /^250 /, r.transcript);
    await waitFor(() => s.g.sink!.envelopes().length > before);
    const got = s.g.sink!.envelopes().find((m) => m.text.includes(`To: ${tagged}`))!;
    assert.deepEqual(got.rcptTo, ['alice@example.net']);
    assert.equal(got.mailFrom, '');
    // Our Received line names the recipient the next hop got.
    assert.match(got.text, /by mx\.example\.net \(Backstop\)[^\n]*\n\s+for <alice@example\.net>;/);
    await s.recorder.flush();
    const last = (await events(s.store)).at(-1)!;
    assert.deepEqual([last.class, last.verdict, last.action], ['dsn', 'ours', 'pass']);
    assert.ok(last.reasons.includes('sent to a valid BATV tag'));
  });

  test('a badly tagged address is refused like an untagged one; postmaster@ always accepts', async () => {
    const tagged = signPrvs('alice@example.net', s.keys.current.ring, Date.now()).replace(/=0(\d{3})([0-9a-f]{6})=/, (_, d, h) => `=0${d}${h === '000000' ? '000001' : '000000'}=`);
    const bad = await swaks(s.g.port, ['--from', '<>', '--to', tagged, '--data', '-'], backscatter('postfix-dsn', tagged));
    assert.match(bad.transcript, /<\*\* +550 5\.7\.1 <alice@example\.net>: bounce to an invalid BATV tag/);
    const pm = await swaks(s.g.port, ['--from', '<>', '--to', 'postmaster@example.net', '--data', '-'], 'Subject: hello\r\n\r\nA note.\r\n');
    assert.match(pm.last, /^250 /, pm.transcript);
  });

  test('mail with a sender is never refused for lacking a tag when it is not a bounce', async () => {
    const r = await swaks(s.g.port, ['--from', 'friend@example.org', '--to', 'alice@example.net', '--data', '-'], 'From: friend@example.org\r\nSubject: lunch?\r\nMessage-ID: <l1@example.org>\r\n\r\nTomorrow at noon?\r\n');
    assert.match(r.last, /^250 /, r.transcript);
  });

  test('a virus notice with a sender is refused at end of DATA, logged as backscatter-refuse, and queues a bouncer job', async () => {
    for (const style of ['norton-notice', 'mcafee-notice', 'trend-scanmail-notice', 'mailscanner-notice'] as const) {
      const r = await swaks(s.g.port, ['--from', `nav@far.example`, '--to', 'alice@example.net', '--data', '-'], backscatter(style, 'alice@example.net'));
      assert.match(r.last, /^550 5\.7\.1 virus notice for mail we did not send/, `${style}: ${r.transcript}`);
    }
    const actions = await logActions(s);
    assert.equal(actions.filter((a) => a === 'backscatter-refuse').length, 4);
    await s.recorder.flush();
    const notices = (await events(s.store)).filter((e) => e.class === 'av-notice');
    assert.deepEqual(notices.map((e) => [e.verdict, e.action]), Array(4).fill(['backscatter', 'refuse']));
    // One bouncer job per client address and day, whatever the number of notices; it carries headers, never the body.
    const jobs = await s.store.db.selectFrom('jobs').select(['kind', 'payload']).where('kind', '=', BOUNCER_JOB).execute();
    assert.equal(jobs.length, 1);
    const p = jobs[0]!.payload as { clientIp: string; headers: string };
    assert.equal(p.clientIp, '127.0.0.1');
    assert.match(p.headers, /^From: NAV for Microsoft Exchange/m);
    assert.doesNotMatch(p.headers, /Virus W32\.Novarg/);
  });

  test('outbound: a sender of our domain is signed for the next hop, and the relayed copy carries the Message-ID stamp', async () => {
    const before = s.g.sink!.envelopes().length;
    const msg = 'From: bob@example.net\r\nTo: carol@far.example\r\nSubject: report\r\nMessage-ID: <out-1@example.net>\r\n\r\nThe report.\r\n';
    const r = await swaks(s.g.port, ['--local-interface', OUTBOUND_CLIENT, '--from', 'bob@example.net', '--to', 'carol@far.example', '--data', '-'], msg);
    assert.match(r.last, /^250 /, r.transcript);
    // Without a Message-ID: one is added that carries the HMAC itself.
    const r2 = await swaks(s.g.port, ['--local-interface', OUTBOUND_CLIENT, '--from', 'bob@example.net', '--to', 'carol@far.example', '--data', '-'], 'From: bob@example.net\r\nSubject: no id\r\n\r\nx\r\n');
    assert.match(r2.last, /^250 /, r2.transcript);
    // An already tagged sender and a sender of another domain are left alone.
    const pre = signPrvs('bob@example.net', s.keys.current.ring, Date.UTC(2020, 0, 1));
    await swaks(s.g.port, ['--local-interface', OUTBOUND_CLIENT, '--from', pre, '--to', 'carol@far.example', '--data', '-'], msg);
    await swaks(s.g.port, ['--local-interface', OUTBOUND_CLIENT, '--from', 'dave@elsewhere.example', '--to', 'carol@far.example', '--data', '-'], msg);
    await waitFor(() => s.g.sink!.envelopes().length >= before + 4);
    // smtp-sink's file names do not keep the order: find each by what it carried.
    const got = s.g.sink!.envelopes();
    const one = got.find((m) => m.text.includes('Message-ID: <out-1@example.net>') && /^prvs=.*=bob@example\.net$/.test(m.mailFrom) && m.mailFrom !== pre);
    const two = got.find((m) => m.text.includes('Subject: no id'));
    const three = got.find((m) => m.mailFrom === pre);
    const four = got.find((m) => m.mailFrom === 'dave@elsewhere.example');
    assert.ok(one && two && three && four, got.map((m) => m.mailFrom).join());
    const check = verifyPrvs(one!.mailFrom, s.keys.current.ring, Date.now());
    assert.equal(check.kind, 'valid', one!.mailFrom);
    assert.equal(check.kind === 'valid' && check.original, 'bob@example.net');
    const stamp = new RegExp(`^${STAMP_HEADER}: (bs1\\.[0-9a-f]{20})\\r?$`, 'm').exec(one!.text)?.[1];
    assert.ok(stamp, one!.text);
    assert.ok(verifyMessageIdStamp('<out-1@example.net>', stamp, s.keys.current.stampKeys));
    assert.equal(verifyPrvs(two!.mailFrom, s.keys.current.ring, Date.now()).kind, 'valid');
    const id = /^Message-ID: (<[^>]+>)/m.exec(two!.text)?.[1];
    assert.ok(id && isStampedMessageId(id, s.keys.current.stampKeys), two!.text);
    assert.equal(three!.mailFrom, pre);
    assert.equal(four!.mailFrom, 'dave@elsewhere.example');
    // The body arrived unchanged under the added field.
    assert.match(one!.text, /\r?\nThe report\./);
  });
});

test('signDate: the message’s Date within the last six days, else now (table)', () => {
  const now = Date.UTC(2024, 0, 31, 12);
  const h = 3_600_000;
  const cases: [string | null, number][] = [
    [null, now],
    ['not a date', now],
    ['Mon, 29 Jan 2024 08:00:00 +0000', Date.UTC(2024, 0, 29, 8)],
    ['Mon, 29 Jan 2024 09:00:00 +0100 (CET)', Date.UTC(2024, 0, 29, 8)],
    ['Wed, 31 Jan 2024 12:30:00 +0000', now], // a little ahead: now
    ['Wed, 31 Jan 2024 18:00:00 +0000', now], // far ahead: now
    ['Thu, 25 Jan 2024 13:00:00 +0000', Date.UTC(2024, 0, 25, 13)], // 5 days 23 hours
    ['Wed, 24 Jan 2024 12:00:00 +0000', now], // 7 days: the tag would hardly live
  ];
  for (const [date, want] of cases) assert.equal(signDate(date, now), want, `${date} ${h}`);
});

test('outbound retries of one message carry one tag: the day of its Date, the next hop re-enveloped at end of DATA', async () => {
  const s = await shielded();
  try {
    const twoDaysAgo = new Date(Date.now() - 2 * 86_400_000);
    const msg = (n: number) => `From: bob@example.net\r\nTo: carol@far.example\r\nSubject: retry ${n}\r\nDate: ${rfc5322Date(twoDaysAgo)}\r\nMessage-ID: <retry@example.net>\r\n\r\nSame message.\r\n`;
    for (const n of [1, 2]) {
      const r = await swaks(s.g.port, ['--local-interface', OUTBOUND_CLIENT, '--from', 'bob@example.net', '--to', 'carol@far.example', '--data', '-'], msg(n));
      assert.match(r.last, /^250 /, r.transcript);
    }
    await waitFor(() => s.g.sink!.envelopes().length === 2);
    const tags = s.g.sink!.envelopes().map((m) => m.mailFrom);
    assert.equal(tags[0], tags[1], 'both attempts carry the same tag');
    assert.equal(parsePrvs(tags[0]!)!.day, (batvDay(twoDaysAgo) + 7) % 1000, 'the tag of the Date’s day');
    assert.equal(verifyPrvs(tags[0]!, s.keys.current.ring, Date.now()).kind, 'valid');
    assert.deepEqual(s.g.sink!.envelopes().map((m) => m.rcptTo), [['carol@far.example'], ['carol@far.example']]);
  } finally {
    await s.close();
  }
});

describe('log-only and quarantine', () => {
  test('log-only: the bounce is delivered (without tag trouble) and recorded as would-refuse', async () => {
    const s = await shielded({ mode: 'log-only' });
    try {
      const r = await swaks(s.g.port, ['--from', '<>', '--to', 'alice@example.net', '--data', '-'], backscatter('qmail-bounce', 'alice@example.net'));
      assert.match(r.last, /^250 /, r.transcript);
      await waitFor(() => s.g.sink!.envelopes().length === 1);
      assert.deepEqual(s.g.sink!.envelopes()[0]!.rcptTo, ['alice@example.net']);
      await s.recorder.flush();
      const rows = await events(s.store);
      assert.deepEqual(rows.map((e) => [e.class, e.action]), [['dsn', 'would-refuse'], ['dsn', 'would-refuse']]);
      assert.deepEqual(await logActions(s), ['deliver']);
    } finally {
      await s.close();
    }
  });

  test('quarantine: backscatter found at DATA is held and answered 250, nothing reaches the next hop', async () => {
    const s = await shielded({ onBackscatter: 'quarantine' });
    try {
      const r = await swaks(s.g.port, ['--from', 'scanmail@far.example', '--to', 'alice@example.net', '--data', '-'], backscatter('trend-scanmail-notice', 'alice@example.net'));
      assert.match(r.last, /^250 /, r.transcript);
      assert.equal(s.g.sink!.envelopes().length, 0);
      assert.deepEqual(await logActions(s), ['backscatter-quarantine']);
      const q = await s.store.db.selectFrom('quarantine').select(['verdict', 'verdict_detail']).execute();
      assert.deepEqual(q, [{ verdict: 'backscatter-quarantine', verdict_detail: 'av-notice (trendmicro)' }]);
    } finally {
      await s.close();
    }
  });
});
