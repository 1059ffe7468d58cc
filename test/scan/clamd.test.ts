import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { parseConfig } from '../../src/config/load.ts';
import { CLAMAV_TESTFILES, startClamd, TEST_SIGNATURE_NAME, type RunningClamd } from '../../src/replay/clamd.ts';
import { ClamdClient } from '../../src/scan/clamd.ts';
import { createScanner } from '../../src/scan/scanner.ts';

let clamd: RunningClamd;
before(async () => {
  clamd = await startClamd();
});
after(() => clamd.stop());

const CRLF = '\r\n';
function mailWith(name: string, bytes: Uint8Array, seq = 0): Buffer {
  return Buffer.from(
    [
      'From: worm@example.org', 'To: user@example.net', `Subject: hello ${seq}`, `Message-ID: <m${seq}@example.org>`, 'MIME-Version: 1.0',
      'Content-Type: multipart/mixed; boundary="b"', '', '--b', 'Content-Type: text/plain', '', `The message contains Unicode characters ${seq}.`, '--b',
      'Content-Type: application/octet-stream', 'Content-Transfer-Encoding: base64', `Content-Disposition: attachment; filename="${name}"`, '',
      Buffer.from(bytes).toString('base64').replace(/.{76}/g, `$&${CRLF}`), '--b--', '',
    ].join(CRLF),
  );
}

const testFiles = readdirSync(CLAMAV_TESTFILES).sort();

test('the ClamAV test files are all there (Debian clamav-testfiles)', () => {
  assert.ok(testFiles.length >= 40, `only ${testFiles.length} files in ${CLAMAV_TESTFILES}`);
});

test('clamd itself finds every packed and archived ClamAV test file mailed as an attachment', async () => {
  const client = new ClamdClient(clamd.url, 20_000);
  const missed: string[] = [];
  for (const file of testFiles) {
    const answer = await client.scan(mailWith('data.bin', readFileSync(join(CLAMAV_TESTFILES, file))));
    if (answer.kind !== 'infected' || answer.name !== TEST_SIGNATURE_NAME) missed.push(file);
  }
  assert.deepEqual(missed, []);
});

test('the scanner finds every ClamAV test file mailed under a harmless name, over TCP and over the unix socket', async () => {
  for (const url of [clamd.url, clamd.unixUrl]) {
    const scanner = createScanner(parseConfig({ clamd: url }));
    const clean: string[] = [];
    for (const file of testFiles) {
      const { verdict } = await scanner.scanMessage(mailWith('data.bin', readFileSync(join(CLAMAV_TESTFILES, file))));
      if (verdict.kind !== 'infected' && verdict.kind !== 'banned') clean.push(`${file}: ${verdict.kind}`);
    }
    assert.deepEqual(clean, [], url);
  }
});

test('a clean message is clean through clamd, and EICAR is named by clamd-or-builtin', async () => {
  const scanner = createScanner(parseConfig({ clamd: clamd.url }));
  assert.equal((await scanner.scanMessage(mailWith('notes.txt', Buffer.from('harmless')))).verdict.kind, 'clean');
});

test('the second copy of a worm is decided from the cache without asking clamd', async () => {
  const scanner = createScanner(parseConfig({ clamd: clamd.url }));
  // A file only clamd can see: clam.exe packed with UPX inside a CAB (the built-in policy passes .cab).
  const payload = readFileSync(join(CLAMAV_TESTFILES, 'clam.cab'));
  const first = await scanner.scanMessage(mailWith('doc.cab', payload, 1));
  assert.deepEqual(first.verdict, { kind: 'infected', name: TEST_SIGNATURE_NAME, engine: 'clamd' });
  assert.equal(first.cached, false);
  clamd.hang(); // were clamd asked now, the scan would time out
  try {
    const second = await scanner.scanMessage(mailWith('doc.cab', payload, 2));
    assert.equal(second.cached, true);
    assert.equal(second.verdict.kind, 'infected');
    assert.ok(second.ms < 50, `cached scan took ${second.ms} ms`);
  } finally {
    clamd.resume();
  }
});

test('clamd hung: the message is unscannable within the timeout, never clean', async () => {
  const scanner = createScanner(parseConfig({ clamd: clamd.url, scan: { clamdTimeoutMs: 500, timeoutMs: 2000 } }));
  clamd.hang();
  try {
    const started = Date.now();
    const { verdict } = await scanner.scanMessage(mailWith('a.txt', Buffer.from('unique ' + Math.random())));
    assert.equal(verdict.kind, 'unscannable');
    assert.ok(Date.now() - started < 2500);
  } finally {
    clamd.resume();
  }
});

test('clamd down: unscannable with the reason, and errors are reported for the metrics', async () => {
  const errors: Error[] = [];
  const scanner = createScanner(parseConfig({ clamd: 'tcp://127.0.0.1:1' }), { onClamdError: (e) => errors.push(e) });
  const { verdict } = await scanner.scanMessage(mailWith('a.txt', Buffer.from('x')));
  assert.equal(verdict.kind, 'unscannable');
  assert.match(verdict.kind === 'unscannable' ? verdict.reason : '', /clamd unavailable: clamd connection failed: ECONNREFUSED/);
  assert.equal(errors.length, 1);
});

test('clamd restarting: one retry carries the scan across the reload', async () => {
  const client = new ClamdClient(clamd.url, 10_000, 1500);
  const restarting = clamd.restart();
  const answer = await client.scan(readFileSync(join(CLAMAV_TESTFILES, 'clam.exe')));
  await restarting;
  assert.equal(answer.kind, 'infected');
});
