/*
 * The small replay with Backstop as a private Postfix's before-queue content
 * filter (--mode postfix-proxy): the sources talk to Postfix, which proxies
 * each message to Backstop with XFORWARD; the scoreboard holds as in direct mode.
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

test('replay (small, --mode postfix-proxy): every line of the scoreboard holds', async () => {
  const outcome = await runReplay({ mode: 'postfix-proxy', size: 'small', seed: 2004, concurrency: 20, clamdUrl: clamd.url });
  assertSmallScoreboardHolds(outcome);
  assert.equal(outcome.mode, 'postfix-proxy');
  // The wave really went through Postfix: it relayed Backstop's refusals to the worm sources, whose sessions
  // end with every DATA refused…
  assert.match(outcome.postfixLog ?? '', /proxy-reject: END-OF-MESSAGE: 550 5\.7\.1 Message refused, virus found: /);
  assert.match(outcome.postfixLog ?? '', /disconnect from unknown\[127\.10\.\d+\.\d+\] ehlo=1 mail=\d+ rcpt=\d+ data=0\/\d+/);
  // …and its re-injection smtpd took the real client from Backstop's XFORWARD.
  assert.match(outcome.postfixLog ?? '', /client=unknown\[127\.0\.0\.1\], orig_client=unknown\[127\.\d+\.\d+\.\d+\]/);
  assert.match(outcome.notes.join('\n'), /MAIL probes .* Backstop's own SMTP listener/);
});
