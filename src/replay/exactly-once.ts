/*
 * replay/exactly-once — the crash guarantees of many nodes on one store,
 * counted: what the clients were told against what the store committed, and
 * what reached the capture relay against what the store says was detected.
 * Used by `backstop replay --nodes N` (its scoreboard's exactly-once lines)
 * and by the cluster tests (test/helpers/cluster.ts verifyRun), so the two
 * count the same way.
 *
 * Pure: the inputs are rows read from the store and the relay's dumps as
 * text; nothing here does I/O. Every relay dump is mail Backstop wrote, but
 * its fields are parsed defensively (a missing header counts as a failure,
 * never as a pass).
 */
import { noticeKey } from '../notify/notice.ts';
import type { ScoreLine } from './score-line.ts';

/** A message record as committed (messages table); `node` is NAME, or NAME/wK from a node of several workers. */
export interface StoredMessage {
  messageId: string | null;
  reply: string;
  node: string;
  verdict: string;
  detail: string | null;
  clientIp: string;
}

/** A final reply to the end of DATA (250 or 5xx) as a client saw it, and the node that gave it. */
export interface ClientReply {
  messageId: string;
  code: number;
  node: string;
}

export interface ExactlyOnceInput {
  replies: readonly ClientReply[];
  records: readonly StoredMessage[];
  /** The text of every message the capture relay received (smtp-sink dumps), copies included. */
  relay: readonly string[];
  /** Ids of the outbox jobs flagged possible_duplicate (a node died between the relay's 250 and `done`). */
  flaggedJobIds: readonly string[];
  /** The sources that must each get one ARF report; default every source with a detection. */
  reportedSources?: readonly string[];
}

export interface ExactlyOnce {
  replies: number;
  /** Replies with no committed record of that Message-ID, that node and that reply code. */
  repliesWithoutRecord: string[];
  detections: number;
  names: number;
  /** Distinct immediate postmaster notices, and names that got more than one (by subject). */
  notices: number;
  namesNoticedTwice: number;
  sources: number;
  reports: number;
  /** Sources with more than one distinct report, without one, and whose report's `Incidents:` is not their detections (`IP: said of recorded`). */
  sourcesReportedTwice: number;
  sourcesNotReported: number;
  reportsMiscounting: string[];
  digests: number;
  /** Detections carried by the first notices plus the digests' totals (each distinct digest once). */
  inNoticeOrDigest: number;
  /** Message-IDs at the relay more than once, and those among them whose job is not flagged. */
  sentTwice: string[];
  sentTwiceUnflagged: string[];
}

/** A header field's value (first occurrence, unfolded) from a message's header block. */
export function header(text: string, name: string): string | null {
  const head = text.slice(0, text.search(/\r?\n\r?\n/) >>> 0);
  const m = new RegExp(`^${name}:[ \\t]*((?:.*)(?:\\r?\\n[ \\t].*)*)`, 'im').exec(head);
  return m ? m[1]!.replace(/\r?\n[ \t]+/g, ' ').trim() : null;
}

interface RelayMail {
  text: string;
  messageId: string;
}

/** One copy per Message-ID: a repeat is judged by sentTwice, not counted again here. */
function distinct(list: RelayMail[]): RelayMail[] {
  return [...new Map(list.map((m) => [m.messageId, m])).values()];
}

/** A digest's "N message(s) in all", quoted-printable soft breaks undone; NaN when it says none. */
function digestTotal(text: string): number {
  return Number(/(\d+) message\(s\) in all/.exec(text.replace(/=\r?\n/g, ''))?.[1] ?? NaN);
}

const sourceOf = (text: string) => /^Source-IP:\s*(\S+)/m.exec(text)?.[1] ?? '';

export function countExactlyOnce(input: ExactlyOnceInput): ExactlyOnce {
  // A node of several workers writes NAME/wK in its records (cluster/plan): the node is NAME.
  const committed = new Set(input.records.map((r) => `${r.messageId}\n${r.node.split('/')[0]}\n${r.reply.slice(0, 3)}`));
  const repliesWithoutRecord = input.replies.filter((r) => !committed.has(`${r.messageId}\n${r.node}\n${r.code}`)).map((r) => r.messageId);

  const detections = input.records.filter((r) => r.verdict === 'infected' || r.verdict === 'banned');
  const names = new Set(detections.map((r) => noticeKey(r.verdict as 'infected' | 'banned', r.detail ?? '')));
  const perSource = new Map<string, number>();
  for (const d of detections) perSource.set(d.clientIp, (perSource.get(d.clientIp) ?? 0) + 1);
  const expected = new Set(input.reportedSources ?? perSource.keys());

  const all = input.relay.map((text) => ({ text, messageId: header(text, 'Message-ID') ?? '' }));
  const notices = distinct(all.filter((m) => m.messageId.startsWith('<postmaster-notice.')));
  const digests = distinct(all.filter((m) => m.messageId.startsWith('<digest-')));
  const reports = distinct(all.filter((m) => m.messageId.startsWith('<arf-')));
  const subjects = new Set(notices.map((m) => header(m.text, 'Subject') ?? ''));
  const reportsOf = new Map<string, number>();
  for (const m of reports) reportsOf.set(sourceOf(m.text), (reportsOf.get(sourceOf(m.text)) ?? 0) + 1);

  const copies = new Map<string, number>();
  for (const m of all) copies.set(m.messageId, (copies.get(m.messageId) ?? 0) + 1);
  const sentTwice = [...copies].filter(([, n]) => n > 1).map(([id]) => id);

  return {
    replies: input.replies.length,
    repliesWithoutRecord,
    detections: detections.length,
    names: names.size,
    notices: notices.length,
    namesNoticedTwice: notices.length - subjects.size,
    sources: expected.size,
    reports: reports.length,
    sourcesReportedTwice: [...reportsOf.values()].filter((n) => n > 1).length,
    sourcesNotReported: [...expected].filter((ip) => !reportsOf.has(ip)).length,
    reportsMiscounting: reports.flatMap((m) => {
      const said = Number(/^Incidents:\s*(\d+)/m.exec(m.text)?.[1]);
      const recorded = perSource.get(sourceOf(m.text)) ?? 0;
      return said === recorded ? [] : [`${sourceOf(m.text)}: ${said} of ${recorded}`];
    }),
    digests: digests.length,
    inNoticeOrDigest: notices.length + digests.reduce((n, m) => n + digestTotal(m.text), 0),
    sentTwice,
    sentTwiceUnflagged: sentTwice.filter((id) => !input.flaggedJobIds.some((job) => id.includes(job))),
  };
}

/**
 * The relay's mail with the repeats of flagged jobs left out (the first copy
 * kept): the other scoreboard lines count a possible duplicate once, the
 * exactly-once line judges it. An unflagged repeat stays, and fails both.
 */
export function firstCopies<M extends { text: string }>(messages: readonly M[], flaggedJobIds: readonly string[]): M[] {
  const seen = new Set<string>();
  return messages.filter((m) => {
    const id = header(m.text, 'Message-ID') ?? '';
    if (!flaggedJobIds.some((job) => id.includes(job))) return true;
    if (seen.has(id)) return false;
    seen.add(id);
    return true;
  });
}

/** Whether the outbox has sent all it will: a notice per name, a report per source, every detection in a notice or digest. */
export function outboxDrained(e: ExactlyOnce): boolean {
  return e.notices >= e.names && e.reports >= e.sources && e.inNoticeOrDigest >= e.detections;
}

/** The scoreboard lines of the exactly-once guarantees; each must hold. */
export function exactlyOnceLines(e: ExactlyOnce): ScoreLine[] {
  const reportsHold = e.reports === e.sources && e.sourcesReportedTwice === 0 && e.sourcesNotReported === 0 && e.reportsMiscounting.length === 0;
  return [
    {
      name: 'replies the clients saw (250 or 5xx at end of DATA) without the committed record of the node that answered',
      value: e.repliesWithoutRecord.length,
      expectation: `= 0 of ${e.replies} replies`,
      holds: e.replies > 0 && e.repliesWithoutRecord.length === 0,
    },
    {
      name: 'immediate postmaster notices: exactly one per malware name, all nodes together',
      value: e.notices,
      expectation: `= ${e.names} names, 0 names twice${e.namesNoticedTwice > 0 ? ` (seen ${e.namesNoticedTwice})` : ''}`,
      holds: e.notices === e.names && e.namesNoticedTwice === 0,
    },
    {
      name: 'ARF reports: exactly one per source IP, counting every detection of it',
      value: e.reports,
      expectation: `= ${e.sources} sources, 0 twice, 0 missing, 0 miscounted${reportsHold ? '' : ` (seen ${e.sourcesReportedTwice} twice, ${e.sourcesNotReported} missing, ${e.reportsMiscounting.length} miscounted)`}`,
      holds: reportsHold,
    },
    {
      name: 'detections in exactly one digest or the first notice (no digest counted twice)',
      value: e.inNoticeOrDigest,
      expectation: `= ${e.detections} detections (${e.notices} notices, ${e.digests} digests)`,
      holds: e.inNoticeOrDigest === e.detections,
    },
    {
      name: 'mail at the capture relay twice, except jobs flagged possible_duplicate',
      value: e.sentTwiceUnflagged.length,
      expectation: `= 0 (${e.sentTwice.length} sent twice, all flagged)`,
      holds: e.sentTwiceUnflagged.length === 0,
    },
  ];
}

/** What one node answered during the sending phases: a final reply to end of DATA or an envelope refusal. */
export interface NodeShare {
  node: string;
  answered: number;
  p99Ms: number;
  /** Set for the node the replay SIGKILLed: how many replies it had given before, and how many of those lack their record. */
  killed?: { answeredBefore: number; withoutRecord: number };
}

/** One line per node: its share of the replies and its throughput over the sending time; each node must have answered. */
export function perNodeLines(shares: readonly NodeShare[], seconds: number): ScoreLine[] {
  return shares.map((s) => {
    const rate = seconds > 0 ? s.answered / seconds : 0;
    const killed = s.killed ? `; SIGKILLed after ${s.killed.answeredBefore} replies and restarted, ${s.killed.withoutRecord} of those without a record` : '';
    return {
      name: `${s.node}: messages answered (${rate.toFixed(1)} msg/s, p99 ${s.p99Ms.toFixed(1)} ms)`,
      value: s.answered,
      expectation: `> 0${killed}`,
      holds: s.answered > 0 && (s.killed === undefined || (s.killed.answeredBefore > 0 && s.killed.withoutRecord === 0)),
    };
  });
}
