/*
 * What every small replay must show, whatever its --mode or --nodes
 * (test/replay/*.test.ts): every line holds, and the counts behind the lines
 * are the plan's (seed 2004). With `nodes` > 1 the scoreboard has one line
 * per node and the five exactly-once lines after the eight of one node.
 */
import assert from 'node:assert/strict';
import type { ReplayOutcome } from '../../src/replay/run.ts';

export function assertSmallScoreboardHolds({ scoreboard: s, lines, passed }: ReplayOutcome, nodes = 1): void {
  assert.deepEqual(lines.filter((l) => !l.holds).map((l) => `${l.name}: ${l.value} (${l.expectation})`), []);
  assert.equal(passed, true);
  assert.equal(lines.length, nodes > 1 ? 8 + nodes + 5 : 8);
  assert.equal(s.infectedSent, 324);
  assert.equal(s.infectedDelivered, 0);
  assert.equal(s.legitSent, 60);
  assert.equal(s.legitDelivered, 60);
  assert.equal(s.legitLostOrDelayed, 0);
  // Our users' mail out (signed, stamped) and the remote MTAs' real bounces of it, at the user's own mailbox.
  assert.equal(s.outboundSent, 8);
  assert.equal(s.outboundDelivered, 8);
  assert.equal(s.realBouncesSent, 4);
  assert.equal(s.realBouncesDelivered, 4);
  assert.equal(s.realBouncesRefused, 0);
  assert.equal(s.sentToWormSenders, 0);
  assert.equal(s.backscatterSent, 60);
  assert.equal(s.backscatterDeliveredToUsers, 0);
  assert.ok(s.sourceIps >= 18, `${s.sourceIps} distinct infected sources`);
  assert.ok(s.detectedNames >= 2, `${s.detectedNames} names detected`);
  assert.equal(s.postmasterNotices, s.detectedNames);
  assert.ok(s.postmasterDigests >= 1, 'the rest of the wave went into a digest');
  assert.equal(s.noticesElsewhere, 0);
  // The ARF's Source-IP is the infected PC's, the complaint's contact the bouncing MTA's: both need the real client.
  assert.ok(s.abuseReportsExpected >= 10, `${s.abuseReportsExpected} sources with a desk`);
  assert.equal(s.abuseReports, s.abuseReportsExpected, 'one ARF report per source whose network has a desk');
  assert.equal(s.abuseReportsWrongContact, 0);
  assert.equal(s.abuseReportsDuplicate, 0);
  assert.equal(s.abuseReportsMissing, 0);
  assert.equal(s.abuseReportsAboutCustomers, 0, 'our customers go to the desk, not to an ARF report');
  assert.equal(s.complaintsExpected, 3, 'the three bouncing domains whose AV notices reached end of DATA');
  assert.equal(s.complaints, 3);
  assert.equal(s.complaintsDuplicate, 0);
  assert.equal(s.complaintsWrongContact, 0);
  assert.equal(s.complaintsWithoutHeaders, 0);
  assert.equal(s.complaintsCarryingWorm, 0);
  assert.equal(s.customersInfected, 3);
  for (const n of [s.customersWithIncident, s.customersNotified, s.customersRestricted, s.customersReleased]) assert.equal(n, 3);
  assert.equal(s.customerNotices, 6, 'the opening notice and the restriction notice, each');
  assert.ok(s.messagesPerSecond > 0 && s.p99Ms > 0);
}
