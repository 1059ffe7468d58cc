import assert from 'node:assert/strict';
import { test } from 'node:test';
import { computeScoreboard, scoreLines } from '../../src/replay/scoreboard.ts';
import type { SinkedMessage } from '../../src/replay/processes.ts';
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

/** An ARF report as the relay captured it, about `source`, to `desk`. */
function arf(source: string, desk: string): SinkedMessage {
  return {
    mailFrom: 'backstop@example.net',
    rcptTo: [desk],
    text: [
      `To: ${desk}`,
      'Content-Type: multipart/report; report-type=feedback-report;',
      ' boundary="b"',
      '',
      '--b',
      'Content-Type: message/feedback-report',
      '',
      'Feedback-Type: virus',
      `Source-IP: ${source}`,
      '--b--',
    ].join('\n'),
  };
}

const wormSources = [...new Set(plan.entries.filter((e) => e.kind === 'worm').map((e) => e.sourceIp))];
const rightReports = () => wormSources.filter((ip) => plan.abuseContactOf[ip]).map((ip) => arf(ip, plan.abuseContactOf[ip]!));

test('the plan knows the desk of each worm source: /29 networks, an opted-out one, a /32 inside a network that wins', () => {
  const big = planReplay({ ...tiny, wormSources: 40 }, 1);
  assert.equal(big.abuseContactOf['127.10.0.1'], 'abuse@net1.example.com');
  assert.equal(big.abuseContactOf['127.10.0.2'], 'abuse@reseller.example.org', 'the /32 override');
  assert.equal(big.abuseContactOf['127.10.0.3'], 'abuse@net1.example.com');
  assert.equal(big.abuseContactOf['127.10.0.8'], 'abuse@net2.example.com');
  assert.equal(big.abuseContactOf['127.10.0.24'], null, 'the fourth network opted out');
  assert.ok(big.abuseOverrides.some((o) => o.cidr === '127.10.0.24/29' && o.contact === 'never'));
  assert.ok(big.abuseOverrides.some((o) => o.cidr === '127.10.0.2/32'));
});

test('a perfect run holds every line', () => {
  const { results, nextHop } = perfectRun();
  const outgoing = rightReports();
  const s = computeScoreboard(plan, results, { nextHop, outgoingRecipients: outgoing.flatMap((m) => m.rcptTo), outgoing }, 2, 'tiny');
  assert.equal(s.abuseReports, s.abuseReportsExpected);
  assert.ok(s.abuseReports > 0);
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

test('an abuse report to the wrong desk, a repeat, or a missing one fails the abuse line', () => {
  const { results, nextHop } = perfectRun();
  const line = (outgoing: SinkedMessage[]) => {
    const s = computeScoreboard(plan, results, { nextHop, outgoingRecipients: outgoing.flatMap((m) => m.rcptTo), outgoing }, 1, 'tiny');
    return { s, holds: scoreLines(s).find((l) => l.name.startsWith('abuse reports'))!.holds };
  };
  const right = rightReports();
  assert.equal(line(right).holds, true);
  const wrong = line([arf(wormSources[0]!, 'abuse@somebody-else.example'), ...right.slice(1)]);
  assert.equal(wrong.s.abuseReportsWrongContact, 1);
  assert.equal(wrong.holds, false);
  const repeated = line([...right, right[0]!]);
  assert.equal(repeated.s.abuseReportsDuplicate, 1);
  assert.equal(repeated.holds, false);
  const missing = line(right.slice(1));
  assert.equal(missing.s.abuseReportsMissing, 1);
  assert.equal(missing.holds, false);
  assert.equal(line([...right, arf('127.99.0.1', 'abuse@net1.example.com')]).s.abuseReportsWrongContact, 1, 'a report about a source that sent no worm');
});
