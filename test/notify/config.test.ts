/* The notify: and abuse: configuration keys, as issue 3 writes them, and their refusals. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../../src/config/load.ts';

const notify = { relay: 'smtp://127.0.0.1:25', from: 'backstop@example.net', postmaster: 'postmaster@example.net', digestMinutes: 15 };

test('the keys exactly as issue 3 writes them parse, with their defaults', () => {
  const c = parseConfig({
    notify: { ...notify, sender: { enabled: false, acknowledgeForgedSenders: false } },
    abuse: { reports: 'on', window: '24h', overrides: [{ cidr: '192.0.2.0/24', contact: 'abuse@example.com' }, { cidr: '2001:db8::/32', contact: 'never' }] },
  });
  assert.deepEqual(c.notify!.sender, { enabled: false, acknowledgeForgedSenders: false, nonForging: [] });
  const a = c.abuse!;
  assert.equal(a.reports, 'on');
  assert.equal(a.window, 86_400_000);
  assert.equal(a.reportDelay, 15 * 60_000);
  assert.equal(a.feedbackType, 'virus');
  assert.equal(a.hourlyCap, 200);
  assert.equal(a.dns.zone, 'abuse-contacts.abusix.zone');
  assert.equal(a.overrides[1]!.contact, 'never');
});

test('reports: off and YAML 1.1 booleans both mean off/on', () => {
  assert.equal(parseConfig({ abuse: { reports: 'off' } }).abuse!.reports, 'off');
  assert.equal(parseConfig({ abuse: { reports: false } }).abuse!.reports, 'off');
  assert.equal(parseConfig({ abuse: { reports: true } }).abuse!.reports, 'on');
});

const refused: [string, unknown, RegExp][] = [
  ['sender notices without the acknowledgement (R2)', { notify: { ...notify, sender: { enabled: true } } }, /notify\.sender: .*acknowledgeForgedSenders: true .*almost always forged.*\(R1, R2\)/],
  ['a window that is not a duration', { abuse: { window: '2 days' } }, /abuse\.window: got "2 days": expected a duration such as "15m"/],
  ['a report delay longer than the window', { abuse: { window: '1h', reportDelay: '2h' } }, /abuse\.reportDelay: .*must not be longer than window/],
  ['an override that is neither an address nor "never"', { abuse: { overrides: [{ cidr: '192.0.2.0/24', contact: 'nobody' }] } }, /abuse\.overrides\.0\.contact/],
  ['an override with a bad CIDR', { abuse: { overrides: [{ cidr: '192.0.2.0/33', contact: 'never' }] } }, /abuse\.overrides\.0\.cidr: .*CIDR/],
  ['an unknown Feedback-Type', { abuse: { feedbackType: 'worm' } }, /abuse\.feedbackType/],
  ['reports neither on nor off', { abuse: { reports: 'sometimes' } }, /abuse\.reports/],
  ['a zero hourly cap', { abuse: { hourlyCap: 0 } }, /abuse\.hourlyCap: .*greater than 0/],
  ['an unknown key', { abuse: { windw: '1h' } }, /abuse\.windw: unknown key/],
];
for (const [name, raw, message] of refused) {
  test(`refused: ${name}`, () => assert.throws(() => parseConfig(raw), message));
}

test('sender notices with both keys are accepted, with an empty non-forging list', () => {
  const c = parseConfig({ notify: { ...notify, sender: { enabled: true, acknowledgeForgedSenders: true } } });
  assert.deepEqual(c.notify!.sender, { enabled: true, acknowledgeForgedSenders: true, nonForging: [] });
});
