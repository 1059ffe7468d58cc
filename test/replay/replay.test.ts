import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startClamd, type RunningClamd } from '../../src/replay/clamd.ts';
import { runReplay } from '../../src/replay/run.ts';
import { assertSmallScoreboardHolds } from './small.ts';

let clamd: RunningClamd;
before(async () => {
  clamd = await startClamd();
});
after(() => clamd.stop());

// The whole mission at the small size against real clamd, smtp-sink, PostgreSQL and a Backstop child
// process, with the operator's real `backstop` commands and the customers' SMTP and portal visits.
test('replay (small, --mode direct): every line of the scoreboard holds', async () => {
  const outcome = await runReplay({ size: 'small', seed: 2004, concurrency: 20, clamdUrl: clamd.url });
  assertSmallScoreboardHolds(outcome);
  assert.equal(outcome.mode, 'direct');
  assert.deepEqual(outcome.notes, []);
  assert.equal(outcome.postfixLog, undefined);
});
