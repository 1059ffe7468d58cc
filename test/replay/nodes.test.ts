/*
 * `backstop replay --nodes 2` at the small size: two real `backstop serve`
 * processes on one fresh PostgreSQL database, the sources' messages spread
 * round-robin over them, real clamd and smtp-sink. Every line of the
 * scoreboard holds — the eight of one node, one per node, and the
 * exactly-once lines counted in the store and at the capture relay — and
 * then again with the second node SIGKILLed a third of the way into the wave
 * and restarted (--kill-node).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startClamd, type RunningClamd } from '../../src/replay/clamd.ts';
import { runReplay, type ReplayOutcome } from '../../src/replay/run.ts';
import { assertSmallScoreboardHolds } from './small.ts';

let clamd: RunningClamd;
before(async () => {
  clamd = await startClamd();
});
after(() => clamd.stop());

/** Both nodes answered a real share, every reply has its record, and the counts behind the exactly-once lines are the wave's. */
function assertTwoNodes(outcome: ReplayOutcome): void {
  assertSmallScoreboardHolds(outcome, 2);
  const s = outcome.scoreboard;
  assert.deepEqual(s.nodes?.map((n) => n.node), ['replay-1', 'replay-2']);
  const answered = s.nodes!.map((n) => n.answered);
  // Round-robin gives each node about half; a killed node's sources go to the other while it is down.
  const floor = s.nodes!.some((n) => n.killed) ? s.messages / 10 : s.messages / 4;
  assert.ok(answered.every((n) => n > floor), `each node answered a share: ${answered.join(', ')}`);
  assert.equal(answered.reduce((a, b) => a + b, 0), s.messages, 'every message was answered by one of them (a retry counts at the node that answered it)');
  assert.ok(outcome.lines.some((l) => /^replay-2: messages answered \(\d+\.\d msg\/s, p99 \d+\.\d ms\)$/.test(l.name)));
  const e = s.exactlyOnce!;
  assert.ok(e.replies >= 400, `${e.replies} replies to end of DATA checked against the store`);
  assert.deepEqual(e.repliesWithoutRecord, []);
  // A worm the killed node recorded but could not answer is sent again to the other node: two records, two detections.
  if (s.nodes!.some((n) => n.killed)) assert.ok(e.detections >= s.infectedSent);
  else assert.equal(e.detections, s.infectedSent, 'one detection per worm message');
  assert.equal(e.notices, s.detectedNames);
  assert.equal(e.reports, s.abuseReportsExpected);
  assert.deepEqual(e.reportsMiscounting, []);
  assert.equal(e.inNoticeOrDigest, e.detections);
  assert.deepEqual(e.sentTwiceUnflagged, []);
}

test('replay (small, --nodes 2): every line holds, per node and exactly once', async () => {
  const outcome = await runReplay({ size: 'small', seed: 2004, concurrency: 20, clamdUrl: clamd.url, nodes: 2 });
  assertTwoNodes(outcome);
  assert.equal(outcome.scoreboard.nodes!.some((n) => n.killed), false);
});

test('replay (small, --nodes 2 --kill-node): the SIGKILLed node had answered, and nothing it answered is forgotten', async () => {
  const outcome = await runReplay({ size: 'small', seed: 2004, concurrency: 20, clamdUrl: clamd.url, nodes: 2, killNode: true });
  assertTwoNodes(outcome);
  const killed = outcome.scoreboard.nodes![1]!.killed;
  assert.ok(killed && killed.answeredBefore > 0, `the victim answered before its SIGKILL: ${JSON.stringify(killed)}`);
  assert.equal(killed.withoutRecord, 0);
  assert.match(outcome.lines.find((l) => l.name.startsWith('replay-2:'))!.expectation, /SIGKILLed after \d+ replies and restarted, 0 of those without a record/);
});

test('replay refuses --nodes with a front Postfix, and --kill-node with one node, saying what to do', async () => {
  await assert.rejects(runReplay({ size: 'small', seed: 1, concurrency: 1, clamdUrl: clamd.url, nodes: 2, mode: 'milter' }), /--mode direct only.*Use --mode direct --nodes 2, or --mode milter with one node/);
  await assert.rejects(runReplay({ size: 'small', seed: 1, concurrency: 1, clamdUrl: clamd.url, killNode: true }), /--kill-node needs --nodes 2 or more/);
  await assert.rejects(runReplay({ size: 'small', seed: 1, concurrency: 1, clamdUrl: clamd.url, nodes: 0 }), /--nodes must be a whole number from 1 to 8/);
});

test('backstop replay: --nodes and --kill-node are checked before anything starts, with the same words', async () => {
  const { command } = await import('../../src/cli/commands/replay.ts');
  const { UsageError } = await import('../../src/cli/command.ts');
  const cases: [string[], RegExp][] = [
    [['--nodes', '3', '--mode', 'postfix-proxy'], /--nodes 3 runs with --mode direct only/],
    [['--nodes', 'two'], /--nodes must be a whole number from 1 to 8/],
    [['--nodes', '9'], /--nodes must be a whole number from 1 to 8/],
    [['--kill-node'], /--kill-node needs --nodes 2 or more/],
  ];
  for (const [args, message] of cases) await assert.rejects(command.run(args), (err: Error) => err instanceof UsageError && message.test(err.message), args.join(' '));
  assert.match(command.usage, /--nodes N \[--kill-node\]/);
});
