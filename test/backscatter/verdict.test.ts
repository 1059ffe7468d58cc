import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makeKeyring, signPrvs } from '../../src/backscatter/batv.ts';
import { classify } from '../../src/backscatter/classify.ts';
import { checkBounceRecipient, decideAtData, type RcptPolicy } from '../../src/backscatter/shield.ts';
import {
  bounceVerdict,
  isStampedMessageId,
  messageIdStamp,
  normalizeMessageId,
  stampedMessageId,
  verifyMessageIdStamp,
  type VerdictContext,
} from '../../src/backscatter/verdict.ts';

const KEY = Buffer.from('stamp key now');
const OLD = Buffer.from('stamp key before');
const NOW = Date.UTC(2024, 0, 26, 12);
const ring = makeKeyring({ num: 1, secret: 'batv now' });

test('normalizeMessageId table', () => {
  const table: [string, string][] = [
    ['<a@b>', 'a@b'],
    ['  <a@b>  ', 'a@b'],
    ['a@b', 'a@b'],
    ['junk <a@b> more', 'a@b'],
  ];
  for (const [input, want] of table) assert.equal(normalizeMessageId(input), want, input);
});

test('messageIdStamp binds the Message-ID; rotation keeps the old key', () => {
  const stamp = messageIdStamp('<m1@ours.example>', KEY);
  assert.match(stamp, /^bs1\.[0-9a-f]{20}$/);
  const table: [string, string, Buffer[], boolean][] = [
    ['<m1@ours.example>', stamp, [KEY], true],
    ['m1@ours.example', stamp, [KEY], true],
    ['<m1@ours.example>', stamp.toUpperCase().replace('BS1', 'bs1'), [KEY], true],
    ['<m2@ours.example>', stamp, [KEY], false],
    ['<m1@ours.example>', stamp, [OLD], false],
    ['<m1@ours.example>', messageIdStamp('<m1@ours.example>', OLD), [KEY, OLD], true],
    ['<m1@ours.example>', 'bs1.zz', [KEY], false],
    ['<m1@ours.example>', '', [KEY], false],
  ];
  for (const [id, s, keys, want] of table) assert.equal(verifyMessageIdStamp(id, s, keys), want, `${id} ${s}`);
});

test('stampedMessageId / isStampedMessageId', () => {
  const id = stampedMessageId('relay.ours.example', KEY, 'fixedRandom');
  assert.match(id, /^<bs1\.fixedRandom\.[0-9a-f]{20}@relay\.ours\.example>$/);
  assert.equal(isStampedMessageId(id, [KEY]), true);
  assert.equal(isStampedMessageId(id, [OLD]), false);
  assert.equal(isStampedMessageId(id.replace('fixedRandom', 'otherRandom'), [KEY]), false);
  assert.equal(isStampedMessageId('<bs1.x.00000000000000000000@h>', [KEY]), false);
  assert.notEqual(stampedMessageId('h', KEY), stampedMessageId('h', KEY));
});

function bounce(quoted: string): Buffer {
  return Buffer.from(
    `From: MAILER-DAEMON@mx.far.example\r\nSubject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; relay.ours.example\r\n\r\nFinal-Recipient: rfc822; bob@far.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n--B\r\nContent-Type: text/rfc822-headers\r\n\r\n${quoted.replace(/\n/g, '\r\n')}\r\n--B--\r\n`,
  );
}

const ctx: VerdictContext = { stampKeys: [KEY], ourRelays: ['relay.ours.example'] };

test('bounceVerdict table', async () => {
  const mid = '<m1@ours.example>';
  const table: [string, string, VerdictContext, string][] = [
    ['stamp verifies', `Message-ID: ${mid}\nX-Backstop-Stamp: ${messageIdStamp(mid, KEY)}\nFrom: a@ours.example`, ctx, 'ours'],
    ['generated id', `Message-ID: ${stampedMessageId('relay.ours.example', KEY, 'r')}\nFrom: a@ours.example`, ctx, 'ours'],
    ['our relay in Received', `Received: from pc by relay.ours.example with ESMTP\nMessage-ID: <w@pc>\nFrom: a@ours.example`, ctx, 'ours'],
    ['forged-stamp', `Message-ID: <w@pc>\nX-Backstop-Stamp: bs1.0123456789abcdef0123\nFrom: a@ours.example`, ctx, 'backscatter'],
    ['stamp-copied-from-another-message', `Message-ID: <w@pc>\nX-Backstop-Stamp: ${messageIdStamp(mid, KEY)}\nFrom: a@ours.example`, ctx, 'backscatter'],
    ['worm original', `Received: from pc by mx.isp.example\nMessage-ID: <w@pc>\nFrom: a@ours.example`, ctx, 'backscatter'],
    ['forged-our-received-line with the chain distrusted', `Received: from pc by relay.ours.example\nMessage-ID: <w@pc>`, { ...ctx, trustReceivedChain: false }, 'backscatter'],
    ['nothing configured', `Message-ID: <w@pc>`, { stampKeys: [], ourRelays: [] }, 'unknown'],
  ];
  for (const [name, quoted, c, want] of table) {
    const cls = await classify(bounce(quoted));
    assert.equal(cls.class, 'dsn', name);
    assert.equal(bounceVerdict(cls, c).verdict, want, name);
  }
});

test('forged-reporting-mta: our host as Reporting-MTA does not make a bounce ours', async () => {
  const cls = await classify(bounce('Message-ID: <w@pc>\nFrom: a@ours.example'));
  assert.equal(cls.reportingMta, 'relay.ours.example');
  assert.equal(bounceVerdict(cls, ctx).verdict, 'backscatter');
});

test('bounceVerdict with BATV', async () => {
  const cls = await classify(bounce('Message-ID: <w@pc>'));
  const batv = (rcpt: string) => ({ ...ctx, batv: { rcpts: [rcpt], domains: ['ours.example'], ring, now: NOW } });
  assert.equal(bounceVerdict(cls, batv(signPrvs('a@ours.example', ring, NOW))).verdict, 'ours');
  assert.equal(bounceVerdict(cls, batv('a@ours.example')).verdict, 'backscatter');
  assert.equal(bounceVerdict(cls, batv(signPrvs('a@ours.example', ring, NOW - 30 * 86_400_000))).verdict, 'backscatter');
  const noQuote = await classify(Buffer.from('From: MAILER-DAEMON@x\r\nSubject: failure notice\r\n\r\nHi. This is the qmail-send program at x.\r\n'));
  assert.equal(bounceVerdict(noQuote, ctx).verdict, 'unknown');
  assert.equal(bounceVerdict(noQuote, batv('a@ours.example')).verdict, 'backscatter');
});

test('normal mail is never backscatter', async () => {
  const cls = await classify(Buffer.from('From: c@far.example\r\nSubject: lunch\r\nMessage-ID: <x@y>\r\n\r\nhi\r\n'));
  assert.equal(bounceVerdict(cls, ctx).verdict, 'unknown');
  assert.equal(decideAtData(cls, bounceVerdict(cls, ctx), { mode: 'enforce', onBackscatter: 'refuse' }).action, 'pass');
});

test('checkBounceRecipient table (RCPT time)', () => {
  const policy: RcptPolicy = { batvDomains: ['ours.example'], ring, now: NOW, mode: 'enforce' };
  const good = signPrvs('alice@ours.example', ring, NOW);
  const expired = signPrvs('alice@ours.example', ring, NOW - 20 * 86_400_000);
  const table: [string, string, string, string, string][] = [
    // mailFrom, rcpt, action, rcpt to next hop, batv
    ['', good, 'accept', 'alice@ours.example', 'valid'],
    ['', 'alice@ours.example', 'refuse', 'alice@ours.example', 'untagged'],
    ['', expired, 'refuse', expired, 'expired'],
    ['', good.replace('=alice@', '=bob@'), 'refuse', good.replace('=alice@', '=bob@'), 'bad-signature'],
    ['', 'someone@elsewhere.example', 'accept', 'someone@elsewhere.example', 'not-batv-domain'],
    ['', 'postmaster@ours.example', 'accept', 'postmaster@ours.example', 'postmaster'],
    ['carol@far.example', 'alice@ours.example', 'accept', 'alice@ours.example', 'not-a-bounce'],
    ['carol@far.example', expired, 'accept', 'alice@ours.example', 'not-a-bounce'],
    ['carol@far.example', good, 'accept', 'alice@ours.example', 'valid'],
  ];
  for (const [from, rcpt, action, next, batv] of table) {
    const d = checkBounceRecipient(from, rcpt, policy);
    assert.deepEqual([d.action, d.rcpt, d.batv], [action, next, batv], `${from || '<>'} → ${rcpt}`);
    if (action === 'refuse') assert.deepEqual([d.reply?.code, d.reply?.enhanced], [550, '5.7.1']);
  }
});

test('log-only mode says what it would refuse and accepts', async () => {
  const d = checkBounceRecipient('', 'alice@ours.example', { batvDomains: ['ours.example'], ring, now: NOW, mode: 'log-only' });
  assert.equal(d.action, 'accept');
  assert.equal(d.wouldRefuse?.code, 550);
  const cls = await classify(bounce('Message-ID: <w@pc>'));
  const v = bounceVerdict(cls, ctx);
  assert.deepEqual(decideAtData(cls, v, { mode: 'log-only', onBackscatter: 'quarantine' }).wouldAct, 'quarantine');
  assert.equal(decideAtData(cls, v, { mode: 'enforce', onBackscatter: 'quarantine' }).action, 'quarantine');
  const refused = decideAtData(cls, v, { mode: 'enforce', onBackscatter: 'refuse' });
  assert.deepEqual([refused.action, refused.reply?.code, refused.reply?.enhanced], ['refuse', 550, '5.7.1']);
});

test('rcpt-with-hostile-characters: the reply text is cleaned', () => {
  const d = checkBounceRecipient('', 'al\r\nice@ours.example', { batvDomains: ['ours.example'], ring, now: NOW, mode: 'enforce' });
  assert.doesNotMatch(d.reply?.text ?? '', /[\r\n]/);
});

