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
