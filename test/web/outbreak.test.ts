/*
 * The outbreak rule, table-driven: rate in the last 10 minutes against the
 * hour before, with a floor for names never seen and a minimum count.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OUTBREAK_DEFAULTS, outbreaks } from '../../src/web/outbreak.ts';

test('outbreaks: which names are breaking out, with the default settings (10 min vs 60 min, at least 5, 5×)', () => {
  const cases: [string, { recent: number; baseline: number }, boolean][] = [
    ['new name, 5 in 10 min (0.5/min against the floor of 1/h)', { recent: 5, baseline: 0 }, true],
    ['new name, 4 in 10 min: below the minimum count', { recent: 4, baseline: 0 }, false],
    ['steady 1/min for 70 minutes', { recent: 10, baseline: 60 }, false],
    ['exactly 5× the baseline rate (60/h → 5/min)', { recent: 50, baseline: 60 }, true],
    ['just under 5× (49 against 60/h)', { recent: 49, baseline: 60 }, false],
    ['quiet after a busy hour', { recent: 5, baseline: 600 }, false],
    ['a trickle jumps: 1 per hour, then 5 in 10 min (30×)', { recent: 5, baseline: 1 }, true],
    ['nothing at all', { recent: 0, baseline: 0 }, false],
  ];
  for (const [why, c, expected] of cases) {
    assert.equal(outbreaks([{ name: 'W', ...c }]).length === 1, expected, why);
  }
});

test('outbreaks: sorted by the steepest rise, rates per minute, settings respected', () => {
  const found = outbreaks([
    { name: 'Worm.Slow', recent: 50, baseline: 60 },
    { name: 'Worm.New', recent: 30, baseline: 0 },
    { name: 'Worm.Steady', recent: 10, baseline: 60 },
  ]);
  assert.deepEqual(found.map((o) => o.name), ['Worm.New', 'Worm.Slow']);
  assert.equal(found[0]!.recentRate, 3);
  assert.equal(found[0]!.ratio, 180);
  assert.equal(found[1]!.ratio, 5);
  // Stricter settings drop the slower rise; a 30-minute baseline doubles its rate and halves the ratio.
  assert.deepEqual(outbreaks([{ name: 'W', recent: 50, baseline: 60 }], { ...OUTBREAK_DEFAULTS, factor: 6 }), []);
  assert.equal(outbreaks([{ name: 'W', recent: 50, baseline: 30 }], { ...OUTBREAK_DEFAULTS, baselineMinutes: 30 })[0]!.ratio, 5);
  // Ties: more recent detections first, then by name, so the banner is stable.
  assert.deepEqual(outbreaks([{ name: 'B', recent: 6, baseline: 0 }, { name: 'A', recent: 6, baseline: 0 }]).map((o) => o.name), ['A', 'B']);
});
