/*
 * Sender notices (R1, R2): off by default; only with both keys, only for
 * banned verdicts or names on the non-forging list, only to an authenticated
 * envelope sender, at most one per sender per day. SPF/DMARC are checked by
 * mailauth itself, with DNS answered by a stub resolver.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import type { Detection } from '../../src/notify/notice.ts';
import { checkSenderAuth, claimSenderNotice, senderNoticeEligible, type SenderAuth } from '../../src/notify/sender.ts';
import { openStore } from '../../src/store/store.ts';

function detection(o: Partial<Detection> = {}): Detection {
  return {
    id: randomUUID(), receivedAt: '2004-01-26T13:00:00.000Z', verdict: 'banned', detail: 'forbidden file type (.pif)', engine: 'builtin policy',
    clientIp: '192.0.2.7', clientPort: 1, helo: 'mail.sender.example', mailFrom: 'alice@sender.example', rcptTo: ['bob@example.net'],
    messageId: null, action: 'reject', quarantineId: null, headers: 'From: alice@sender.example\r\n', ...o,
  };
}
const on = { enabled: true, acknowledgeForgedSenders: true, nonForging: ['Trojan.NotAWorm'] };
const spfPass: SenderAuth = { spf: 'pass', spfDomain: 'sender.example', dmarc: 'none', dmarcDomain: null, dkimAligned: [] };
const none: SenderAuth = { spf: 'fail', spfDomain: 'sender.example', dmarc: 'fail', dmarcDomain: 'sender.example', dkimAligned: [] };

const table: [string, Partial<Detection>, SenderAuth | null, typeof on | undefined, boolean, RegExp][] = [
  ['off by default', {}, spfPass, { enabled: false, acknowledgeForgedSenders: false, nonForging: [] }, false, /off/],
  ['enabled without the acknowledgement', {}, spfPass, { enabled: true, acknowledgeForgedSenders: false, nonForging: [] }, false, /off/],
  ['a banned verdict with SPF pass for the envelope domain', {}, spfPass, on, true, /SPF pass for sender\.example/],
  ['a worm (not on the non-forging list), even authenticated', { verdict: 'infected', detail: 'Worm.Mydoom.A' }, spfPass, on, false, /not on the non-forging list/],
  ['a name on the non-forging list', { verdict: 'infected', detail: 'Trojan.NotAWorm' }, spfPass, on, true, /SPF/],
  ['SPF pass for another domain', {}, { ...spfPass, spfDomain: 'other.example' }, on, false, /not authenticated/],
  ['SPF fail, DMARC fail', {}, none, on, false, /not authenticated \(SPF fail, DMARC fail\)/],
  ['DMARC pass for the same organisation', { mailFrom: 'bounce@mail.sender.example' }, { ...none, dmarc: 'pass', dmarcDomain: 'sender.example' }, on, true, /DMARC pass/],
  ['an aligned DKIM pass', {}, { ...none, dkimAligned: ['sender.example'] }, on, true, /aligned DKIM/],
  ['DKIM aligned with someone else', {}, { ...none, dkimAligned: ['other.example'] }, on, false, /not authenticated/],
  ['a null envelope sender', { mailFrom: '' }, spfPass, on, false, /null/],
  ['no check could be made', {}, null, on, false, /no check/],
];
for (const [name, d, auth, settings, ok, why] of table) {
  test(`sender notice: ${name} → ${ok ? 'allowed' : 'refused'}`, () => {
    const r = senderNoticeEligible(detection(d), auth, settings!);
    assert.equal(r.ok, ok);
    assert.match(r.ok ? r.via : r.reason, why);
  });
}

const raw = Buffer.from('From: alice@sender.example\r\nTo: bob@example.net\r\nSubject: s\r\nMessage-ID: <1@sender.example>\r\n\r\nbody\r\n');
const resolver = async (name: string, type: string) => {
  if (type === 'TXT' && name === 'sender.example') return [['v=spf1 ip4:192.0.2.0/24 -all']];
  if (type === 'TXT' && name === '_dmarc.sender.example') return [['v=DMARC1; p=reject']];
  throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
};

test('mailauth: SPF pass from the listed network makes the sender eligible', async () => {
  const auth = await checkSenderAuth(raw, { ip: '192.0.2.7', helo: 'mail.sender.example', mailFrom: 'alice@sender.example', hostname: 'mx.example.net' }, resolver);
  assert.deepEqual(auth, { spf: 'pass', spfDomain: 'sender.example', dmarc: 'pass', dmarcDomain: 'sender.example', dkimAligned: [] });
  assert.equal(senderNoticeEligible(detection(), auth, on).ok, true);
});

test('mailauth: the same sender from an infected PC elsewhere fails SPF and DMARC: no notice', async () => {
  const auth = await checkSenderAuth(raw, { ip: '203.0.113.9', helo: 'home-pc', mailFrom: 'alice@sender.example', hostname: 'mx.example.net' }, resolver);
  assert.equal(auth!.spf, 'fail');
  assert.equal(auth!.dmarc, 'fail');
  assert.equal(senderNoticeEligible(detection(), auth, on).ok, false);
});

test('one notice per sender per day, across nodes (case does not make a new sender)', async () => {
  const store = await openStore('pglite-memory:');
  try {
    const day = new Date('2004-01-26T10:00:00Z');
    assert.equal(await claimSenderNotice(store.db, 'alice@sender.example', day), true);
    assert.equal(await claimSenderNotice(store.db, 'ALICE@sender.example', new Date('2004-01-26T23:59:00Z')), false);
    assert.equal(await claimSenderNotice(store.db, 'alice@sender.example', new Date('2004-01-27T00:00:00Z')), true);
  } finally {
    await store.close();
  }
});

test('through the gateway: an authenticated sender of a banned file gets one notice (null envelope, no body); a worm\'s sender and the second one of the day get none', async () => {
  const { mkdtempSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { parseConfig } = await import('../../src/config/load.ts');
  const { runWorker } = await import('../../src/store/jobs.ts');
  const { startSmtpSink } = await import('../../src/replay/processes.ts');
  const { senderNoticeHook, senderNoticeHandlers } = await import('../../src/notify/sender.ts');
  const { EICAR, startTestGateway, swaks, waitFor } = await import('../helpers/gateway.ts');
  const relay = await startSmtpSink(mkdtempSync(join(tmpdir(), 'bs-sender-')));
  const notify = parseConfig({
    notify: { relay: `smtp://127.0.0.1:${relay.port}`, from: 'backstop@example.net', postmaster: 'postmaster@example.net', sender: { enabled: true, acknowledgeForgedSenders: true } },
  }).notify!;
  // The gateway sees its clients on loopback: SPF authorises exactly that network for sender.example.
  const loopbackResolver = async (name: string, type: string) => {
    if (type === 'TXT' && name === 'sender.example') return [['v=spf1 ip4:127.0.0.0/8 -all']];
    throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
  };
  const decisions: string[] = [];
  const store = await openStore('pglite-memory:');
  const g = await startTestGateway({}, { store, hooks: { decided: [senderNoticeHook(store.db, notify, 'mx.example.net', (d, e) => decisions.push(`${d.detail}: ${e.ok ? e.via : e.reason}`), loopbackResolver)] } });
  const stop = new AbortController();
  const worker = runWorker({ db: store.db, worker: 'w', pollMs: 50, signal: stop.signal, handlers: senderNoticeHandlers(notify, 'mx.example.net') });
  try {
    const send = (name: string, content: string) =>
      swaks(g.port, ['--to', 'bob@example.net', '--from', 'alice@sender.example', '--header', 'Subject: the body secret', '--body', 'BODY-MUST-NOT-TRAVEL', '--attach-name', name, '--attach', '-'], content);
    assert.match((await send('invoice.pif', 'not really a program')).last, /^550 5\.7\.1 /);
    assert.match((await send('eicar.com', EICAR)).last, /^550 5\.7\.1 .*Eicar/);
    assert.match((await send('again.pif', 'not really a program')).last, /^550 5\.7\.1 /);
    await waitFor(() => decisions.length === 2, 10_000).catch(() => assert.fail(`decisions: ${JSON.stringify(decisions)}`));
    await waitFor(() => relay.envelopes().length === 1, 10_000);
    assert.ok(!decisions.some((d) => d.startsWith('Eicar')), 'a worm is not even a candidate: no DNS asked, no claim made');
    assert.match(decisions.filter((d) => d.startsWith('forbidden')).join('\n'), /already had its notice today/);
    await new Promise((r) => setTimeout(r, 300));
    const sent = relay.envelopes();
    assert.equal(sent.length, 1, 'exactly one notice');
    assert.equal(sent[0]!.mailFrom, '', 'null envelope sender');
    assert.deepEqual(sent[0]!.rcptTo, ['alice@sender.example']);
    assert.match(sent[0]!.text, /^Subject: possible virus found: forbidden file type \(\.pif\)/m);
    assert.match(sent[0]!.text, /SPF pass for sender\.example/);
    assert.doesNotMatch(sent[0]!.text, /BODY-MUST-NOT-TRAVEL|bm90IHJlYWxseSBhIHByb2dyYW0/, 'neither the body nor the attachment');
  } finally {
    stop.abort();
    await worker;
    await g.close();
    await store.close();
    await relay.stop();
  }
});
