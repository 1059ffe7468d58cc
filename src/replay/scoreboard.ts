/*
 * replay/scoreboard — the mission's scoreboard, computed from the plan (ground
 * truth), what each client saw, and what actually arrived at the next hop and
 * at the outgoing relay. Pure: every line is a count over those inputs, and
 * each line says whether it holds.
 */
import { noticeKey } from '../notify/notice.ts';
import type { SinkedMessage } from './processes.ts';
import type { SendResult } from './send.ts';
import type { PlanEntry, ReplayPlan } from './traffic.ts';

export interface Delivered {
  /** Text of every message the next hop (our users' mailboxes) received. */
  nextHop: string[];
  /** Envelope recipients of every message Backstop itself sent (notices, reports, complaints). */
  outgoingRecipients: string[];
  /** Everything Backstop sent, with its envelope, and the postmaster address notices must go to. */
  outgoing?: SinkedMessage[];
  postmaster?: string;
}

export interface Scoreboard {
  size: string;
  messages: number;
  infectedSent: number;
  infectedDelivered: number;
  legitSent: number;
  legitDelivered: number;
  legitLostOrDelayed: number;
  sentToWormSenders: number;
  backscatterSent: number;
  backscatterDeliveredToUsers: number;
  backscatterDeliveredPercent: number;
  sourceIps: number;
  /** ARF reports Backstop sent, those to a desk other than the source's (or to an opted-out one), repeats, and sources never reported. */
  abuseReports: number;
  abuseReportsExpected: number;
  abuseReportsWrongContact: number;
  abuseReportsDuplicate: number;
  abuseReportsMissing: number;
  /** Immediate postmaster notices (one per new name expected) and digests. */
  postmasterNotices: number;
  postmasterDigests: number;
  detectedNames: number;
  noticesElsewhere: number;
  messagesPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  seconds: number;
}

export interface ScoreLine {
  name: string;
  value: number;
  expectation: string;
  holds: boolean;
}

/** An ARF report among what Backstop sent (RFC 5965: multipart/report; report-type=feedback-report), with the source it names. */
function arfSource(m: SinkedMessage): string | null {
  if (!/^Content-Type:\s*multipart\/report;[^\n]*(\n[ \t][^\n]*)*report-type="?feedback-report/im.test(m.text)) return null;
  return /^Source-IP:\s*(\S+)/m.exec(m.text)?.[1] ?? '';
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, index)]!;
}

/** Each message at the next hop names its plan entry in its Message-ID (`<replay-SEQ@…>`). */
function deliveredSeqs(nextHop: string[]): Set<number> {
  const seqs = new Set<number>();
  for (const text of nextHop) {
    const m = /^Message-ID: <replay-(\d+)@/im.exec(text);
    if (m) seqs.add(Number(m[1]));
  }
  return seqs;
}

export function computeScoreboard(plan: ReplayPlan, results: SendResult[], delivered: Delivered, seconds: number, size: string): Scoreboard {
  const bySeq = new Map<number, PlanEntry>(plan.entries.map((e) => [e.seq, e]));
  const arrived = deliveredSeqs(delivered.nextHop);
  const kindCount = (kind: PlanEntry['kind']) => plan.entries.filter((e) => e.kind === kind).length;
  const arrivedOf = (kind: PlanEntry['kind']) => [...arrived].filter((s) => bySeq.get(s)?.kind === kind).length;

  const wormSenders = new Set<string>();
  for (const e of plan.entries) {
    if (e.kind === 'worm') {
      wormSenders.add(e.mailFrom.toLowerCase());
      wormSenders.add(e.headerFrom.toLowerCase());
    }
  }
  const sentToWormSenders = delivered.outgoingRecipients.filter((r) => wormSenders.has(r.toLowerCase())).length;

  const legit = results.filter((r) => bySeq.get(r.seq)?.kind === 'legit');
  const legitAccepted = legit.filter((r) => r.code === 250).length;
  const latencies = results.filter((r) => r.code > 0).map((r) => r.latencyMs).sort((a, b) => a - b);
  const backscatterSent = kindCount('backscatter');
  // Names the gateway reported in its 5xx replies: what the postmaster must hear about, once each.
  const detectedNames = new Set(
    results
      .map((r) => /virus found: (.+)$|forbidden content: (.+)$/.exec(r.response.trim()))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => (m[1] !== undefined ? noticeKey('infected', m[1].trim()) : noticeKey('banned', m[2]!.trim()))),
  );
  const outgoing = delivered.outgoing ?? [];
  const toPostmaster = outgoing.filter((m) => m.rcptTo.length === 1 && m.rcptTo[0] === delivered.postmaster);
  const reports = outgoing.flatMap((m) => {
    const source = arfSource(m);
    return source === null ? [] : [{ source, rcptTo: m.rcptTo }];
  });
  const wormSources = new Set(plan.entries.filter((e) => e.kind === 'worm').map((e) => e.sourceIp));
  const expectedSources = [...wormSources].filter((ip) => plan.abuseContactOf[ip]);
  const reportedSources = new Set(reports.map((r) => r.source));
  const subjects = toPostmaster.map((m) => /^Subject: (.*)$/m.exec(m.text)?.[1] ?? '');
  const digestSubject = /^possible virus found: (.+ \(\d+ more\)|\d+ detections of \d+ names)$/;
  const backscatterDelivered = arrivedOf('backscatter');

  return {
    size,
    messages: plan.entries.length,
    infectedSent: kindCount('worm'),
    infectedDelivered: arrivedOf('worm'),
    legitSent: kindCount('legit'),
    legitDelivered: arrivedOf('legit'),
    legitLostOrDelayed: kindCount('legit') - Math.min(legitAccepted, arrivedOf('legit')),
    sentToWormSenders,
    backscatterSent,
    backscatterDeliveredToUsers: backscatterDelivered,
    backscatterDeliveredPercent: backscatterSent ? (100 * backscatterDelivered) / backscatterSent : 0,
    sourceIps: wormSources.size,
    abuseReports: reports.length,
    abuseReportsExpected: expectedSources.length,
    abuseReportsWrongContact: reports.filter((r) => {
      const contact = plan.abuseContactOf[r.source];
      return !contact || r.rcptTo.length !== 1 || r.rcptTo[0]!.toLowerCase() !== contact;
    }).length,
    abuseReportsDuplicate: reports.length - reportedSources.size,
    abuseReportsMissing: expectedSources.filter((ip) => !reportedSources.has(ip)).length,
    postmasterNotices: subjects.filter((s) => s.startsWith('possible virus found: ') && !digestSubject.test(s)).length,
    postmasterDigests: subjects.filter((s) => digestSubject.test(s)).length,
    detectedNames: detectedNames.size,
    noticesElsewhere: outgoing.length - toPostmaster.length - reports.length,
    messagesPerSecond: seconds > 0 ? plan.entries.length / seconds : 0,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    seconds,
  };
}

/** The lines that must hold for a replay to pass; a line that does not hold fails the run. */
export function scoreLines(s: Scoreboard): ScoreLine[] {
  return [
    { name: 'infected or banned messages delivered to a mailbox', value: s.infectedDelivered, expectation: '= 0', holds: s.infectedDelivered === 0 },
    { name: 'legitimate messages lost or delayed beyond one retry', value: s.legitLostOrDelayed, expectation: '= 0', holds: s.legitLostOrDelayed === 0 && s.legitDelivered === s.legitSent },
    { name: 'messages sent to any envelope or header sender of a worm message', value: s.sentToWormSenders, expectation: '= 0', holds: s.sentToWormSenders === 0 },
    {
      name: 'postmaster notices: one per new malware name (plus digests), to no one else',
      value: s.postmasterNotices,
      expectation: `= ${s.detectedNames} names, ${s.postmasterDigests} digests`,
      holds: s.postmasterNotices === s.detectedNames && s.noticesElsewhere === 0,
    },
    {
      name: 'abuse reports: one per external source IP per window, each to the desk the lookup chain should find',
      value: s.abuseReports,
      expectation: `= ${s.abuseReportsExpected} sources, 0 wrong contact, 0 repeated, 0 missing`,
      holds: s.abuseReports === s.abuseReportsExpected && s.abuseReportsWrongContact === 0 && s.abuseReportsDuplicate === 0 && s.abuseReportsMissing === 0,
    },
    { name: 'backscatter delivered to our users (%)', value: Number(s.backscatterDeliveredPercent.toFixed(2)), expectation: '<= 1%', holds: s.backscatterDeliveredPercent <= 1 },
  ];
}
