import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Action } from '../../src/config/schema.ts';
import { decide } from '../../src/policy/actions.ts';
import { banned, clean, infected, unscannable, type Verdict } from '../../src/scan/verdict.ts';

const defaults = { infected: 'reject', banned: 'reject', unscannable: 'tempfail' } as const;
const all = (a: Action) => ({ infected: a, banned: a, unscannable: a });

const table: [string, Verdict, { infected: Action; banned: Action; unscannable: Action }, string, number | null, RegExp | null][] = [
  ['clean is delivered', clean, defaults, 'deliver', null, null],
  ['infected is rejected in session', infected('Win.Worm.Mydoom-1'), defaults, 'reject', 550, /^5\.7\.1 Message refused, virus found: Win\.Worm\.Mydoom-1$/],
  ['banned is rejected with the test', banned('forbidden file type (.pif)'), defaults, 'reject', 550, /forbidden content: forbidden file type \(\.pif\)/],
  ['unscannable is a temporary failure', unscannable('clamd unavailable'), defaults, 'tempfail', 451, /^4\.3\.0 /],
  ['discard answers 250 and says nothing', infected('X'), all('discard'), 'discard', 250, /^2\.0\.0 Ok$/],
  ['quarantine answers 250 and says nothing', banned('x'), all('quarantine'), 'quarantine', 250, /^2\.0\.0 Ok$/],
  ['tempfail of an infected message is 4.7.1', infected('X'), all('tempfail'), 'tempfail', 451, /^4\.7\.1 /],
  ['a hostile malware name cannot break the reply', infected('X\r\n250 ok'), defaults, 'reject', 550, /^5\.7\.1 Message refused, virus found: X\?\?250 ok$/],
];

for (const [name, verdict, settings, action, code, message] of table) {
  test(`decide: ${name}`, () => {
    const outcome = decide(verdict, settings);
    assert.equal(outcome.action, action);
    if (outcome.action === 'deliver') {
      assert.equal(code, null);
    } else {
      assert.equal(outcome.reply.code, code);
      assert.match(outcome.reply.message, message!);
      assert.doesNotMatch(outcome.reply.message, /[\r\n]/);
    }
  });
}
