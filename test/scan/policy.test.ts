/*
 * The built-in policy through the whole scanner, without clamd: what a
 * gateway with no clamd configured still refuses. Crafted inputs are named
 * after the attack.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { strToU8, zipSync } from 'fflate';
import { parseConfig } from '../../src/config/load.ts';
import { readCentralDirectory } from '../../src/scan/archive.ts';
import { createScanner } from '../../src/scan/scanner.ts';
import { formatVerdict } from '../../src/scan/verdict.ts';
import { EICAR } from '../../src/replay/clamd.ts';
import { forward, mail, noise, tinyPe, type Part } from './mail.ts';

const scanner = createScanner(parseConfig({}));

async function verdictOf(raw: Uint8Array, s = scanner): Promise<string> {
  return formatVerdict((await s.scanMessage(raw)).verdict);
}
const one = (p: Part) => mail([p]);

test('clean mail with an office document (itself a zip) and a harmless zip is clean', async () => {
  const docx = zipSync({ 'word/document.xml': strToU8('<w:document/>'), '[Content_Types].xml': strToU8('<Types/>') });
  const zip = zipSync({ 'figures.csv': strToU8('m,t\n' + 'jan,1\n'.repeat(5000)) });
  assert.equal(await verdictOf(mail([{ name: 'minutes.docx', bytes: docx }, { name: 'figures.zip', bytes: zip }])), 'clean');
});

test('no clamd configured: a message with no findings is clean, and says it was not from the cache', async () => {
  const r = await scanner.scanMessage(mail([{ name: 'a.pdf', bytes: strToU8('%PDF-1.4') }]));
  assert.deepEqual([r.verdict.kind, r.cached], ['clean', false]);
});

test('EICAR is found without clamd: as an attachment, as the body, and in a zip in a zip', async () => {
  assert.equal(await verdictOf(one({ name: 'eicar.com.txt', bytes: strToU8(EICAR) })), 'infected Eicar-Test-Signature');
  assert.equal(await verdictOf(mail([], { body: EICAR })), 'infected Eicar-Test-Signature');
  const nested = zipSync({ 'in.zip': zipSync({ 'eicar.txt': strToU8(EICAR) }) });
  const r = await scanner.scanMessage(one({ name: 'e.zip', bytes: nested }));
  assert.deepEqual(r.verdict, { kind: 'infected', name: 'Eicar-Test-Signature', engine: 'builtin' });
});

test('forbidden file type and double extension, as the verdict texts say them', async () => {
  assert.equal(await verdictOf(one({ name: 'document.pif', bytes: strToU8('x') })), 'banned forbidden file type (.pif)');
  assert.equal(await verdictOf(one({ name: 'doc.txt.pif', bytes: strToU8('x') })), 'banned double extension (doc.txt.pif)');
});

test('padded-double-extension: a padded name in a real message is refused', async () => {
  assert.equal(await verdictOf(one({ name: `readme.txt${' '.repeat(40)}.exe`, bytes: strToU8('x') })), 'banned padded file name hiding .exe (readme.txt .exe)');
});

test('rtl-override-name: an RTL override in a real message is refused, the name shown neutered', async () => {
  assert.equal(await verdictOf(one({ name: 'SexyPhoto\u202Egpj.scr', bytes: strToU8('x') })), 'banned bidirectional override in file name (SexyPhoto?gpj.scr)');
});

test('rfc2231-encoded-name: an encoded double extension is decoded and refused', async () => {
  const raw = one({ disposition: "Content-Disposition: attachment; filename*=UTF-8''document%2Etxt%2Epif", bytes: strToU8('hi') });
  assert.equal(await verdictOf(raw), 'banned double extension (document.txt.pif)');
});

test('rfc2047-encoded-name: an encoded .scr in Content-Type name= is decoded and refused', async () => {
  const raw = one({ type: 'application/octet-stream; name="=?ISO-8859-1?Q?screen=2Escr?="', disposition: 'Content-Disposition: attachment', bytes: strToU8('hi') });
  assert.equal(await verdictOf(raw), 'banned forbidden file type (.scr)');
});

test('pe-under-jpg-name: a PE image is banned whatever its name and Content-Type', async () => {
  assert.equal(await verdictOf(one({ name: 'photo.jpg', type: 'image/jpeg', bytes: tinyPe() })), 'banned executable content (PE) in "photo.jpg"');
  assert.equal(await verdictOf(one({ name: 'photo.jpg', type: 'image/jpeg', bytes: zipSync({ 'scan.jpg': tinyPe() }) })), 'banned executable content (PE) in "scan.jpg" in photo.jpg');
});

test('a text file that starts with "MZ" is not mistaken for a program', async () => {
  assert.equal(await verdictOf(one({ name: 'prices.txt', bytes: strToU8('MZ Motors price list\n'.repeat(20)) })), 'clean');
});

test('a banned name inside a zip inside a zip is found, and the path is named', async () => {
  const outer = zipSync({ 'inner.zip': zipSync({ 'readme.pif': strToU8('x') }) });
  assert.equal(await verdictOf(one({ name: 'outer.zip', bytes: outer })), 'banned forbidden file type (.pif) in inner.zip in outer.zip');
});

test('a uuencoded program in the message body is refused by its name', async () => {
  const body = `Here it is.\r\n\r\nbegin 644 document.scr\r\nM35H\r\n\`\r\nend\r\n`;
  assert.equal(await verdictOf(mail([], { body })), 'banned forbidden file type (.scr) uuencoded in the message body');
});

test('an attached message (message/rfc822) is walked: its .pif is found', async () => {
  const inner = one({ name: 'payload.pif', bytes: strToU8('x') });
  assert.equal(await verdictOf(forward(inner)), 'banned forbidden file type (.pif)');
});

test('scan.bannedExtensions replaces the built-in list', async () => {
  const s = createScanner(parseConfig({ scan: { bannedExtensions: ['docm'] } }));
  assert.equal(await verdictOf(one({ name: 'a.exe', bytes: strToU8('x') }), s), 'clean');
  assert.equal(await verdictOf(one({ name: 'macro.docm', bytes: strToU8('x') }), s), 'banned forbidden file type (.docm)');
});

test('zip-bomb: a 20 MB entry that compresses 1000:1 is unscannable, decided before inflating', async () => {
  const bomb = zipSync({ 'zeros.txt': new Uint8Array(20 * 1024 * 1024) }, { level: 9 });
  assert.ok(bomb.length < 100_000);
  // The ratio reason comes from the entry's declared sizes in the central directory, read before any inflating.
  assert.equal(await verdictOf(one({ name: 'bomb.zip', bytes: bomb })), 'unscannable archive limit: expansion ratio over 100:1 (bomb.zip)');
});

test('zip-bomb: many modest entries over scan.maxExpandedBytes in total are unscannable', async () => {
  // 30 entries of 1 MB of noise each (incompressible: the ratio check cannot see them).
  const entries = Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`part${i}.bin`, noise(1024 * 1024, i + 1)]));
  const zip = zipSync(entries, { level: 0 });
  const s = createScanner(parseConfig({ scan: { maxExpandedBytes: 16 * 1024 * 1024 } }));
  assert.equal(await verdictOf(one({ name: 'big.zip', bytes: zip }), s), `unscannable archive limit: expands beyond ${16 * 1024 * 1024} bytes (big.zip)`);
});

test('zip-bomb: an entry that lies about its size is cut off at the declared size, never inflated in full', async () => {
  const zip = zipSync({ 'small.txt': new Uint8Array(5 * 1024 * 1024) }, { level: 9 });
  // Patch the central directory's uncompressed size (offset 24) to claim 100 bytes.
  const cd = Buffer.from(zip).indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
  Buffer.from(zip.buffer, zip.byteOffset).writeUInt32LE(100, cd + 24);
  assert.equal(readCentralDirectory(zip, 10)[0]!.uncompressedSize, 100);
  assert.equal(await verdictOf(one({ name: 'liar.zip', bytes: zip })), `unscannable archive limit: entry expands beyond ${100 + 1024} bytes (liar.zip)`);
});

test('zip-bomb: more entries than scan.maxArchiveEntries is unscannable', async () => {
  const zip = zipSync(Object.fromEntries(Array.from({ length: 1001 }, (_, i) => [`f${i}.txt`, strToU8('x')])));
  assert.equal(await verdictOf(one({ name: 'many.zip', bytes: zip })), 'unscannable archive limit: more than 1000 entries in one archive (many.zip)');
});

test('nested-zip-depth: zips nested deeper than scan.maxArchiveDepth are unscannable', async () => {
  let z = zipSync({ 'a.txt': strToU8('x') });
  for (let i = 0; i < 6; i++) z = zipSync({ [`level${i}.zip`]: z });
  assert.equal(await verdictOf(one({ name: 'deep.zip', bytes: z })), 'unscannable archive limit: nested deeper than 4 (level2.zip)');
  let ok = zipSync({ 'a.txt': strToU8('x') });
  for (let i = 0; i < 3; i++) ok = zipSync({ [`level${i}.zip`]: ok });
  assert.equal(await verdictOf(one({ name: 'fine.zip', bytes: ok })), 'clean');
});

test('encrypted-zip: a password-protected archive is banned', async () => {
  const z = zipSync({ 'secret.doc': strToU8('x'.repeat(100)) });
  // Set the "encrypted" bit (general purpose flags, bit 0) in the central directory record (offset 8).
  const cd = Buffer.from(z).indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
  z[cd + 8] = z[cd + 8]! | 1;
  assert.equal(await verdictOf(one({ name: 'invoice.zip', bytes: z })), 'banned password-protected archive (invoice.zip)');
});

test('a damaged zip is unscannable, not clean', async () => {
  const z = zipSync({ 'a.txt': strToU8('x') });
  assert.match(await verdictOf(one({ name: 'broken.zip', bytes: z.subarray(0, z.length - 30) })), /^unscannable archive limit: zip archive without a central directory \(broken\.zip\)$/);
});

test('a SHA-256 blocklist bans exact files; a bad blocklist line is a start-up error', async () => {
  const bytes = strToU8('a known bad file');
  const digest = createHash('sha256').update(bytes).digest('hex');
  const dir = mkdtempSync(join(tmpdir(), 'bs-block-'));
  const file = join(dir, 'blocklist.txt');
  writeFileSync(file, `# comment\n${digest.toUpperCase()}  # found on 2004-01-26\n`);
  const s = createScanner(parseConfig({ scan: { blocklistFile: file } }));
  assert.equal(await verdictOf(one({ name: 'x.dat', bytes }), s), `banned blocklisted attachment (sha256 ${digest.slice(0, 16)}…)`);
  assert.equal(await verdictOf(one({ name: 'x.dat', bytes: strToU8('other') }), s), 'clean');
  writeFileSync(file, 'not-a-hash\n');
  assert.throws(() => createScanner(parseConfig({ scan: { blocklistFile: file } })), /blocklist\.txt:1: expected a SHA-256 in hex/);
});

test('deep-mime-nesting through the scanner: unscannable with the limit as the reason', async () => {
  const depth = 200;
  const open = Array.from({ length: depth }, (_, i) => `Content-Type: multipart/mixed; boundary="n${i}"\r\n\r\n--n${i}`).join('\r\n');
  const raw = Buffer.from(`From: a@b\r\nSubject: deep\r\nMIME-Version: 1.0\r\n${open}\r\n\r\nx\r\n`);
  assert.equal(await verdictOf(raw), 'unscannable MIME limit: nested deeper than 20 levels');
});

test('many-parts through the scanner: unscannable with the limit as the reason', async () => {
  const parts = Array.from({ length: 501 }, (_, i) => ({ name: `f${i}.txt`, bytes: strToU8('x') }));
  assert.equal(await verdictOf(mail(parts)), 'unscannable MIME limit: more than 500 parts');
});

test('scanFile applies the same policy to a single file', async () => {
  assert.equal(formatVerdict((await scanner.scanFile('photo.jpg', tinyPe())).verdict), 'banned executable content (PE) in "photo.jpg"');
  assert.equal(formatVerdict((await scanner.scanFile('notes.txt', strToU8('hello'))).verdict), 'clean');
});

const badSettings: [string, unknown, RegExp][] = [
  ['an unknown sniffed type', { bannedTypes: ['EXE'] }, /scan\.bannedTypes\.0: got "EXE"/],
  ['an extension with a dot', { bannedExtensions: ['.exe'] }, /scan\.bannedExtensions\.0: got "\.exe": an extension in lower case without the dot/],
  ['an upper-case extension', { bannedExtensions: ['EXE'] }, /scan\.bannedExtensions\.0: got "EXE"/],
  ['a zero cacheMaxLeafBytes', { cacheMaxLeafBytes: 0 }, /scan\.cacheMaxLeafBytes: got 0: cacheMaxLeafBytes must be greater than 0/],
  ['a fractional maxMimeDepth', { maxMimeDepth: 2.5 }, /scan\.maxMimeDepth: got 2\.5: maxMimeDepth must be a whole number/],
  ['a negative cacheEntries', { cacheEntries: -1 }, /scan\.cacheEntries: got -1: cacheEntries must not be negative/],
  ['a misspelt key', { maxPart: 10 }, /scan\.maxPart: unknown key/],
];
for (const [what, scan, expected] of badSettings) {
  test(`scan settings: ${what} is refused with the key named`, () => assert.throws(() => parseConfig({ scan }), (err: Error) => expected.test(err.message)));
}

test('scan settings: the defaults', () => {
  const { scan } = parseConfig({});
  assert.deepEqual(
    [scan.maxMimeDepth, scan.maxParts, scan.maxArchiveDepth, scan.maxArchiveEntries, scan.maxExpansionRatio, scan.maxExpandedBytes, scan.cacheEntries, scan.cacheMaxLeafBytes, scan.bannedTypes],
    [20, 500, 4, 1000, 100, 200 * 1024 * 1024, 50_000, 25 * 1024 * 1024, ['PE', 'MS-DOS', 'ELF', 'Mach-O', 'LNK']],
  );
});

test('streamed-entry: a member above scan.maxBufferedEntryBytes is streamed, and its head still sniffed (a PE is banned)', async () => {
  const s = createScanner(parseConfig({ scan: { maxBufferedEntryBytes: 1024 * 1024 } }));
  const big = Buffer.concat([tinyPe(), noise(3 * 1024 * 1024)]);
  assert.equal(await verdictOf(one({ name: 'data.zip', bytes: zipSync({ 'notes.txt': big }, { level: 0 }) }), s), 'banned executable content (PE) in "notes.txt" in data.zip');
  assert.equal(await verdictOf(one({ name: 'data.zip', bytes: zipSync({ 'noise.bin': noise(3 * 1024 * 1024) }, { level: 0 }) }), s), 'clean');
});

test('streamed-entry-archive: a member above scan.maxBufferedEntryBytes that is itself an archive is unscannable (we cannot open it unheld)', async () => {
  const s = createScanner(parseConfig({ scan: { maxBufferedEntryBytes: 1024 * 1024 } }));
  const inner = zipSync({ 'noise.bin': noise(2 * 1024 * 1024) }, { level: 0 });
  assert.match(await verdictOf(one({ name: 'outer.zip', bytes: zipSync({ 'inner.zip': inner }, { level: 0 }) }), s), /^unscannable archive limit: archive entry "inner\.zip" of \d+ bytes is larger than 1048576 bytes and itself an archive$/);
});
