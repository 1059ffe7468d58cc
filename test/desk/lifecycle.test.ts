/*
 * The incident state machine as a table: every state × event, allowed ones
 * with their target state and effects, refused ones with their reason.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { canSelfRelease, EVENTS, isRestricted, next, STATES, type IncidentEvent, type IncidentState, type LifecycleContext } from '../../src/desk/lifecycle.ts';

const now = new Date('2026-03-01T12:00:00Z');
const H = 3_600_000;
const ctx = (over: Partial<LifecycleContext> = {}): LifecycleContext => ({ now, graceMs: 72 * H, probationMs: 14 * 24 * H, level: 'walled-garden', selfReleasesLeft: 2, ...over });

// [state, event, target state | 'refused', effect kinds]
type Row = [IncidentState, IncidentEvent, IncidentState | 'refused', string[]];
const R = 'refused' as const;
const table: Row[] = [
  ['suspected', 'evidence', 'suspected', []],
  ['suspected', 'notice-sent', 'notified', ['schedule-grace']],
  ['suspected', 'grace-expired', R, []],
  ['suspected', 'attest', R, []],
  ['suspected', 'desk-release', 'probation', ['revoke-portal-token', 'schedule-probation-end']],
  ['suspected', 'probation-expired', R, []],
  ['suspected', 'hold', 'evidence-hold', []],
  ['suspected', 'unhold', R, []],
  ['suspected', 'close', 'closed', ['revoke-portal-token']],

  ['notified', 'evidence', 'notified', []],
  ['notified', 'notice-sent', R, []],
  ['notified', 'grace-expired', 'restricted', ['restrict', 'send-notice']],
  ['notified', 'attest', R, []],
  ['notified', 'desk-release', 'probation', ['revoke-portal-token', 'schedule-probation-end']],
  ['notified', 'probation-expired', R, []],
  ['notified', 'hold', 'evidence-hold', []],
  ['notified', 'unhold', R, []],
  ['notified', 'close', 'closed', ['revoke-portal-token']],

  ['restricted', 'evidence', 'restricted', []],
  ['restricted', 'notice-sent', R, []],
  ['restricted', 'grace-expired', R, []],
  ['restricted', 'attest', 'probation', ['spend-self-release', 'release', 'revoke-portal-token', 'schedule-probation-end']],
  ['restricted', 'desk-release', 'probation', ['release', 'revoke-portal-token', 'schedule-probation-end']],
  ['restricted', 'probation-expired', R, []],
  ['restricted', 'hold', 'evidence-hold', []],
  ['restricted', 'unhold', R, []],
  ['restricted', 'close', 'closed', ['release', 'revoke-portal-token']],

  ['attested', 'evidence', 'attested', []],
  ['attested', 'notice-sent', R, []],
  ['attested', 'grace-expired', R, []],
  ['attested', 'attest', R, []],
  ['attested', 'desk-release', R, []],
  ['attested', 'probation-expired', R, []],
  ['attested', 'hold', 'evidence-hold', []],
  ['attested', 'unhold', R, []],
  ['attested', 'close', 'closed', ['revoke-portal-token']],

  ['probation', 'evidence', 'restricted', ['restrict', 'send-notice', 'issue-portal-token']],
  ['probation', 'notice-sent', R, []],
  ['probation', 'grace-expired', R, []],
  ['probation', 'attest', R, []],
  ['probation', 'desk-release', R, []],
  ['probation', 'probation-expired', 'closed', ['revoke-portal-token']],
  ['probation', 'hold', 'evidence-hold', []],
  ['probation', 'unhold', R, []],
  ['probation', 'close', 'closed', ['revoke-portal-token']],

  ['evidence-hold', 'evidence', 'evidence-hold', []],
  ['evidence-hold', 'notice-sent', R, []],
  ['evidence-hold', 'grace-expired', R, []],
  ['evidence-hold', 'attest', R, []],
  ['evidence-hold', 'desk-release', R, []],
  ['evidence-hold', 'probation-expired', R, []],
  ['evidence-hold', 'hold', R, []],
  ['evidence-hold', 'unhold', 'suspected', ['send-notice']], // heldFrom unknown: back to the start
  ['evidence-hold', 'close', 'closed', ['revoke-portal-token']],
];
for (const event of EVENTS) table.push(['closed', event, R, []]);

test('the table covers every state × event exactly once', () => {
  assert.equal(table.length, STATES.length * EVENTS.length);
  const keys = new Set(table.map(([s, e]) => `${s}/${e}`));
  assert.equal(keys.size, table.length);
});

for (const [state, event, to, effects] of table) {
  test(`${state} + ${event} → ${to}`, () => {
    const out = next(state, event, ctx());
    if (to === R) {
      assert.ok('refused' in out, `expected a refusal, got ${JSON.stringify(out)}`);
      assert.match(out.refused, /\w/);
    } else {
      assert.ok(!('refused' in out), `refused: ${'refused' in out ? out.refused : ''}`);
      assert.equal(out.state, to);
      assert.deepEqual(out.effects.map((e) => e.kind), effects);
    }
  });
}

test('attest with no self-release left is refused and names the desk', () => {
  const out = next('restricted', 'attest', ctx({ selfReleasesLeft: 0 }));
  assert.ok('refused' in out);
  assert.match(out.refused, /only the abuse desk/);
  assert.equal(canSelfRelease('restricted', 0), false);
  assert.equal(canSelfRelease('restricted', 1), true);
  assert.equal(canSelfRelease('notified', 2), false);
  // the desk still can
  const desk = next('restricted', 'desk-release', ctx({ selfReleasesLeft: 0 }));
  assert.ok(!('refused' in desk) && desk.state === 'probation');
});

test('attest passes through attested, and timers carry the configured durations', () => {
  const out = next('restricted', 'attest', ctx());
  assert.ok(!('refused' in out));
  assert.equal(out.via, 'attested');
  const end = out.effects.find((e) => e.kind === 'schedule-probation-end');
  assert.deepEqual(end, { kind: 'schedule-probation-end', at: new Date(now.getTime() + 14 * 24 * H) });
  const grace = next('suspected', 'notice-sent', ctx({ graceMs: 5 * H }));
  assert.ok(!('refused' in grace));
  assert.deepEqual(grace.effects, [{ kind: 'schedule-grace', at: new Date(now.getTime() + 5 * H) }]);
});

test('restriction uses the configured level', () => {
  const out = next('notified', 'grace-expired', ctx({ level: 'port25-block' }));
  assert.ok(!('refused' in out));
  assert.deepEqual(out.effects[0], { kind: 'restrict', level: 'port25-block' });
});

test('a stale timer is refused: grace and probation not over yet', () => {
  const g = next('notified', 'grace-expired', ctx({ graceUntil: new Date(now.getTime() + 1000) }));
  assert.ok('refused' in g && /grace period runs until/.test(g.refused));
  const p = next('probation', 'probation-expired', ctx({ probationUntil: new Date(now.getTime() + 1000) }));
  assert.ok('refused' in p && /probation runs until/.test(p.refused));
  const ok = next('notified', 'grace-expired', ctx({ graceUntil: now }));
  assert.ok(!('refused' in ok) && ok.state === 'restricted');
});

test('unhold goes back where the hold came from, restarting its timer', () => {
  const cases: [IncidentState, IncidentState, string[]][] = [
    ['suspected', 'suspected', ['send-notice']],
    ['notified', 'notified', ['schedule-grace']],
    ['restricted', 'restricted', []],
    ['attested', 'probation', []],
    ['probation', 'probation', ['schedule-probation-end']],
  ];
  for (const [from, to, effects] of cases) {
    const out = next('evidence-hold', 'unhold', ctx({ heldFrom: from }));
    assert.ok(!('refused' in out));
    assert.equal(out.state, to, from);
    assert.deepEqual(out.effects.map((e) => e.kind), effects, from);
  }
});

test('a hold keeps a restricted line fenced in; closing it releases', () => {
  assert.equal(isRestricted('restricted'), true);
  assert.equal(isRestricted('evidence-hold', 'restricted'), true);
  assert.equal(isRestricted('evidence-hold', 'notified'), false);
  assert.equal(isRestricted('probation'), false);
  const out = next('evidence-hold', 'close', ctx({ heldFrom: 'restricted' }));
  assert.ok(!('refused' in out));
  assert.deepEqual(out.effects.map((e) => e.kind), ['release', 'revoke-portal-token']);
});
