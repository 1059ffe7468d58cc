/*
 * `backstop scan` as an operator runs it: a real process, real files, a real
 * clamd; output lines and exit status as clamdscan's.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { strToU8, zipSync } from 'fflate';
import { looksLikeMessage } from '../../src/cli/commands/scan.ts';
import { CLAMAV_TESTFILES, EICAR, startClamd, TEST_SIGNATURE_NAME, type RunningClamd } from '../../src/replay/clamd.ts';
import { mail, tinyPe } from './mail.ts';

const BIN = join(import.meta.dirname, '../../bin/backstop.js');
let clamd: RunningClamd;
let dir: string;

before(async () => {
  clamd = await startClamd();
  dir = mkdtempSync(join(tmpdir(), 'bs-cli-scan-'));
  writeFileSync(join(dir, 'notes.txt'), 'just notes\n');
  writeFileSync(join(dir, 'eicar.com'), EICAR);
  writeFileSync(join(dir, 'photo.jpg'), tinyPe());
  writeFileSync(join(dir, 'bomb.zip'), zipSync({ 'zeros.bin': new Uint8Array(8 * 1024 * 1024) }, { level: 9 }));
  copyFileSync(join(CLAMAV_TESTFILES, 'clam.7z'), join(dir, 'archive.7z'));
  writeFileSync(join(dir, 'worm.eml'), mail([{ name: 'doc.txt.pif', bytes: strToU8('x') }]));
  writeFileSync(join(dir, 'clean-message'), mail([{ name: 'a.pdf', bytes: strToU8('%PDF-1.4') }]));
});
after(async () => {
  await clamd?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function scan(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, 'scan', ...args], { cwd: dir, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, out: r.stdout.trim().split('\n').filter(Boolean), err: r.stderr.trim() };
}

test('looksLikeMessage: .eml, header blocks, mbox From_ lines; not text with a colon', () => {
  assert.equal(looksLikeMessage(strToU8('anything'), 'x.EML'), true);
  assert.equal(looksLikeMessage(strToU8('From: a@b\r\nSubject: x\r\n\r\nbody')), true);
  assert.equal(looksLikeMessage(strToU8('From a@b Mon Jan 26 15:30:00 2004\nReceived: from x\nTo: y\n\nbody')), true);
  assert.equal(looksLikeMessage(strToU8('Note: remember this\nAlso: that\n\n')), false);
  assert.equal(looksLikeMessage(strToU8('From: a@b\nthis is not a header\n\n')), false);
});

test('all clean: exit 0, one "FILE: clean" line per file', () => {
  const r = scan('notes.txt', 'clean-message');
  assert.deepEqual(r.out, ['notes.txt: clean', 'clean-message: clean']);
  assert.equal(r.status, 0);
});

test('built-in policy only (no clamd): every kind of verdict, exit 1', () => {
  const r = scan('notes.txt', 'eicar.com', 'photo.jpg', 'bomb.zip', 'worm.eml');
  assert.deepEqual(r.out, [
    'notes.txt: clean',
    'eicar.com: infected Eicar-Test-Signature',
    'photo.jpg: banned executable content (PE) in "photo.jpg"',
    'bomb.zip: unscannable archive limit: expansion ratio over 100:1 (bomb.zip)',
    'worm.eml: banned double extension (doc.txt.pif)',
  ]);
  assert.equal(r.status, 1);
});

test('with --clamd: clamd finds what the built-in policy cannot unpack (7z); without clamd nobody looked: unscannable', () => {
  assert.deepEqual(scan('archive.7z').out, ['archive.7z: unscannable 7z archive that neither Backstop nor clamd opens ("archive.7z")']);
  const r = scan('--clamd', clamd.url, 'archive.7z', 'notes.txt');
  assert.deepEqual(r.out, [`archive.7z: infected ${TEST_SIGNATURE_NAME}`, 'notes.txt: clean']);
  assert.equal(r.status, 1);
  assert.equal(scan('--clamd', clamd.unixUrl, 'archive.7z').status, 1);
});

test('clamd in a config file is used', () => {
  writeFileSync(join(dir, 'backstop.yaml'), `clamd: ${clamd.url}\n`);
  assert.deepEqual(scan('--config', 'backstop.yaml', 'archive.7z').out, [`archive.7z: infected ${TEST_SIGNATURE_NAME}`]);
});

test('an unreadable file: exit 2, the others still scanned', () => {
  const r = scan('missing.txt', 'notes.txt');
  assert.deepEqual(r.out, ['notes.txt: clean']);
  assert.equal(r.err, 'missing.txt: cannot read: ENOENT');
  assert.equal(r.status, 2);
});

test('clamd not answering: exit 2 with a hint, nothing reported as scanned', () => {
  const r = scan('--clamd', 'tcp://127.0.0.1:1', 'notes.txt');
  assert.equal(r.status, 2);
  assert.deepEqual(r.out, []);
  assert.match(r.err, /clamd at tcp:\/\/127\.0\.0\.1:1 does not answer PING/);
});

test('usage errors: exit 2', () => {
  assert.equal(scan().status, 2);
  const r = scan('--clamd', 'http://x', 'notes.txt');
  assert.equal(r.status, 2);
  assert.match(r.err, /--clamd: expected tcp:\/\/HOST:PORT or unix:PATH/);
});
