/*
 * The MIME walk: leaves and decoded names from postal-mime, attached messages
 * walked, and the structural pre-pass that refuses crafted structures before
 * postal-mime builds them.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { strToU8 } from 'fflate';
import { measureMime, MimeLimitError, structure, walkMessage } from '../../src/scan/mime.ts';
import { sha256 } from '../../src/scan/policy.ts';
import { CRLF, forward, mail } from './mail.ts';

const limits = { maxMimeDepth: 20, maxParts: 500 };

function nested(depth: number, leaf = 'x'): Buffer {
  const open = Array.from({ length: depth }, (_, i) => `Content-Type: multipart/mixed; boundary="n${i}"${CRLF}${CRLF}--n${i}`).join(CRLF);
  const close = Array.from({ length: depth }, (_, i) => `--n${depth - 1 - i}--`).join(CRLF);
  return Buffer.from(`From: a@example.org${CRLF}Subject: deep${CRLF}MIME-Version: 1.0${CRLF}${open}${CRLF}Content-Type: text/plain${CRLF}${CRLF}${leaf}${CRLF}${close}${CRLF}`);
}

test('the pre-pass counts entities and depth of an ordinary message', () => {
  const shape = measureMime(mail([{ name: 'a.pdf', bytes: strToU8('%PDF') }, { name: 'b.txt', bytes: strToU8('b') }]), 20, 500);
  assert.deepEqual(shape, { parts: 4, depth: 1, messageDepth: -1, opaque: null });
});

test('the pre-pass: nested multiparts, a longer boundary that only starts like ours, transport padding', () => {
  const raw = [
    'Content-Type: multipart/mixed; boundary=outer',
    '',
    '--outer',
    'Content-Type: multipart/alternative;',
    '  boundary="inner"',
    '',
    '--inner',
    'Content-Type: text/plain',
    '',
    '--innerX is text, not a delimiter',
    '--inner  ',
    'Content-Type: text/html',
    '',
    '<p>x</p>',
    '--inner--',
    '--outer',
    'Content-Type: application/pdf',
    '',
    'x',
    '--outer--',
    '',
  ].join(CRLF);
  assert.deepEqual(measureMime(Buffer.from(raw), 20, 500), { parts: 5, depth: 2, messageDepth: -1, opaque: null });
});

test('the pre-pass notes what postal-mime may decode differently from clamd', () => {
  const uu = Buffer.from(['Content-Type: multipart/mixed; boundary=b', '', '--b', 'Content-Type: application/octet-stream', 'Content-Transfer-Encoding: x-uuencode', '', 'x', '--b--', ''].join(CRLF));
  assert.match(measureMime(uu, 20, 500).opaque ?? '', /unusual Content-Transfer-Encoding "x-uuencode"/);
  const latin1 = Buffer.from(['Content-Type: text/plain; charset=iso-8859-1', '', 'Gr\xfc\xdfe'].join(CRLF), 'latin1');
  assert.match(measureMime(latin1, 20, 500).opaque ?? '', /charset "iso-8859-1"/);
  const noBoundary = Buffer.from(['Content-Type: multipart/mixed', '', 'x'].join(CRLF));
  assert.equal(measureMime(noBoundary, 20, 500).opaque, 'multipart without a boundary');
});

test('rfc2231-encoded-name: filename*= is decoded before the policy sees it', async () => {
  const raw = mail([
    { disposition: "Content-Disposition: attachment; filename*=UTF-8''document%2Etxt%2Epif", bytes: strToU8('a') },
    { disposition: "Content-Disposition: attachment;\r\n filename*0*=UTF-8''Gr%C3%BC%C3%9Fe;\r\n filename*1=.exe", bytes: strToU8('b') },
  ]);
  const { leaves } = await walkMessage(raw, limits);
  assert.deepEqual(leaves.filter((l) => !l.body).map((l) => l.name), ['document.txt.pif', 'Grüße.exe']);
});

test('rfc2047-encoded-name: an encoded-word file name is decoded', async () => {
  const raw = mail([{ disposition: 'Content-Disposition: attachment; filename="=?UTF-8?B?c2NyZWVuLnNjcg==?="', bytes: strToU8('a') }]);
  assert.deepEqual((await walkMessage(raw, limits)).leaves.filter((l) => !l.body).map((l) => l.name), ['screen.scr']);
});

test('an attached message (message/rfc822) is walked: its attachment is a leaf', async () => {
  const inner = mail([{ name: 'inner.pif', bytes: strToU8('MZ') }], { seq: 'inner' });
  const walked = await walkMessage(forward(inner), limits);
  assert.deepEqual(
    walked.leaves.map((l) => l.name),
    [null, null, 'inner.pif'],
  );
  assert.equal(walked.parts, 3 + 3);
});

test('deep-mime-nesting: 200 nested multiparts are refused by the pre-pass, quickly', async () => {
  const started = performance.now();
  await assert.rejects(walkMessage(nested(200), limits), (err: Error) => err instanceof MimeLimitError && err.message === 'nested deeper than 20 levels');
  assert.ok(performance.now() - started < 3000, `${performance.now() - started} ms`); // bounded, not a speed target
});

test('deep-mime-nesting: 100 000 levels (4 MB) neither hang nor blow the stack', async () => {
  const raw = nested(100_000);
  const started = performance.now();
  await assert.rejects(walkMessage(raw, limits), MimeLimitError);
  assert.ok(performance.now() - started < 5000, `${performance.now() - started} ms`); // neither hangs (bounded), not a speed target
});

test('deep-mime-nesting: exactly at the limit is fine, one more is not', async () => {
  // nested(n) puts the text part at depth n.
  await walkMessage(nested(20), limits);
  await assert.rejects(walkMessage(nested(21), limits), MimeLimitError);
});

test('deep-mime-nesting: attached messages share the depth budget', async () => {
  let raw: Buffer = mail([], { seq: 'core' });
  for (let i = 0; i < 12; i++) raw = forward(raw, i);
  // Each forward adds two levels (its multipart part, the message/rfc822 inside it).
  await assert.rejects(walkMessage(raw, limits), (err: Error) => err instanceof MimeLimitError && /attached messages nested deeper than 20|nested deeper than/.test(err.message));
  let shallow: Buffer = mail([], { seq: 'core' });
  for (let i = 0; i < 3; i++) shallow = forward(shallow, i);
  assert.equal((await walkMessage(shallow, limits)).leaves.length, 4);
});

test('many-parts: 501 attachments are refused with the limit in the reason', async () => {
  const parts = Array.from({ length: 501 }, (_, i) => ({ name: `f${i}.txt`, bytes: strToU8('x') }));
  await assert.rejects(walkMessage(mail(parts), limits), (err: Error) => err instanceof MimeLimitError && err.message === 'more than 500 parts');
});

test('many-parts: 300 000 empty parts (3 MB) are refused before postal-mime builds them', async () => {
  const raw = Buffer.from(`Content-Type: multipart/mixed; boundary=b${CRLF}${CRLF}` + `--b${CRLF}${CRLF}`.repeat(300_000) + `--b--${CRLF}`);
  // The limit's own reason, from the pre-pass's count (no timing asserted: speed lives in the benches).
  await assert.rejects(walkMessage(raw, limits), (err: Error) => err instanceof MimeLimitError && err.message === 'more than 500 parts');
});

test('many-parts: parts of attached messages count toward the same limit', async () => {
  const inner = mail(Array.from({ length: 300 }, (_, i) => ({ name: `i${i}.txt`, bytes: strToU8('x') }))); // 302 entities
  const tight = { ...limits, maxParts: 305 };
  assert.equal((await walkMessage(forward(inner, 1), tight)).parts, 305);
  await assert.rejects(walkMessage(forward(forward(inner, 1), 2), tight), (err: Error) => err instanceof MimeLimitError && err.message === 'more than 305 parts');
});

/** Leaves as postal-mime makes them (the reference the hand split must match), as name:sha256. */
async function referenceLeaves(raw: Buffer): Promise<string[]> {
  const PostalMime = (await import('postal-mime')).default;
  const m = await PostalMime.parse(raw, { attachmentEncoding: 'arraybuffer' });
  const out: string[] = [];
  if (m.text) out.push(`null:${sha256(new TextEncoder().encode(m.text))}`);
  if (m.html) out.push(`null:${sha256(new TextEncoder().encode(m.html))}`);
  for (const a of m.attachments) out.push(`${a.filename ?? null}:${sha256(new Uint8Array(a.content as ArrayBuffer))}`);
  return out;
}

test('the hand split gives postal-mime\'s leaves for plain messages, and leaves everything unusual to postal-mime', async () => {
  const x = strToU8('x');
  const plain: [string, Buffer][] = [
    ['two attachments', mail([{ name: 'a.pdf', bytes: strToU8('%PDF-1.4 hello') }, { name: 'b b.exe', bytes: new Uint8Array(1000).fill(7) }])],
    ['single part', Buffer.from(`From: a${CRLF}Subject: x${CRLF}${CRLF}hello world${CRLF}begin 644 a.pif${CRLF}`)],
    ['LF line ends, unquoted name', Buffer.from('From: a\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nhi there\n--b\nContent-Type: application/pdf; name=x.pdf\nContent-Transfer-Encoding: base64\n\naGVsbG8=\n--b--\n')],
  ];
  for (const [label, raw] of plain) {
    const s = structure(raw, 20, 500);
    assert.ok(s.leaves, `${label}: hand split`);
    assert.deepEqual(s.leaves.map((l) => `${l.name}:${sha256(l.content)}`), await referenceLeaves(raw), label);
  }
  const unusual: [string, Buffer, RegExp | null][] = [
    ['RFC 2047 name', mail([{ disposition: 'Content-Disposition: attachment; filename="=?utf-8?B?ZG9jLnBpZg==?="', bytes: x }]), null],
    ['RFC 2231 name', mail([{ disposition: "Content-Disposition: attachment; filename*=utf-8''doc%2Epif", bytes: x }]), null],
    ['two filenames', mail([{ disposition: 'Content-Disposition: attachment; filename="a.txt"; filename="a.pif"', bytes: x }]), null],
    ['name and filename differ', mail([{ type: 'application/octet-stream; name="a.pif"', name: 'a.txt', bytes: x }]), null],
    ['quoted-printable', Buffer.from(`Content-Type: text/plain${CRLF}Content-Transfer-Encoding: quoted-printable${CRLF}${CRLF}a=3Db${CRLF}`), null],
    ['attached message', forward(mail([{ name: 'inner.pif', bytes: x }])), null],
    ['padding inside base64', Buffer.from(['Content-Type: multipart/mixed; boundary=b', '', '--b', 'Content-Type: application/pdf; name=x.pdf', 'Content-Transfer-Encoding: base64', '', 'aGVsbG8=TVo=', '--b--', ''].join(CRLF)), /base64/],
    ['not a header line', Buffer.from(['Content-Type: multipart/mixed; boundary=b', '', '--b', 'Content-Type: application/pdf; name=x.pdf', 'garbage', '', 'x', '--b--', ''].join(CRLF)), null],
  ];
  for (const [label, raw, opaque] of unusual) {
    const s = structure(raw, 20, 500);
    assert.equal(s.leaves, null, `${label}: postal-mime's`);
    if (opaque) assert.match(s.opaque ?? '', opaque, label);
    // And the walk still gives every leaf, through postal-mime.
    assert.ok((await walkMessage(raw, limits)).leaves.length > 0, label);
  }
});
