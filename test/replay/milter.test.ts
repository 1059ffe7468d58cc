/*
 * The small replay with Backstop as a private Postfix's milter (--mode
 * milter, over a unix socket): the sources talk to Postfix, which asks
 * Backstop at end of message; the scoreboard holds as in direct mode.
 */
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

test('replay (small, --mode milter): every line of the scoreboard holds', async () => {
  const outcome = await runReplay({ mode: 'milter', size: 'small', seed: 2004, concurrency: 20, clamdUrl: clamd.url });
  assertSmallScoreboardHolds(outcome);
  assert.equal(outcome.mode, 'milter');
  // The wave really went through Postfix: its smtpd refused the worm with Backstop's words, naming the source.
  assert.match(outcome.postfixLog ?? '', /milter-reject: END-OF-MESSAGE from unknown\[127\.10\.\d+\.\d+\]: 5\.7\.1 Message refused/);
  assert.match(outcome.notes.join('\n'), /MAIL probes .* Backstop's own SMTP listener/);
});
