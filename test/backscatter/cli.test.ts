import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

const BIN = new URL('../../bin/backstop.js', import.meta.url).pathname;
const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
const dir = mkdtempSync(join(tmpdir(), 'backstop-bs-cli-'));
const keys = join(dir, 'keys');
writeFileSync(keys, '# current first\n4 operator secret\n3 older secret\n');

test('backstop batv sign | verify | strip', () => {
  const signed = run('batv', 'sign', 'alice@ours.example', '--key-file', keys);
  assert.equal(signed.status, 0, signed.stderr);
  const tag = signed.stdout.trim();
  assert.match(tag, /^prvs=4\d{3}[0-9a-f]{6}=alice@ours\.example$/);
  const ok = run('batv', 'verify', tag, '--key-file', keys);
  assert.equal(ok.status, 0);
  assert.match(ok.stdout, /valid key 4/);
  const bad = run('batv', 'verify', tag.replace('=alice@', '=mallory@'), '--key-file', keys);
  assert.equal(bad.status, 1);
  assert.match(bad.stdout, /bad-signature/);
  const expired = run('batv', 'verify', tag, '--key-file', keys, '--at', new Date(Date.now() + 30 * 86_400_000).toISOString());
  assert.match(expired.stdout, /expired/);
  assert.equal(run('batv', 'strip', tag).stdout.trim(), 'alice@ours.example');
  assert.equal(run('batv', 'sign', 'a@b', '--key-file', join(dir, 'absent')).status, 2, 'unreadable key file');
  assert.equal(run('batv', 'frobnicate', 'a@b').status, 2);
  assert.doesNotMatch(ok.stdout + signed.stdout, /operator secret/, 'secrets never printed');
});

test("backstop batv sign | verify without --key-file use the store's keys, across a rotation", () => {
  const config = join(dir, 'backstop.yaml');
  writeFileSync(config, `store: "pglite:${join(dir, 'db')}"\nnextHop: smtp://127.0.0.1:1\n`);
  const signed = run('batv', 'sign', 'bob@ours.example', '--config', config);
  assert.equal(signed.status, 0, signed.stderr);
  const tag = signed.stdout.trim();
  assert.match(tag, /^prvs=0\d{3}[0-9a-f]{6}=bob@ours\.example$/, 'the store starts at key 0');
  assert.equal(run('batv', 'verify', tag, '--key-file', keys).status, 1, 'not valid under other keys');
  assert.equal(run('batv', 'rotate', '--config', config).status, 0);
  const after = run('batv', 'verify', tag, '--config', config);
  assert.equal(after.status, 0, after.stdout + after.stderr);
  assert.match(after.stdout, /valid key 0/, 'the retired key keeps verifying');
  assert.match(run('batv', 'sign', 'bob@ours.example', '--config', config).stdout, /^prvs=1/, 'the new key signs');
});

test('backstop classify prints class, verdict and fields', () => {
  const file = join(dir, 'bounce.eml');
  writeFileSync(
    file,
    'From: MAILER-DAEMON@mx.far.example\r\nSubject: failure notice\r\n\r\nHi. This is the qmail-send program at mx.far.example.\r\n\r\n--- Below this line is a copy of the message.\r\n\r\nReceived: from pc by mx.isp.example\r\nMessage-ID: <worm@pc>\r\nFrom: alice@ours.example\r\n\r\nbody\r\n',
  );
  const out = run('classify', '--relay', 'relay.ours.example', file);
  assert.equal(out.status, 0, out.stderr);
  assert.match(out.stdout, /: dsn \(qmail\) verdict=backscatter/);
  assert.match(out.stdout, /message-id: <worm@pc>/);
  const json = JSON.parse(run('classify', '--json', file).stdout);
  assert.equal(json.class, 'dsn');
  assert.equal(json.verdict, 'unknown', 'no marks configured: cannot tell');
  assert.equal(run('classify', join(dir, 'missing.eml')).status, 2);
});
