import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ConfigError, loadConfig, parseConfig } from '../../src/config/load.ts';

test('the issue\'s example configuration is accepted as written', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bs-cfg-'));
  const file = join(dir, 'backstop.yaml');
  writeFileSync(
    file,
    `smtp: { listen: "127.0.0.1:2525", hostname: mx.example.net, maxMessageBytes: 52428800 }
domains: [example.net]
relayFrom: []
nextHop: "smtp://127.0.0.1:2526"
clamd: "tcp://127.0.0.1:3310"
store: "pglite:./data/db"
web: { listen: "127.0.0.1:8025" }
actions: { infected: reject, banned: reject, unscannable: tempfail }
`,
  );
  const config = loadConfig(file);
  assert.equal(config.smtp.hostname, 'mx.example.net');
  assert.deepEqual(config.domains, ['example.net']);
  assert.equal(config.actions.infected, 'reject');
  assert.equal(config.smtp.greetingDelayMs, 100);
});

test('defaults: SMTP 2525, web 8025, PGlite and Maildir under ./data, localhost only', () => {
  const config = loadConfig();
  assert.equal(config.smtp.listen, '127.0.0.1:2525');
  assert.equal(config.web.listen, '127.0.0.1:8025');
  assert.equal(config.store, 'pglite:./data/db');
  assert.equal(config.nextHop, 'maildir:./data/maildir');
  assert.deepEqual(config.domains, ['localhost']);
  assert.deepEqual(config.relayFrom, []);
  assert.deepEqual(config.actions, { infected: 'reject', banned: 'reject', unscannable: 'tempfail' });
  // Records are committed before the reply: groups every 4 ms, at most 500 a transaction, a reply waits at most 5 s.
  assert.deepEqual(config.records, { groupCommitMs: 0, maxGroup: 500, commitTimeoutMs: 5000 });
  // A job whose node died is taken by another after a minute; idle workers look once a second.
  assert.deepEqual(config.outbox, { leaseMs: 60_000, pollMs: 1000 });
});

const refused: [string, unknown, RegExp][] = [
  ['bounce is refused with the reason', { actions: { infected: 'bounce' } }, /actions\.infected: got "bounce": "bounce" is not offered: .*forged \(R1\)/],
  ['strip is refused with the reason', { actions: { banned: 'strip' } }, /actions\.banned: got "strip".*half-messages \(R5\)/],
  ['notify is refused', { actions: { infected: 'notify' } }, /backscatter/],
  ['deliver is refused for unscannable', { actions: { unscannable: 'deliver' } }, /defeats the gateway/],
  ['discarding unscannable mail is not offered', { actions: { unscannable: 'discard' } }, /expected one of tempfail, reject, quarantine/],
  ['an unknown action is named', { actions: { infected: 'zap' } }, /expected one of reject, discard, quarantine, tempfail/],
  ['a bad listen address', { smtp: { listen: 'port 25' } }, /smtp\.listen: got "port 25": expected "host:port"/],
  ['a bad CIDR', { relayFrom: ['10.0.0.0/33'] }, /relayFrom\.0: got "10\.0\.0\.0\/33": expected an IP address or CIDR/],
  ['a bad next hop', { nextHop: 'http://x' }, /nextHop: got "http:\/\/x": expected "smtp:\/\/host:port"/],
  ['a bad clamd URL', { clamd: 'clamd' }, /clamd: got "clamd"/],
  ['a negative size', { smtp: { maxMessageBytes: -1 } }, /smtp\.maxMessageBytes: got -1: maxMessageBytes must be greater than 0/],
  ['a misspelt key', { smtp: { lisen: '127.0.0.1:25' } }, /smtp\.lisen: unknown key/],
  ['a bad domain', { domains: ['exa mple.net'] }, /domains\.0: got "exa mple\.net": expected a domain name/],
  ['a group commit window every reply would wait on', { records: { groupCommitMs: 5000 } }, /records\.groupCommitMs: got 5000: groupCommitMs must be at most 1000/],
  ['a commit timeout past the sender\'s patience', { records: { commitTimeoutMs: 900_000 } }, /records\.commitTimeoutMs: got 900000: .*RFC 5321/],
  ['an empty group', { records: { maxGroup: 0 } }, /records\.maxGroup: got 0: maxGroup must be greater than 0/],
  ['a lease shorter than a hand-off', { outbox: { leaseMs: 10 } }, /outbox\.leaseMs: got 10: leaseMs must be at least 1000/],
];

for (const [name, raw, message] of refused) {
  test(`config: ${name}`, () => {
    assert.throws(() => parseConfig(raw, 'test.yaml'), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, message);
      assert.match(err.message, /^invalid configuration in test\.yaml:/);
      return true;
    });
  });
}

test('config: every bad field is listed at once', () => {
  assert.throws(
    () => parseConfig({ smtp: { listen: 'x' }, actions: { infected: 'bounce' }, nextHop: 'x' }),
    (err: unknown) => err instanceof ConfigError && err.problems.length === 3,
  );
});

test('config: unreadable file and broken YAML say so', () => {
  assert.throws(() => loadConfig('/nonexistent/backstop.yaml'), /cannot read the file/);
  const dir = mkdtempSync(join(tmpdir(), 'bs-cfg-'));
  const file = join(dir, 'bad.yaml');
  writeFileSync(file, 'smtp: { listen: [\n');
  assert.throws(() => loadConfig(file), /not valid YAML/);
});
