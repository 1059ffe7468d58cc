/* The backscatter: configuration section — defaults, what the shield makes of it, and refusals with key and expectation. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { shieldSettings } from '../../src/backscatter/hooks.ts';
import { parseConfig } from '../../src/config/load.ts';

const notify = { relay: 'smtp://127.0.0.1:25', from: 'backstop@example.net', postmaster: 'postmaster@example.net' };

test('absent or off: no shield; present: safe defaults (log-only, reject, complaints in review, en+de)', () => {
  assert.equal(shieldSettings(parseConfig({ domains: ['example.net'] })), null);
  assert.equal(shieldSettings(parseConfig({ domains: ['example.net'], backscatter: { mode: 'off' } })), null);
  const c = parseConfig({ domains: ['example.net', 'example.org'], notify, backscatter: {} });
  assert.deepEqual(c.backscatter, { mode: 'log-only', action: 'reject', ourRelays: [], complaints: { mode: 'review', languages: ['en', 'de'], texts: {} } });
  assert.deepEqual(shieldSettings(c), {
    mode: 'log-only', batvDomains: ['example.net', 'example.org'], onBackscatter: 'refuse', ourRelays: ['backstop.localhost'], relayFrom: [],
    hostname: 'backstop.localhost', complaints: 'review',
  });
});

test('batvDomains, quarantine, relays and complaint texts as written; complaints off without a relay to send through', () => {
  const c = parseConfig({
    domains: ['example.net'], smtp: { hostname: 'MX.example.net' },
    backscatter: { mode: 'enforce', batvDomains: ['Mail.Example.NET'], action: 'quarantine', ourRelays: ['Out1.Example.net'], complaints: { mode: 'auto', from: 'desk@example.net', languages: ['de'], texts: { de: { subject: 'S', body: 'B' } } } },
  });
  const s = shieldSettings(c)!;
  assert.deepEqual(s.batvDomains, ['mail.example.net']);
  assert.equal(s.onBackscatter, 'quarantine');
  assert.deepEqual(s.ourRelays, ['mx.example.net', 'out1.example.net']);
  assert.equal(s.complaints, 'off', 'no notify: relay, so nothing could be sent');
  assert.equal(shieldSettings({ ...c, notify: parseConfig({ notify }).notify })!.complaints, 'auto');
});

const refused: [string, unknown, RegExp][] = [
  ['an unknown mode', { mode: 'strict' }, /backscatter\.mode/],
  ['bounce as the action', { action: 'bounce' }, /backscatter\.action/],
  ['a BATV domain that is not one', { batvDomains: ['not a domain'] }, /backscatter\.batvDomains\.0.*domain name/s],
  ['a complaint sender that is no address', { complaints: { from: 'nobody' } }, /backscatter\.complaints\.from.*email address/s],
  ['an unknown complaint mode', { complaints: { mode: 'always' } }, /backscatter\.complaints\.mode/],
  ['a text without body', { complaints: { texts: { en: { subject: 'x' } } } }, /backscatter\.complaints\.texts\.en\.body/],
  ['an unknown key', { keys: '0 secret' }, /backscatter.*keys/s],
];
for (const [name, backscatter, message] of refused) {
  test(`refused: ${name}`, () => assert.throws(() => parseConfig({ backscatter }), message));
}
