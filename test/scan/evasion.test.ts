/*
 * Where the built-in decoders and clamd can disagree, tried as an attacker
 * would: each case is a class (an encoding, a container, a compression
 * method), each test named after it, each message built at test time with
 * real tools (7z, zip, tar, gzip, bzip2, gcab, genisoimage, uuencode) or the
 * ClamAV test files. Every case must end `infected`, `banned` or
 * `unscannable` — never `clean` — against a real clamd holding only a hash
 * signature (MD5 of clam.exe: it matches only if clamd is handed the decoded
 * file byte for byte) and against one holding only the body signature.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { strToU8, zipSync } from 'fflate';
import { parseConfig } from '../../src/config/load.ts';
import { CLAMAV_TESTFILES, startClamd, TEST_SIGNATURE_NAME, type RunningClamd, type SignatureForm } from '../../src/replay/clamd.ts';
import { isEmbeddedZip, readDirectory } from '../../src/scan/archive.ts';
import { createScanner, type BackstopScanner } from '../../src/scan/scanner.ts';
import { formatVerdict } from '../../src/scan/verdict.ts';
import { CRLF, forward, mail, tinyPe } from './mail.ts';

const clamExe = readFileSync(join(CLAMAV_TESTFILES, 'clam.exe'));
const INFECTED = `infected ${TEST_SIGNATURE_NAME}`;
let dir: string;
const clamds = new Map<SignatureForm, RunningClamd>();

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bs-evasion-'));
  writeFileSync(join(dir, 'readme.txt'), clamExe); // clam.exe under a harmless name
  writeFileSync(join(dir, 'notes.txt'), tinyPe()); // a program no signature knows, under a harmless name
  for (const form of ['md5', 'body'] as const) clamds.set(form, await startClamd({ signatures: form }));
});
after(async () => {
  for (const c of clamds.values()) await c.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function run(cmd: string, args: string[]): Buffer {
  return execFileSync(cmd, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
}
/** A fresh archive of `file` made by 7z with the given switches; its bytes. */
function sevenZip(out: string, file: string, ...switches: string[]): Buffer {
  rmSync(join(dir, out), { force: true });
  run('7z', ['a', '-bso0', '-bsp0', ...switches, out, file]);
  return readFileSync(join(dir, out));
}

/** Scanners with clamd and the bans off (so clamd's view decides), and with the default policy. */
function scanners(form: SignatureForm): { bare: BackstopScanner; policy: BackstopScanner } {
  const url = clamds.get(form)!.url;
  return {
    bare: createScanner(parseConfig({ clamd: url, scan: { bannedExtensions: [], bannedTypes: [], cacheEntries: 0 } })),
    policy: createScanner(parseConfig({ clamd: url, scan: { cacheEntries: 0 } })),
  };
}
async function verdict(s: BackstopScanner, raw: Uint8Array): Promise<string> {
  return formatVerdict((await s.scanMessage(raw)).verdict);
}
const attach = (name: string, bytes: Uint8Array, seq = name) => mail([{ name, bytes }], { seq });
/** A message whose one part is given whole: headers and the encoded body as the attacker wrote them. */
function rawPart(headers: string[], body: string): Buffer {
  return Buffer.from(
    ['From: a@example.org', 'To: user@example.net', 'Subject: part', 'MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary="zz"', '', '--zz', 'Content-Type: text/plain', '', 'see attached', '--zz', ...headers, '', body, '--zz--', ''].join(CRLF),
    'latin1',
  );
}

for (const form of ['md5', 'body'] as const) {
  describe(`against a clamd with the ${form} signature only`, () => {
    // ── zip: compression methods and layout ───────────────────────────────
    test('zip-lzma-entry: an entry compressed with LZMA (method 14), which nobody on the path opens, is unscannable', async () => {
      const { bare, policy } = scanners(form);
      const zip = sevenZip('lzma.zip', 'readme.txt', '-tzip', '-mm=LZMA');
      assert.equal(readDirectory(zip, 10).entries[0]!.method, 14);
      assert.equal(await verdict(bare, attach('docs.zip', zip)), 'unscannable archive entry compressed with LZMA, which Backstop cannot open (readme.txt in docs.zip)');
      assert.match(await verdict(policy, attach('docs.zip', zip)), /^unscannable /);
    });

    test('zip-ppmd-entry: an entry compressed with PPMd (method 98) is unscannable', async () => {
      const { bare } = scanners(form);
      const zip = sevenZip('ppmd.zip', 'readme.txt', '-tzip', '-mm=PPMd');
      assert.equal(await verdict(bare, attach('docs.zip', zip)), 'unscannable archive entry compressed with PPMd, which Backstop cannot open (readme.txt in docs.zip)');
    });

    test('zip-bzip2-entry: a program named readme.txt in a bzip2 entry (method 12) is seen by bannedTypes; clam.exe so is found by clamd', async () => {
      const { bare, policy } = scanners(form);
      const pe = sevenZip('bz.zip', 'notes.txt', '-tzip', '-mm=BZip2');
      assert.equal(readDirectory(pe, 10).entries[0]!.method, 12);
      assert.equal(await verdict(policy, attach('notes.zip', pe)), 'banned executable content (PE) in "notes.txt" in notes.zip');
      assert.equal(await verdict(bare, attach('docs.zip', sevenZip('bz2.zip', 'readme.txt', '-tzip', '-mm=BZip2'))), INFECTED);
    });

    test('zip-deflate64-entry: clamd opens deflate64 and finds clam.exe; with bannedTypes on, an entry we cannot sniff is unscannable', async () => {
      const { bare, policy } = scanners(form);
      const zip = sevenZip('d64.zip', 'notes.txt', '-tzip', '-mm=Deflate64');
      assert.equal(readDirectory(zip, 10).entries[0]!.method, 9);
      assert.equal(await verdict(policy, attach('notes.zip', zip)), 'unscannable archive entry compressed with deflate64, which Backstop cannot open (notes.txt in notes.zip)');
      assert.equal(await verdict(bare, attach('docs.zip', sevenZip('d64c.zip', 'readme.txt', '-tzip', '-mm=Deflate64'))), INFECTED);
    });

    test('zip-prefixed: bytes before the first PK header (offsets not adjusted) do not hide the zip', async () => {
      const { bare, policy } = scanners(form);
      const zip = zipSync({ 'notes.txt': tinyPe() });
      const prefixed = Buffer.concat([Buffer.from('%PDF-1.4 this is not what it seems\n'.repeat(40)), zip]);
      assert.equal(isEmbeddedZip(prefixed), true);
      assert.equal(readDirectory(prefixed, 10).shift, prefixed.length - zip.length);
      assert.equal(await verdict(policy, attach('report.pdf', prefixed)), 'banned executable content (PE) in "notes.txt" in report.pdf');
      const infectedZip = Buffer.concat([Buffer.from('junk'.repeat(1000)), zipSync({ 'readme.txt': clamExe })]);
      assert.equal(await verdict(bare, attach('report.dat', infectedZip)), INFECTED);
    });

    test('zip-sfx-adjusted: a self-extractor whose offsets count the stub (zip -A) is opened too', async () => {
      const { policy } = scanners(form);
      rmSync(join(dir, 'sfx.zip'), { force: true });
      run('zip', ['-q', 'sfx.zip', 'notes.txt']);
      writeFileSync(join(dir, 'sfx.zip'), Buffer.concat([Buffer.from('#!/bin/sh\nexit 0\n'.padEnd(2048, '#')), readFileSync(join(dir, 'sfx.zip'))]));
      run('zip', ['-qA', 'sfx.zip']);
      const sfx = readFileSync(join(dir, 'sfx.zip'));
      assert.equal(readDirectory(sfx, 10).shift, 0, 'zip -A made the offsets absolute');
      assert.equal(await verdict(policy, attach('setup.dat', sfx)), 'banned executable content (PE) in "notes.txt" in setup.dat');
    });

    test('zip-encrypted: a password-protected entry is banned, never clean', async () => {
      const { bare } = scanners(form);
      const zip = sevenZip('enc.zip', 'readme.txt', '-tzip', '-psecret');
      assert.equal(await verdict(bare, attach('docs.zip', zip)), 'banned password-protected archive (docs.zip)');
      const aes = sevenZip('aes.zip', 'readme.txt', '-tzip', '-psecret', '-mem=AES256');
      assert.equal(await verdict(bare, attach('docs.zip', aes)), 'banned password-protected archive (docs.zip)');
    });

    test('zip-truncated: a zip cut short is unscannable', async () => {
      const { bare } = scanners(form);
      const zip = zipSync({ 'readme.txt': clamExe });
      assert.match(await verdict(bare, attach('docs.zip', zip.subarray(0, zip.length - 40))), /^(unscannable|infected)/);
    });

    // ── transfer encodings ────────────────────────────────────────────────
    test('base64-split-padding: base64 split into separately padded pieces reaches clamd decoded', async () => {
      const { bare } = scanners(form);
      const pieces = [clamExe.subarray(0, 100), clamExe.subarray(100, 301), clamExe.subarray(301)].map((b) => b.toString('base64')).join(CRLF);
      const raw = rawPart(['Content-Type: application/octet-stream', 'Content-Transfer-Encoding: base64', 'Content-Disposition: attachment; filename="readme.txt"'], pieces);
      assert.equal(await verdict(bare, raw), INFECTED);
    });

    test('base64-malformed: stray characters in base64 do not hide the file', async () => {
      const { bare } = scanners(form);
      const b64 = clamExe.toString('base64').replace(/(.{60})/g, '$1!*').replace(/.{76}/g, `$&${CRLF}`);
      const raw = rawPart(['Content-Type: application/octet-stream', 'Content-Transfer-Encoding: base64', 'Content-Disposition: attachment; filename="readme.txt"'], b64);
      assert.equal(await verdict(bare, raw), INFECTED);
    });

    test('quoted-printable-binary: a program sent quoted-printable is decoded', async () => {
      const { bare } = scanners(form);
      // Soft line breaks between escapes, never inside one (RFC 2045 6.7: lines of at most 76 characters).
      const lines: string[] = [''];
      for (const b of clamExe) {
        const token = b >= 33 && b <= 126 && b !== 61 ? String.fromCharCode(b) : `=${b.toString(16).toUpperCase().padStart(2, '0')}`;
        if (lines[lines.length - 1]!.length + token.length > 72) lines.push('');
        lines[lines.length - 1] += token;
      }
      const qp = lines.join(`=${CRLF}`);
      const raw = rawPart(['Content-Type: application/octet-stream', 'Content-Transfer-Encoding: quoted-printable', 'Content-Disposition: attachment; filename="readme.txt"'], qp);
      assert.equal(await verdict(bare, raw), INFECTED);
    });

    test('transfer-encoding-unknown: a part in an encoding nobody decodes (x-gzip64) is never clean', async () => {
      const { bare } = scanners(form);
      const raw = rawPart(['Content-Type: application/octet-stream', 'Content-Transfer-Encoding: x-gzip64', 'Content-Disposition: attachment; filename="readme.txt"'], clamExe.toString('base64'));
      assert.notEqual(await verdict(bare, raw), 'clean');
    });

    test('uuencode-transfer-encoding: Content-Transfer-Encoding x-uuencode is decoded or refused, never clean', async () => {
      const { bare } = scanners(form);
      const uu = execFileSync('uuencode', ['readme.txt'], { input: clamExe }).toString('latin1');
      const raw = rawPart(['Content-Type: application/octet-stream', 'Content-Transfer-Encoding: x-uuencode', 'Content-Disposition: attachment; filename="readme.txt"'], uu);
      assert.notEqual(await verdict(bare, raw), 'clean');
    });

    test('uuencode-body: a uuencoded program inside a text body reaches clamd', async () => {
      const { bare } = scanners(form);
      const uu = execFileSync('uuencode', ['readme.txt'], { input: clamExe }).toString('latin1');
      assert.notEqual(await verdict(bare, mail([], { body: `Here it is:${CRLF}${CRLF}${uu.replace(/\n/g, CRLF)}`, seq: 'uu' })), 'clean');
    });

    test('uuencode-mbox: the ClamAV uuencoded mailbox sample as an attachment', async () => {
      const { bare } = scanners(form);
      assert.equal(await verdict(bare, attach('mail.txt', readFileSync(join(CLAMAV_TESTFILES, 'clam.exe.mbox.uu')))), INFECTED);
    });

    test('binhex: a BinHex 4.0 file (ClamAV sample) as an attachment and as the body', async () => {
      const { bare } = scanners(form);
      const hqx = readFileSync(join(CLAMAV_TESTFILES, 'clam.exe.binhex'));
      assert.equal(await verdict(bare, attach('readme.hqx', hqx)), INFECTED);
      assert.notEqual(await verdict(bare, mail([], { body: hqx.toString('latin1').replace(/\r?\n/g, CRLF), seq: 'hqx' })), 'clean');
    });

    test('yenc-body: a yEnc-encoded program in a text body is never clean', async () => {
      const { bare } = scanners(form);
      const enc: number[] = [];
      for (const b of clamExe) {
        const c = (b + 42) & 0xff;
        if (c === 0 || c === 10 || c === 13 || c === 61) enc.push(61, (c + 64) & 0xff);
        else enc.push(c);
      }
      const lines = Buffer.from(enc).toString('latin1').replace(/.{128}/gs, `$&${CRLF}`);
      const body = `=ybegin line=128 size=${clamExe.length} name=readme.txt${CRLF}${lines}${CRLF}=yend size=${clamExe.length}${CRLF}`;
      const raw = Buffer.from(['From: a@example.org', 'To: user@example.net', 'Subject: yenc', 'MIME-Version: 1.0', 'Content-Type: text/plain; charset=iso-8859-1', 'Content-Transfer-Encoding: 8bit', '', body].join(CRLF), 'latin1');
      assert.notEqual(await verdict(bare, raw), 'clean');
    });

    // ── charsets, names, structure ────────────────────────────────────────
    test('charset-converted-body: a body in a charset our parser converts still reaches clamd as sent', async () => {
      const { bare } = scanners(form);
      const raw = rawPart(['Content-Type: text/plain; charset=utf-16le', 'Content-Transfer-Encoding: base64'], clamExe.toString('base64').replace(/.{76}/g, `$&${CRLF}`));
      assert.equal(await verdict(bare, raw), INFECTED);
    });

    test('rfc2231-continuations: a name split over filename*0*/filename*1 is joined and refused', async () => {
      const { policy } = scanners(form);
      const raw = rawPart(
        ['Content-Type: application/octet-stream', 'Content-Transfer-Encoding: base64', "Content-Disposition: attachment; filename*0*=UTF-8''invoice%2Epdf; filename*1=\".scr\""],
        Buffer.from('harmless bytes').toString('base64'),
      );
      assert.equal(await verdict(policy, raw), 'banned double extension (invoice.pdf.scr)');
    });

    test('nested-message-rfc822: clam.exe in a message attached to a message attached to a message', async () => {
      const { bare } = scanners(form);
      const raw = forward(forward(attach('readme.txt', clamExe, 'inner'), 1), 2);
      assert.equal(await verdict(bare, raw), INFECTED);
    });

    test('tnef-winmail-dat: the ClamAV TNEF sample as winmail.dat (application/ms-tnef) is opened by clamd', async () => {
      const { bare } = scanners(form);
      assert.equal(await verdict(bare, mail([{ name: 'winmail.dat', type: 'application/ms-tnef', bytes: readFileSync(join(CLAMAV_TESTFILES, 'clam.tnef')) }])), INFECTED);
    });

    // ── archives other than zip ───────────────────────────────────────────
    test('archive-7z: clam.exe in a 7z made now is found by clamd', async () => {
      const { bare } = scanners(form);
      assert.equal(await verdict(bare, attach('docs.7z', sevenZip('a.7z', 'readme.txt'))), INFECTED);
    });

    test('archive-7z-encrypted: an encrypted 7z is banned as password-protected, headers encrypted or not', async () => {
      const { bare } = scanners(form);
      assert.equal(await verdict(bare, attach('docs.7z', sevenZip('e.7z', 'notes.txt', '-psecret', '-mhe=on'))), 'banned password-protected archive (docs.7z)');
      // Contents encrypted, header only compressed: our check cannot see the coder; clamd's AlertEncryptedArchive does.
      assert.match(await verdict(bare, attach('docs.7z', sevenZip('f.7z', 'notes.txt', '-psecret', '-mhe=off'))), /^banned password-protected archive/);
    });

    test('archive-rar: a RAR archive, which neither we nor this clamd (no unrar) opens, is unscannable', async () => {
      const { bare } = scanners(form);
      // RAR 5 signature and a main archive header: enough to be a RAR, nothing anyone here can unpack.
      const rar = Buffer.concat([Buffer.from([0x52, 0x61, 0x72, 0x21, 0x1a, 0x07, 0x01, 0x00]), Buffer.from('a stored file clamd cannot unpack here')]);
      assert.equal(await verdict(bare, attach('docs.rar', rar)), 'unscannable rar archive that neither Backstop nor clamd opens ("docs.rar")');
    });

    test('archive-tar: a program named notes.txt in a tar is banned by type; clam.exe in a tar is found', async () => {
      const { bare, policy } = scanners(form);
      assert.equal(await verdict(policy, attach('docs.tar', run('tar', ['-cf', '-', 'notes.txt']))), 'banned executable content (PE) in "notes.txt" in docs.tar');
      assert.equal(await verdict(bare, attach('docs.tar', run('tar', ['-cf', '-', 'readme.txt']))), INFECTED);
    });

    test('archive-gz: a gzipped program is banned by type; gzipped clam.exe is found', async () => {
      const { bare, policy } = scanners(form);
      assert.equal(await verdict(policy, attach('notes.txt.gz', run('gzip', ['-c', 'notes.txt']))), 'banned executable content (PE) in "notes.txt" in notes.txt.gz');
      assert.equal(await verdict(bare, attach('readme.txt.gz', run('gzip', ['-c', 'readme.txt']))), INFECTED);
    });

    test('archive-tgz: a program in a tar.gz is banned by type', async () => {
      const { policy } = scanners(form);
      assert.equal(await verdict(policy, attach('docs.tgz', run('tar', ['-czf', '-', 'notes.txt']))), 'banned executable content (PE) in "notes.txt" in docs.tar in docs.tgz');
    });

    test('archive-bz2: a bzip2ed program is banned by type; clam.exe.bz2 (ClamAV sample) is found', async () => {
      const { bare, policy } = scanners(form);
      assert.equal(await verdict(policy, attach('notes.txt.bz2', run('bzip2', ['-c', 'notes.txt']))), 'banned executable content (PE) in "notes.txt" in notes.txt.bz2');
      assert.equal(await verdict(bare, attach('data.bz2', readFileSync(join(CLAMAV_TESTFILES, 'clam.exe.bz2')))), INFECTED);
    });

    test('archive-cab: clam.exe in a cabinet made now with gcab is found by clamd', async () => {
      const { bare } = scanners(form);
      rmSync(join(dir, 'a.cab'), { force: true });
      run('gcab', ['-c', '-z', 'a.cab', 'readme.txt']);
      assert.equal(await verdict(bare, attach('docs.cab', readFileSync(join(dir, 'a.cab')))), INFECTED);
    });

    test('archive-iso: clam.exe in an ISO 9660 image made now with genisoimage is found by clamd', async () => {
      const { bare } = scanners(form);
      const iso = run('genisoimage', ['-quiet', '-o', '-', 'readme.txt']);
      assert.equal(await verdict(bare, attach('disk.img.bin', iso)), INFECTED);
    });

    test('archive-unknown-container-without-clamd: a 7z with no clamd configured is unscannable (nobody looked)', async () => {
      const s = createScanner(parseConfig({ scan: { bannedExtensions: [], bannedTypes: [] } }));
      assert.equal(await verdict(s, attach('docs.7z', sevenZip('n.7z', 'notes.txt'))), 'unscannable 7z archive that neither Backstop nor clamd opens ("docs.7z")');
    });
  });
}

test('a harmless zip, tar.gz, 7z and docx stay clean: the classes above do not catch legitimate mail', async () => {
  const c = clamds.get('md5')!;
  const s = createScanner(parseConfig({ clamd: c.url }));
  writeFileSync(join(dir, 'minutes.txt'), 'Minutes of the meeting.\n'.repeat(200));
  copyFileSync(join(dir, 'minutes.txt'), join(dir, 'plan.txt'));
  const docx = zipSync({ 'word/document.xml': strToU8('<w:document/>'), '[Content_Types].xml': strToU8('<Types/>') });
  const parts = [
    { name: 'minutes.zip', bytes: sevenZip('ok.zip', 'minutes.txt', '-tzip') },
    { name: 'minutes.tar.gz', bytes: run('tar', ['-czf', '-', 'minutes.txt', 'plan.txt']) },
    { name: 'minutes.7z', bytes: sevenZip('ok.7z', 'minutes.txt') },
    { name: 'minutes.bz2', bytes: run('bzip2', ['-c', 'minutes.txt']) },
    { name: 'report.docx', bytes: docx },
  ];
  const r = await s.scanMessage(mail(parts));
  assert.deepEqual([formatVerdict(r.verdict), r.findings], ['clean', []]);
});
