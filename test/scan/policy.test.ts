import assert from 'node:assert/strict';
import { test } from 'node:test';
import { strToU8, zipSync } from 'fflate';
import { parseConfig } from '../../src/config/load.ts';
import { checkFileName, DEFAULT_BANNED_EXTENSIONS } from '../../src/scan/names.ts';
import { createScanner } from '../../src/scan/scanner.ts';
import { sniff } from '../../src/scan/sniff.ts';
import { formatVerdict } from '../../src/scan/verdict.ts';

const banned = new Set(DEFAULT_BANNED_EXTENSIONS);
const EICAR = 'X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*';

const names: [string, string | null][] = [
  ['report.pdf', null],
  ['minutes.docx', null],
  ['archive.tar.gz', null],
  ['noextension', null],
  ['document.pif', 'forbidden file type (.pif)'],
  ['SCREENSAVER.SCR', 'forbidden file type (.scr)'],
  ['doc.txt.pif', 'double extension (doc.txt.pif)'],
  ['invoice.pdf.exe', 'double extension (invoice.pdf.exe)'],
  ['readme.exe.', 'forbidden file type (.exe)'],
  ['readme.exe  ', 'forbidden file type (.exe)'],
  ['file.{3050F4D8-98B5-11CF-BB82-00AA00BDCE0B}', 'class-id extension (file.{3050F4D8-98B5-11CF-BB82-00AA00BDCE0B})'],
];
for (const [name, expected] of names) {
  test(`file name ${JSON.stringify(name)} → ${expected ?? 'allowed'}`, () => assert.equal(checkFileName(name, banned), expected));
}

test('padded-double-extension: spaces push .exe out of sight', () => {
  assert.match(checkFileName(`readme.txt${' '.repeat(60)}.exe`, banned)!, /^padded file name hiding \.exe/);
});

test('rtl-override-name: "photo\\u202Egpj.exe" is refused and shown neutered', () => {
  const verdict = checkFileName('photo\u202Egpj.exe', banned)!;
  assert.match(verdict, /^bidirectional override in file name \(photo\?gpj\.exe\)$/);
});

test('sniff: executables are known by their bytes', () => {
  assert.equal(sniff(new Uint8Array([0x4d, 0x5a, 0x90, 0])), 'PE');
  assert.equal(sniff(new Uint8Array([0x7f, 0x45, 0x4c, 0x46])), 'ELF');
  assert.equal(sniff(new Uint8Array([0xcf, 0xfa, 0xed, 0xfe])), 'Mach-O');
  assert.equal(sniff(zipSync({ a: strToU8('x') })), 'zip');
  assert.equal(sniff(strToU8('%PDF-1.7')), null);
});

// ---- whole messages through the scanner's built-in policy (no clamd) ----

const scanner = createScanner(parseConfig({}));
const CRLF = '\r\n';

function message(parts: { name?: string; nameHeader?: string; type?: string; bytes: Uint8Array }[]): Buffer {
  const lines = ['From: a@example.org', 'To: b@example.net', 'Subject: test', 'Message-ID: <t@example.org>', 'MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary="b0"', '', 'preamble'];
  for (const p of parts) {
    lines.push('--b0', `Content-Type: ${p.type ?? 'application/octet-stream'}`, 'Content-Transfer-Encoding: base64');
    lines.push(p.nameHeader ?? `Content-Disposition: attachment; filename="${p.name}"`, '', Buffer.from(p.bytes).toString('base64'));
  }
  lines.push('--b0--', '');
  return Buffer.from(lines.join(CRLF));
}

async function verdictOf(raw: Uint8Array): Promise<string> {
  return formatVerdict((await scanner.scanMessage(raw)).verdict);
}

test('clean mail with an office document and a harmless zip is clean', async () => {
  const docx = zipSync({ 'word/document.xml': strToU8('<w:document/>'), '[Content_Types].xml': strToU8('<Types/>') });
  const zip = zipSync({ 'figures.csv': strToU8('m,t\n' + 'jan,1\n'.repeat(5000)) });
  assert.equal(await verdictOf(message([{ name: 'minutes.docx', bytes: docx }, { name: 'figures.zip', bytes: zip }])), 'clean');
});

test('EICAR is found without clamd, as an attachment and in a zip', async () => {
  assert.equal(await verdictOf(message([{ name: 'eicar.txt', bytes: strToU8(EICAR) }])), 'infected Eicar-Test-Signature');
  assert.equal(await verdictOf(message([{ name: 'e.zip', bytes: zipSync({ 'eicar.txt': strToU8(EICAR) }) }])), 'infected Eicar-Test-Signature');
});

test('pe-under-jpg-name: an executable is banned whatever its name', async () => {
  assert.equal(await verdictOf(message([{ name: 'photo.jpg', type: 'image/jpeg', bytes: new Uint8Array([0x4d, 0x5a, 1, 2, 3]) }])), 'banned executable content (PE) in "photo.jpg"');
});

test('rfc2231-encoded-name: an encoded double extension is decoded and refused', async () => {
  const raw = message([{ nameHeader: "Content-Disposition: attachment; filename*=UTF-8''document%2Etxt%2Epif", bytes: strToU8('hi') }]);
  assert.equal(await verdictOf(raw), 'banned double extension (document.txt.pif)');
});

test('rfc2047-encoded-name: an encoded .scr is decoded and refused', async () => {
  const raw = message([{ nameHeader: 'Content-Disposition: attachment; filename="=?UTF-8?B?c2NyZWVuLnNjcg==?="', bytes: strToU8('hi') }]);
  assert.equal(await verdictOf(raw), 'banned forbidden file type (.scr)');
});

test('a banned name inside a zip inside a zip is found', async () => {
  const inner = zipSync({ 'readme.pif': strToU8('x') });
  const outer = zipSync({ 'inner.zip': inner });
  assert.equal(await verdictOf(message([{ name: 'outer.zip', bytes: outer }])), 'banned forbidden file type (.pif) in inner.zip in outer.zip');
});

test('zip-bomb: a 20 MB entry that compresses 1000:1 is unscannable, not inflated', async () => {
  const bomb = zipSync({ 'zeros.txt': new Uint8Array(20 * 1024 * 1024) }, { level: 9 });
  assert.ok(bomb.length < 100_000);
  const started = Date.now();
  assert.match(await verdictOf(message([{ name: 'bomb.zip', bytes: bomb }])), /^unscannable archive limit: expansion ratio over 100:1/);
  assert.ok(Date.now() - started < 2000);
});

test('nested-zip-depth: zips nested deeper than the limit are unscannable', async () => {
  let z = zipSync({ 'a.txt': strToU8('x') });
  for (let i = 0; i < 6; i++) z = zipSync({ [`level${i}.zip`]: z });
  assert.match(await verdictOf(message([{ name: 'deep.zip', bytes: z }])), /^unscannable archive limit: nested deeper than 4/);
});

test('encrypted-zip: a password-protected archive is banned', async () => {
  const z = zipSync({ 'secret.doc': strToU8('x'.repeat(100)) });
  // Set the "encrypted" bit in the central directory record (general purpose flags, offset 8).
  const cd = Buffer.from(z).indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
  z[cd + 8] = z[cd + 8]! | 1;
  assert.equal(await verdictOf(message([{ name: 'invoice.zip', bytes: z }])), 'banned password-protected archive (invoice.zip)');
});

test('deep-mime-nesting: 200 nested multiparts are unscannable, quickly', async () => {
  const depth = 200;
  const open = Array.from({ length: depth }, (_, i) => `Content-Type: multipart/mixed; boundary="n${i}"${CRLF}${CRLF}--n${i}`).join(CRLF);
  const close = Array.from({ length: depth }, (_, i) => `--n${depth - 1 - i}--`).join(CRLF);
  const raw = Buffer.from(`From: a@b${CRLF}Subject: deep${CRLF}MIME-Version: 1.0${CRLF}${open}${CRLF}Content-Type: text/plain${CRLF}${CRLF}x${CRLF}${close}${CRLF}`);
  const started = Date.now();
  assert.match(await verdictOf(raw), /^unscannable MIME: Maximum MIME nesting depth of 20/);
  assert.ok(Date.now() - started < 2000);
});

test('many-parts: more parts than the limit are unscannable', async () => {
  const parts = Array.from({ length: 501 }, (_, i) => ({ name: `f${i}.txt`, bytes: strToU8('x') }));
  assert.equal(await verdictOf(message(parts)), 'unscannable MIME: more than 500 parts');
});

test('a SHA-256 blocklist bans exact files', async () => {
  const { mkdtempSync, writeFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const { createHash } = await import('node:crypto');
  const bytes = strToU8('a known bad file');
  const dir = mkdtempSync(join(tmpdir(), 'bs-block-'));
  const file = join(dir, 'blocklist.txt');
  writeFileSync(file, `# comment\n${createHash('sha256').update(bytes).digest('hex')}\n`);
  const s = createScanner(parseConfig({ scan: { blocklistFile: file } }));
  const v = (await s.scanMessage(message([{ name: 'x.dat', bytes }]))).verdict;
  assert.equal(v.kind, 'banned');
  assert.equal((await s.scanMessage(message([{ name: 'x.dat', bytes: strToU8('other') }]))).verdict.kind, 'clean');
});
