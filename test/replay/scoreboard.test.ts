import assert from 'node:assert/strict';
import { test } from 'node:test';
import { computeScoreboard, scoreLines } from '../../src/replay/scoreboard.ts';
import type { SendResult } from '../../src/replay/send.ts';
import { buildRaw, planReplay, type ReplaySizes } from '../../src/replay/traffic.ts';

const tiny: ReplaySizes = { wormSources: 3, wormMessages: 10, legitMessages: 5, backscatterMessages: 4, bouncingDomains: 2 };
const plan = planReplay(tiny, 1);
const ok = (seq: number): SendResult => ({ seq, code: 250, response: '250 ok', latencyMs: seq, retried: false });
const refused = (seq: number): SendResult => ({ seq, code: 550, response: '550 no', latencyMs: 1, retried: false });

function perfectRun() {
  const results = plan.entries.map((e) => (e.kind === 'legit' ? ok(e.seq) : refused(e.seq)));
  const nextHop = plan.entries.filter((e) => e.kind === 'legit').map((e) => buildRaw(e).toString('latin1'));
  return { results, nextHop };
}

test('a perfect run holds every line', () => {
  const { results, nextHop } = perfectRun();
  const s = computeScoreboard(plan, results, { nextHop, outgoingRecipients: ['postmaster@example.net'] }, 2, 'tiny');
  assert.equal(s.infectedDelivered, 0);
  assert.equal(s.legitDelivered, 5);
  assert.equal(s.legitLostOrDelayed, 0);
  assert.equal(s.messagesPerSecond, plan.entries.length / 2);
  assert.ok(scoreLines(s).every((l) => l.holds));
});

test('one worm message at the next hop fails the infected line', () => {
  const { results, nextHop } = perfectRun();
  const worm = plan.entries.find((e) => e.kind === 'worm')!;
  const s = computeScoreboard(plan, results, { nextHop: [...nextHop, buildRaw(worm).toString('latin1')], outgoingRecipients: [] }, 1, 'tiny');
  assert.equal(s.infectedDelivered, 1);
  assert.equal(scoreLines(s).find((l) => l.name.startsWith('infected'))!.holds, false);
});

test('a legitimate message that never arrived fails the legit line', () => {
  const { results, nextHop } = perfectRun();
  const s = computeScoreboard(plan, results, { nextHop: nextHop.slice(1), outgoingRecipients: [] }, 1, 'tiny');
  assert.equal(s.legitLostOrDelayed, 1);
  assert.equal(scoreLines(s).find((l) => l.name.startsWith('legitimate'))!.holds, false);
});

test('a notice to a forged worm sender fails the sender line, whatever its case', () => {
  const { results, nextHop } = perfectRun();
  const worm = plan.entries.find((e) => e.kind === 'worm')!;
  const victim = worm.kind === 'worm' ? worm.mailFrom.toUpperCase() : '';
  const s = computeScoreboard(plan, results, { nextHop, outgoingRecipients: [victim] }, 1, 'tiny');
  assert.equal(s.sentToWormSenders, 1);
  assert.equal(scoreLines(s).find((l) => l.name.startsWith('messages sent'))!.holds, false);
});

test('backscatter above 1% fails its line', () => {
  const { results, nextHop } = perfectRun();
  const bs = plan.entries.find((e) => e.kind === 'backscatter')!;
  const s = computeScoreboard(plan, results, { nextHop: [...nextHop, buildRaw(bs).toString('latin1')], outgoingRecipients: [] }, 1, 'tiny');
  assert.equal(s.backscatterDeliveredToUsers, 1);
  assert.equal(s.backscatterDeliveredPercent, 25);
  assert.equal(scoreLines(s).find((l) => l.name.startsWith('backscatter'))!.holds, false);
});
