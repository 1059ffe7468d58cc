import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startClamd, type RunningClamd } from '../../src/replay/clamd.ts';
import { runReplay } from '../../src/replay/run.ts';

let clamd: RunningClamd;
before(async () => {
  clamd = await startClamd();
});
after(() => clamd.stop());

// The whole mission at the small size against real clamd, smtp-sink and a Backstop child process.
// The backscatter line is reported but not asserted here: the backscatter shield (issue 4) is not
// wired into the gateway yet, so that line does not hold and `npm run replay` exits 1 for it.
test('replay (small): no worm reaches a mailbox, no legitimate mail is lost, nothing goes to a forged sender, one notice per name to the postmaster only, one ARF report per source to its desk', async () => {
  const { scoreboard: s } = await runReplay({ size: 'small', seed: 2004, concurrency: 20, clamdUrl: clamd.url });
  assert.equal(s.infectedSent, 300);
  assert.equal(s.infectedDelivered, 0);
  assert.equal(s.legitSent, 60);
  assert.equal(s.legitDelivered, 60);
  assert.equal(s.legitLostOrDelayed, 0);
  assert.equal(s.sentToWormSenders, 0);
  assert.ok(s.sourceIps >= 18, `${s.sourceIps} distinct infected sources`);
  assert.ok(s.detectedNames >= 2, `${s.detectedNames} names detected`);
  assert.equal(s.postmasterNotices, s.detectedNames);
  assert.ok(s.postmasterDigests >= 1, 'the rest of the wave went into a digest');
  assert.equal(s.noticesElsewhere, 0);
  assert.ok(s.abuseReportsExpected >= 10, `${s.abuseReportsExpected} sources with a desk`);
  assert.equal(s.abuseReports, s.abuseReportsExpected, 'one ARF report per source whose network has a desk');
  assert.equal(s.abuseReportsWrongContact, 0);
  assert.equal(s.abuseReportsDuplicate, 0);
  assert.equal(s.abuseReportsMissing, 0);
  assert.ok(s.messagesPerSecond > 0 && s.p99Ms > 0);
});
