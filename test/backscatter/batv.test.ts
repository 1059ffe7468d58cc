import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  BATV_MAX_KEY_BYTES,
  BatvKeyError,
  batvDay,
  isPrvs,
  makeKeyring,
  parseKeyFile,
  parsePrvs,
  prvsHash,
  signPrvs,
  stripPrvs,
  verifyPrvs,
} from '../../src/backscatter/batv.ts';
import { eximExpand } from './exim.ts';

const DAY = 86_400_000;
const ring = makeKeyring({ num: 3, secret: 'current secret' }, [{ num: 2, secret: 'previous secret' }]);
const NOW = Date.UTC(2024, 0, 26, 12); // day 19748 → DDD 748

test('batvDay: days since 1970 mod 1000', () => {
  const table: [number, number][] = [
    [0, 0],
    [DAY - 1, 0],
    [DAY, 1],
    [999 * DAY, 999],
    [1000 * DAY, 0],
    [NOW, 748],
  ];
  for (const [ms, day] of table) assert.equal(batvDay(ms), day, String(ms));
});

test('prvsHash: HMAC-SHA1 over "K" "DDD" address, first 3 bytes, lower-case hex', () => {
  const h = prvsHash(Buffer.from('secret'), 3, 7, 'user@example.org');
  assert.match(h, /^[0-9a-f]{6}$/);
  // "007", not "7": the day is always three digits.
  assert.notEqual(h, prvsHash(Buffer.from('secret'), 3, 70, 'user@example.org'));
});

test('parsePrvs / isPrvs / stripPrvs table', () => {
  const table: [string, ReturnType<typeof parsePrvs>][] = [
    ['prvs=3748abcdef=user@example.org', { keyNum: 3, day: 748, hash: 'abcdef', original: 'user@example.org' }],
    ['PRVS=3748ABCDEF=User@Example.ORG', { keyNum: 3, day: 748, hash: 'ABCDEF', original: 'User@Example.ORG' }],
    ['prvs=3748abcdef=a=b@example.org', { keyNum: 3, day: 748, hash: 'abcdef', original: 'a=b@example.org' }],
    ['prvs=3748abcde=user@example.org', null], // 5 hex digits
    ['prvs=374abcdef0=user@example.org', null], // DDD not digits
    ['prvs=x748abcdef=user@example.org', null],
    ['prvs=3748abcxyz=user@example.org', null],
    ['prvs=3748abcdef=user', null],
    ['user@example.org', null],
    ['', null],
    [`prvs=3748abcdef=${'a'.repeat(300)}@example.org`, null], // longer than a path may be
  ];
  for (const [addr, want] of table) {
    assert.deepEqual(parsePrvs(addr), want, addr);
    assert.equal(isPrvs(addr), want !== null, addr);
    assert.equal(stripPrvs(addr), want?.original ?? addr, addr);
  }
});

test('signPrvs: format, 7 days ahead, deterministic within a day, domain lower-cased', () => {
  const tagged = signPrvs('user@Example.ORG', ring, NOW);
  assert.match(tagged, /^prvs=3755[0-9a-f]{6}=user@example\.org$/);
  assert.equal(signPrvs('user@example.org', ring, NOW + 3600_000), tagged, 'a retry the same day keeps its tag');
  assert.notEqual(signPrvs('user@example.org', ring, NOW + DAY), tagged);
  assert.equal(signPrvs('user@example.org', ring.current, NOW), tagged, 'a bare key signs the same');
});

test('signPrvs leaves alone what it must not sign', () => {
  const table = ['', 'postmaster', 'prvs=3748abcdef=user@example.org', 'PRVS=0001000000=x@y', `${'a'.repeat(250)}@example.org`];
  for (const addr of table) assert.equal(signPrvs(addr, ring, NOW), addr, addr);
});

test('signPrvs wraps DDD at 1000', () => {
  assert.match(signPrvs('u@example.org', ring, 995 * DAY), /^prvs=3002/);
  assert.match(signPrvs('u@example.org', ring, 992 * DAY), /^prvs=3999/);
});

test('verifyPrvs table', () => {
  const tagged = signPrvs('user@example.org', ring, NOW);
  const old = signPrvs('user@example.org', { num: 2, secret: Buffer.from('previous secret') }, NOW);
  const table: [string, string, number, string][] = [
    ['fresh tag', tagged, NOW, 'valid'],
    ['last valid day', tagged, NOW + 7 * DAY, 'valid'],
    ['one day of clock skew ahead', tagged, NOW - DAY, 'valid'],
    ['untagged', 'user@example.org', NOW, 'untagged'],
    ['previous key still verifies', old, NOW, 'valid'],
    ['unknown key number', tagged.replace(/^prvs=3/, 'prvs=5'), NOW, 'unknown-key'],
    ['tampered local part', tagged.replace('=user@', '=admin@'), NOW, 'bad-signature'],
    ['tampered day', tagged.replace(/^prvs=3755/, 'prvs=3756'), NOW, 'bad-signature'],
  ];
  for (const [name, addr, now, kind] of table) assert.equal(verifyPrvs(addr, ring, now).kind, kind, name);
  const ok = verifyPrvs(tagged, ring, NOW);
  assert.deepEqual(ok, { kind: 'valid', original: 'user@example.org', keyNum: 3, daysLeft: 7 });
});

test('tag-replay-after-expiry', () => {
  const tagged = signPrvs('user@example.org', ring, NOW);
  for (const later of [8, 9, 30, 500, 990]) assert.equal(verifyPrvs(tagged, ring, NOW + later * DAY).kind, 'expired', `${later} days later`);
  // A tag from 2 days too early in the future is not "valid" either (someone minting far-future tags).
  assert.equal(verifyPrvs(tagged, ring, NOW - 2 * DAY).kind, 'expired');
});

test('tag-expiry-across-the-1000-day-wrap', () => {
  const signedAt = 995 * DAY + 5000; // DDD = 002
  const tagged = signPrvs('user@example.org', ring, signedAt);
  assert.equal(verifyPrvs(tagged, ring, 998 * DAY).kind, 'valid');
  assert.equal(verifyPrvs(tagged, ring, 1002 * DAY).kind, 'valid');
  assert.equal(verifyPrvs(tagged, ring, 1003 * DAY).kind, 'expired');
});

test('tag-case-folding: a bouncer that changes case still verifies where it can', () => {
  const tagged = signPrvs('user@example.org', ring, NOW);
  const table = [tagged.toUpperCase().replace('USER@', 'user@'), tagged.replace('prvs=', 'PRVS='), tagged.replace('@example.org', '@EXAMPLE.ORG')];
  for (const addr of table) assert.equal(verifyPrvs(addr, ring, NOW).kind, 'valid', addr);
  // The local part is case-sensitive (RFC 5321 2.4) and is signed as written.
  assert.equal(verifyPrvs(tagged.replace('user@', 'USER@'), ring, NOW).kind, 'bad-signature');
});

test('tag-with-hostile-bytes does not throw', () => {
  const table = ['prvs=3748abcdef=\r\nRCPT@x', 'prvs=3748abcdef=@@@', `prvs=3748abcdef=${'@'.repeat(10000)}`, 'prvs=3748abcdef=\u202euser@example.org'];
  for (const addr of table) assert.doesNotThrow(() => verifyPrvs(addr, ring, NOW), addr);
});

test('keys: at most 64 bytes, numbers 0-9, no duplicates', () => {
  assert.doesNotThrow(() => makeKeyring({ num: 0, secret: 'k'.repeat(BATV_MAX_KEY_BYTES) }));
  const bad: [() => unknown, RegExp][] = [
    [() => makeKeyring({ num: 0, secret: 'k'.repeat(65) }), /at most 64/],
    [() => makeKeyring({ num: 10, secret: 'k' }), /0–9/],
    [() => makeKeyring({ num: 0, secret: '' }), /empty/],
    [() => makeKeyring({ num: 1, secret: 'a' }, [{ num: 1, secret: 'b' }]), /twice/],
  ];
  for (const [f, re] of bad) assert.throws(f, (e: Error) => e instanceof BatvKeyError && re.test(e.message));
});

test('parseKeyFile: first line current, later lines previous', () => {
  const r = parseKeyFile('# rotated 2024-01\n3 current secret\n\n2:previous secret\n');
  assert.equal(r.current.num, 3);
  assert.equal(r.current.secret.toString(), 'current secret');
  assert.deepEqual(r.previous.map((k) => [k.num, k.secret.toString()]), [[2, 'previous secret']]);
  assert.throws(() => parseKeyFile('# nothing\n'), /no key/);
  assert.throws(() => parseKeyFile('x secret\n'), /line 1/);
});

// Interoperability with Exim's own implementation (Debian exim4-daemon-light).
const EXIM_ADDRESSES = ['user@example.org', 'first.last+tag@mail.example.com', 'x_y-z@example.net'];

test('exim-signs-backstop-verifies', () => {
  for (const addr of EXIM_ADDRESSES) {
    const tagged = eximExpand(`\${prvs{${addr}}{current secret}{3}}`);
    assert.match(tagged, /^prvs=3\d{3}[0-9a-f]{6}=/, tagged);
    assert.equal(signPrvs(addr, ring, Date.now()), tagged, 'the same tag, byte for byte');
    assert.deepEqual(verifyPrvs(tagged, ring, Date.now()), { kind: 'valid', original: addr, keyNum: 3, daysLeft: 7 });
    // Exim with the previous key number: rotation on the Exim side verifies here too.
    const oldTag = eximExpand(`\${prvs{${addr}}{previous secret}{2}}`);
    assert.equal(verifyPrvs(oldTag, ring, Date.now()).kind, 'valid');
  }
});

test('backstop-signs-exim-verifies', () => {
  // The secret is chosen by the key number Exim read from the tag, as a rotating Exim config would.
  const check = (tag: string) =>
    eximExpand(`\${prvscheck{${tag}}{\${if eq{$prvscheck_keynum}{3}{current secret}{previous secret}}}{\${if eq{$prvscheck_result}{1}{VALID $prvscheck_address}{INVALID}}}}`);
  for (const addr of EXIM_ADDRESSES) {
    assert.equal(check(signPrvs(addr, ring, Date.now())), `VALID ${addr}`);
    assert.equal(check(signPrvs(addr, { num: 2, secret: Buffer.from('previous secret') }, Date.now())), `VALID ${addr}`);
    assert.equal(check(signPrvs(addr, ring, Date.now()).replace(/^prvs=/, 'PRVS=')), `VALID ${addr}`, 'upper-case prefix');
    // Exim 4.96 compares the hex digits case-sensitively, so we sign in lower case (as the draft
    // writes it); our own check is the more forgiving one (see tag-case-folding).
    const upperHex = signPrvs(addr, ring, Date.now()).replace(/^(prvs=\d{4})([0-9a-f]{6})/, (_, a: string, h: string) => a + h.toUpperCase());
    assert.equal(check(upperHex), 'INVALID', 'Exim: upper-case hex');
    assert.equal(verifyPrvs(upperHex, ring, Date.now()).kind, 'valid', 'Backstop: upper-case hex');
    assert.equal(check(signPrvs(addr, ring, Date.now() - 9 * DAY)), 'INVALID', 'expired for Exim as for us');
    assert.equal(verifyPrvs(signPrvs(addr, ring, Date.now() - 9 * DAY), ring, Date.now()).kind, 'expired');
    assert.equal(check(signPrvs(addr, makeKeyring({ num: 3, secret: 'wrong' }), Date.now())), 'INVALID');
  }
  // Not a tag at all: Exim expands the whole item to nothing.
  assert.equal(check('user@example.org'), '');
});
