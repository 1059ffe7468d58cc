/*
 * replay/scoreboard — the mission's scoreboard, computed from the plan (ground
 * truth), what each client saw, what actually arrived at the next hop and at
 * the outgoing relay, and what the replay's operator and customers saw of the
 * abuse desk (replay/operator.ts). Legitimate mail is three kinds: inbound
 * to our users, our users' own mail out (it must leave with a BATV-signed
 * sender and the Message-ID stamp), and the remote MTAs' real bounces of it
 * (they must reach the user's own mailbox, the tag removed). Pure: every line is a count over those
 * inputs, and each line says whether it holds. readComplaints only parses
 * (MIME) what the relay captured; nothing here does I/O.
 */
import PostalMime from 'postal-mime';
import { parsePrvs } from '../backscatter/batv.ts';
import { STAMP_HEADER } from '../backscatter/verdict.ts';
import { noticeKey } from '../notify/notice.ts';
import type { ExactlyOnce, NodeShare } from './exactly-once.ts';
import { parseSinkDump, type SinkedMessage } from './processes.ts';
import type { ScoreLine } from './score-line.ts';
import type { SendResult } from './send.ts';
import { buildRaw, wormFragments, type PlanEntry, type ReplayPlan } from './traffic.ts';

export interface Delivered {
  /** Text of every message the next hop (our users' mailboxes, and onward for mail out) received: smtp-sink's dump, envelope lines first. */
  nextHop: string[];
  /** Envelope recipients of every message Backstop itself sent (notices, reports, complaints). */
  outgoingRecipients: string[];
  /** Everything Backstop sent, with its envelope, and the postmaster address notices must go to. */
  outgoing?: SinkedMessage[];
  postmaster?: string;
  /** The envelope sender of complaints to bouncing MTAs (backscatter.complaints.from), and the complaints read by readComplaints. */
  complaintFrom?: string;
  complaints?: ComplaintSeen[];
  /** The envelope sender of the desk's customer notices (desk.notice.from). */
  deskFrom?: string;
  /** What the operator and each infected customer saw (replay/operator.ts); absent: the desk did not run. */
  customers?: CustomerSeen[];
}

/** One complaint as the relay received it, its MIME leaves decoded. */
export interface ComplaintSeen {
  rcptTo: string[];
  parts: { type: string; filename: string | null; disposition: string | null; content: string }[];
  raw: string;
}

/** One SMTP reply to a probe: MAIL FROM from a customer's PC at the smarthost. */
export interface SmtpProbe {
  code: number;
  text: string;
}

/** What the replay saw of one infected customer, step by step. */
export interface CustomerSeen {
  id: string;
  /** The incident's state at the end (`backstop incident list`), null when it has none. */
  incidentState: string | null;
  /** MAIL during the grace period: after the opening notice, before the grace timer fired. */
  duringGrace: SmtpProbe;
  /** After the grace timer (backstop incident tick --now past the grace): MAIL, and whether restricted.txt listed the line. */
  restricted: SmtpProbe;
  listedWhileRestricted: boolean;
  /** The portal's answer to the attestation (token from the latest notice at the relay); 0 when no link was found. */
  attestStatus: number;
  released: SmtpProbe;
  listedAfterRelease: boolean;
}

export interface Scoreboard {
  size: string;
  messages: number;
  infectedSent: number;
  infectedDelivered: number;
  legitSent: number;
  legitDelivered: number;
  /** Legitimate mail of all three kinds (inbound, ours out, real bounces) without a 250 after one retry or not where it belongs. */
  legitLostOrDelayed: number;
  /** Our users' mail out: sent, and at the next hop with the sender BATV-signed (prvs=…=the user) and the stamp. */
  outboundSent: number;
  outboundDelivered: number;
  /** The remote MTAs' bounces of it: sent (null sender, to the signed address), and at the next hop to the user's own address. */
  realBouncesSent: number;
  realBouncesDelivered: number;
  /** Real bounces the gateway refused (5xx): a bounce of mail we sent taken for backscatter. */
  realBouncesRefused: number;
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
  /** ARF reports about our own customers' addresses (their space goes to the desk, never out by mail). */
  abuseReportsAboutCustomers: number;
  /** Immediate postmaster notices (one per new name expected) and digests. */
  postmasterNotices: number;
  postmasterDigests: number;
  detectedNames: number;
  noticesElsewhere: number;
  /** Complaints to bouncing MTAs: sent, expected (one per bouncing domain whose notice reached end of DATA), and what must be 0. */
  complaints: number;
  complaintsExpected: number;
  complaintsDuplicate: number;
  complaintsMissing: number;
  complaintsWrongContact: number;
  complaintsWithoutHeaders: number;
  complaintsCarryingWorm: number;
  /** Our infected ISP customers and how far each went: incident, notice, restricted after grace, released after attesting. */
  customersInfected: number;
  customersWithIncident: number;
  customersNotified: number;
  customersRestricted: number;
  customersReleased: number;
  customerNotices: number;
  messagesPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  seconds: number;
  /** The Backstop node's peak resident memory over the whole run (Linux VmHWM), when it could be read. */
  nodePeakRssMb?: number;
  /** With several nodes (`backstop replay --nodes N`): each node's share, and the crash guarantees counted (replay/exactly-once.ts). */
  nodes?: NodeShare[];
  exactlyOnce?: ExactlyOnce;
}

/** An ARF report among what Backstop sent (RFC 5965: multipart/report; report-type=feedback-report), with the source it names. */
function arfSource(m: SinkedMessage): string | null {
  if (!/^Content-Type:\s*multipart\/report;[^\n]*(\n[ \t][^\n]*)*report-type="?feedback-report/im.test(m.text)) return null;
  return /^Source-IP:\s*(\S+)/m.exec(m.text)?.[1] ?? '';
}

export function percentile(sorted: number[], p: number): number {
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

/** A header block as its unfolded fields (RFC 5322 2.2.3), line endings normalised. */
function unfoldedFields(block: string): string[] {
  return block
    .replace(/\r\n/g, '\n')
    .replace(/\n[ \t]+/g, ' ')
    .split('\n')
    .map((l) => l.trimEnd())
    .filter((l) => l !== '');
}

/** The header block of a plan entry's message, exactly as the client sent it. */
function sentHeaderBlock(entry: PlanEntry): string {
  const text = buildRaw(entry).toString('latin1');
  const end = text.indexOf('\r\n\r\n');
  return end === -1 ? text : text.slice(0, end);
}

const LETTER_TYPES = new Set(['text/plain', 'text/rfc822-headers']);

interface ComplaintJudgement {
  domain: string | null;
  wrongContact: boolean;
  withoutHeaders: boolean;
  carryingWorm: boolean;
}

/**
 * One complaint against the plan: which bounce it quotes (the bounce's own
 * Message-ID, <replay-SEQ@…>, in its text/rfc822-headers part), whether every
 * header field of that bounce is there, whether it went only to the bouncing
 * organisation's own mailboxes, and whether anything of the worm came along —
 * a part that is neither the letter nor the header block, the payload (EICAR,
 * the ClamAV test file, raw or base64) or the worm's own text the notice quoted.
 */
function judgeComplaint(c: ComplaintSeen, bySeq: Map<number, PlanEntry>, fragments: readonly string[]): ComplaintJudgement {
  const headerParts = c.parts.filter((p) => p.type === 'text/rfc822-headers');
  let entry: PlanEntry | undefined;
  for (const p of headerParts) {
    const m = /^Message-ID:\s*<replay-(\d+)@/im.exec(p.content);
    const e = m ? bySeq.get(Number(m[1])) : undefined;
    if (e?.kind === 'backscatter') entry = e;
  }
  const domain = entry?.kind === 'backscatter' ? entry.bouncingDomain : null;
  let withoutHeaders = true;
  if (entry) {
    const quoted = new Set(headerParts.flatMap((p) => unfoldedFields(p.content)));
    withoutHeaders = !unfoldedFields(sentHeaderBlock(entry)).every((f) => quoted.has(f));
  }
  const allowed = domain ? new Set([`abuse@${domain}`, `postmaster@${domain}`]) : new Set<string>();
  const wrongContact = c.rcptTo.length === 0 || !c.rcptTo.every((r) => allowed.has(r.toLowerCase()));
  const texts = [c.raw, ...c.parts.map((p) => p.content)];
  const carryingWorm =
    c.parts.some((p) => !LETTER_TYPES.has(p.type) || p.filename !== null || p.disposition === 'attachment') ||
    texts.some((t) => fragments.some((f) => t.includes(f)));
  return { domain, wrongContact, withoutHeaders, carryingWorm };
}

/** Reads complaints as captured by the relay: MIME decoded with postal-mime, every leaf part kept (binary as latin1). */
export async function readComplaints(messages: readonly SinkedMessage[]): Promise<ComplaintSeen[]> {
  const out: ComplaintSeen[] = [];
  for (const m of messages) {
    const start = m.text.search(/^Received: /m);
    const message = start === -1 ? m.text : m.text.slice(start);
    const mail = await PostalMime.parse(Buffer.from(message, 'latin1'));
    const parts: ComplaintSeen['parts'] = [];
    if (mail.text !== undefined) parts.push({ type: 'text/plain', filename: null, disposition: null, content: mail.text });
    if (mail.html !== undefined) parts.push({ type: 'text/html', filename: null, disposition: null, content: mail.html });
    for (const a of mail.attachments) {
      const content = typeof a.content === 'string' ? a.content : Buffer.from(a.content as ArrayBuffer).toString('latin1');
      parts.push({ type: a.mimeType.toLowerCase(), filename: a.filename ?? null, disposition: a.disposition ?? null, content });
    }
    out.push({ rcptTo: m.rcptTo, parts, raw: message });
  }
  return out;
}

/** The customer went through every step: incident, grace respected, restricted (refused and listed), released (accepted, unlisted). */
/** The external worm sources whose network has a desk: each must get its one ARF report (our customers go to the desk instead). */
export function expectedReportSources(plan: ReplayPlan): string[] {
  const wormSources = new Set(plan.entries.filter((e) => e.kind === 'worm' && !e.customerId).map((e) => e.sourceIp));
  return [...wormSources].filter((ip) => plan.abuseContactOf[ip]);
}

function customerSteps(c: CustomerSeen | undefined, notices: number) {
  const refused = (p: SmtpProbe) => p.code === 550 && /\b5\.7\.1\b/.test(p.text);
  return {
    incident: c !== undefined && c.incidentState !== null,
    notified: notices > 0,
    restricted: c !== undefined && c.duringGrace.code === 250 && refused(c.restricted) && c.listedWhileRestricted,
    released: c !== undefined && c.attestStatus === 200 && c.released.code === 250 && !c.listedAfterRelease && c.incidentState === 'probation',
  };
}

/**
 * Where a legitimate message arrived as it should: ours out with the user's
 * signed sender and the stamp; a real bounce from the null sender to the
 * user's own address (tag removed) and nowhere else; inbound mail anyhow.
 */
function arrivedRight(entry: PlanEntry, dump: SinkedMessage): boolean {
  if (entry.kind === 'outbound') {
    const tag = parsePrvs(dump.mailFrom);
    return tag !== null && tag.original.toLowerCase() === entry.mailFrom.toLowerCase() && new RegExp(`^${STAMP_HEADER}: bs1\\.[0-9a-f]+\\s*$`, 'im').test(dump.text);
  }
  if (entry.kind === 'real-bounce') return dump.mailFrom === '' && dump.rcptTo.length === 1 && dump.rcptTo[0]!.toLowerCase() === entry.rcpt.toLowerCase();
  return true;
}

export function computeScoreboard(plan: ReplayPlan, results: SendResult[], delivered: Delivered, seconds: number, size: string): Scoreboard {
  const bySeq = new Map<number, PlanEntry>(plan.entries.map((e) => [e.seq, e]));
  const arrived = deliveredSeqs(delivered.nextHop);
  // Legitimate mail counts where it arrived as it should (arrivedRight); by seq, once.
  const arrivedWell = new Set<number>();
  for (const text of delivered.nextHop) {
    const seq = Number(/^Message-ID: <replay-(\d+)@/im.exec(text)?.[1] ?? NaN);
    const entry = bySeq.get(seq);
    if (entry && arrivedRight(entry, parseSinkDump(text))) arrivedWell.add(seq);
  }
  const wellOf = (kind: PlanEntry['kind']) => [...arrivedWell].filter((s) => bySeq.get(s)?.kind === kind).length;
  const acceptedOf = (kind: PlanEntry['kind']) => results.filter((r) => r.code === 250 && bySeq.get(r.seq)?.kind === kind).length;
  const lostOf = (kind: PlanEntry['kind']) => kindCount(kind) - Math.min(acceptedOf(kind), wellOf(kind));
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
  const customerIps = new Set(plan.customers.map((c) => c.sourceIp));
  const wormSources = new Set(plan.entries.filter((e) => e.kind === 'worm' && !e.customerId).map((e) => e.sourceIp));
  const expectedSources = expectedReportSources(plan);
  const reportedSources = new Set(reports.map((r) => r.source));
  const subjects = toPostmaster.map((m) => /^Subject: (.*)$/m.exec(m.text)?.[1] ?? '');
  const digestSubject = /^possible virus found: (.+ \(\d+ more\)|\d+ detections of \d+ names)$/;
  const backscatterDelivered = arrivedOf('backscatter');

  // Complaints: what the relay got from the complaint sender, judged one by one.
  const complaintFrom = delivered.complaintFrom?.toLowerCase();
  const fragments = wormFragments();
  const judged = (delivered.complaints ?? []).map((c) => judgeComplaint(c, bySeq, fragments));
  const complainedDomains = new Set(judged.flatMap((j) => (j.domain ? [j.domain] : [])));

  // Customers: notices from the desk's sender to each customer's address, and what the operator saw.
  const deskFrom = delivered.deskFrom?.toLowerCase();
  const customerEmails = new Map(plan.customers.map((c) => [c.email.toLowerCase(), c.id]));
  const deskNotices = outgoing.filter((m) => deskFrom !== undefined && m.mailFrom.toLowerCase() === deskFrom && m.rcptTo.length === 1 && customerEmails.has(m.rcptTo[0]!.toLowerCase()));
  const noticesOf = (id: string) => deskNotices.filter((m) => customerEmails.get(m.rcptTo[0]!.toLowerCase()) === id).length;
  const infectedCustomers = plan.customers.filter((c) => plan.entries.some((e) => e.kind === 'worm' && e.customerId === c.id));
  const seenCustomers = new Map((delivered.customers ?? []).map((c) => [c.id, c]));
  const steps = infectedCustomers.map((c) => customerSteps(seenCustomers.get(c.id), noticesOf(c.id)));
  const isComplaint = (m: SinkedMessage) => complaintFrom !== undefined && m.mailFrom.toLowerCase() === complaintFrom;

  return {
    size,
    messages: plan.entries.length,
    infectedSent: kindCount('worm'),
    infectedDelivered: arrivedOf('worm'),
    legitSent: kindCount('legit'),
    legitDelivered: wellOf('legit'),
    legitLostOrDelayed: lostOf('legit') + lostOf('outbound') + lostOf('real-bounce'),
    outboundSent: kindCount('outbound'),
    outboundDelivered: wellOf('outbound'),
    realBouncesSent: kindCount('real-bounce'),
    realBouncesDelivered: wellOf('real-bounce'),
    realBouncesRefused: results.filter((r) => r.code >= 500 && bySeq.get(r.seq)?.kind === 'real-bounce').length,
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
    abuseReportsAboutCustomers: reports.filter((r) => customerIps.has(r.source)).length,
    postmasterNotices: subjects.filter((s) => s.startsWith('possible virus found: ') && !digestSubject.test(s)).length,
    postmasterDigests: subjects.filter((s) => digestSubject.test(s)).length,
    detectedNames: detectedNames.size,
    noticesElsewhere: outgoing.length - toPostmaster.length - reports.length - outgoing.filter(isComplaint).length - deskNotices.length,
    complaints: judged.length,
    complaintsExpected: plan.complaintDomains.length,
    complaintsDuplicate: judged.length - complainedDomains.size,
    complaintsMissing: plan.complaintDomains.filter((d) => !complainedDomains.has(d)).length,
    complaintsWrongContact: judged.filter((j) => j.wrongContact).length,
    complaintsWithoutHeaders: judged.filter((j) => j.withoutHeaders).length,
    complaintsCarryingWorm: judged.filter((j) => j.carryingWorm).length,
    customersInfected: infectedCustomers.length,
    customersWithIncident: steps.filter((x) => x.incident).length,
    customersNotified: steps.filter((x) => x.notified).length,
    customersRestricted: steps.filter((x) => x.restricted).length,
    customersReleased: steps.filter((x) => x.released).length,
    customerNotices: deskNotices.length,
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
    {
      name: 'legitimate messages lost or delayed beyond one retry (inbound, ours out signed, real bounces of ours)',
      value: s.legitLostOrDelayed,
      expectation: `= 0 (${s.legitDelivered}/${s.legitSent} inbound, ${s.outboundDelivered}/${s.outboundSent} out, ${s.realBouncesDelivered}/${s.realBouncesSent} real bounces, ${s.realBouncesRefused} refused)`,
      holds:
        s.legitLostOrDelayed === 0 &&
        s.legitDelivered === s.legitSent &&
        s.outboundDelivered === s.outboundSent &&
        s.realBouncesDelivered === s.realBouncesSent &&
        s.realBouncesRefused === 0,
    },
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
      expectation: `= ${s.abuseReportsExpected} sources, 0 wrong contact, 0 repeated, 0 missing, 0 about our customers`,
      holds:
        s.abuseReports === s.abuseReportsExpected &&
        s.abuseReportsWrongContact === 0 &&
        s.abuseReportsDuplicate === 0 &&
        s.abuseReportsMissing === 0 &&
        s.abuseReportsAboutCustomers === 0,
    },
    { name: 'backscatter delivered to our users (%)', value: Number(s.backscatterDeliveredPercent.toFixed(2)), expectation: '<= 1%', holds: s.backscatterDeliveredPercent <= 1 },
    {
      name: 'complaints to bouncing MTAs: one per bouncing domain, the bounce\'s full headers, nothing of the worm',
      value: s.complaints,
      expectation: `= ${s.complaintsExpected} domains, 0 repeated, 0 missing, 0 wrong contact, 0 without headers, 0 carrying the worm`,
      holds:
        s.complaints === s.complaintsExpected &&
        s.complaintsDuplicate === 0 &&
        s.complaintsMissing === 0 &&
        s.complaintsWrongContact === 0 &&
        s.complaintsWithoutHeaders === 0 &&
        s.complaintsCarryingWorm === 0,
    },
    {
      name: 'our infected customers: incident, notified, restricted after grace, released after attesting',
      value: s.customersReleased,
      expectation: `= ${s.customersInfected} customers: ${s.customersWithIncident} incident, ${s.customersNotified} notified, ${s.customersRestricted} restricted, ${s.customersReleased} released`,
      holds: [s.customersWithIncident, s.customersNotified, s.customersRestricted, s.customersReleased].every((n) => n === s.customersInfected),
    },
  ];
}
