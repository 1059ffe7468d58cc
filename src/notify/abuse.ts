/*
 * notify/abuse — abuse reports to the network the infected machine sits in
 * (R6): aggregation, the report job, and what it records.
 *
 * Keyed by the connecting IP address only — never the envelope or header
 * domains, never a Received: line someone else wrote. Per source IP, one
 * report per window (abuse.window, 24 h by default) counting every detection
 * in it; a source that stays infected window after window is reported in
 * windows 1, 2, 4, 8 … of its streak (inverse-exponential sampling), so a
 * desk that does not act is not flooded; at most abuse.hourlyCap reports in a
 * clock hour across all nodes. A message that is itself a feedback report is
 * never counted (a report about a report is a loop between two desks).
 *
 * The window state lives in the store and is changed by single atomic
 * statements, so any number of nodes agree on who starts a window; the report
 * is a job with a dedupe key per (IP, window), so it is sent once. The report
 * is sent reportDelay after the window opens, counting what arrived by then.
 */
import { sql } from 'kysely';
import type { Config } from '../config/schema.ts';
import { enqueue, type Job, type JobContext } from '../store/jobs.ts';
import type { Db } from '../store/store.ts';
import { composeArf, isFeedbackReport, type FeedbackType } from './arf.ts';
import { lookupContact, TransientLookupError, type ContactResult, type ContactSources } from './contact.ts';
import type { Detection } from './notice.ts';
import { sendThroughRelay } from './postmaster.ts';

export const ABUSE_JOB = 'abuse-report';

export type AbuseSettings = NonNullable<Config['abuse']>;

/** Why a new window gets, or does not get, a report. */
export type WindowDecision = 'report' | 'off' | 'sampled-out' | 'capped';

/** Report the 1st, 2nd, 4th, 8th … consecutive window of a source: the rate halves as the streak doubles. */
export function sampledIn(streak: number): boolean {
  return streak >= 1 && (streak & (streak - 1)) === 0;
}

/** The pure decision for a window that just opened (the hourly cap is asked only when it would be reported). */
export function decideWindow(reports: 'on' | 'off', streak: number, capAvailable: () => boolean): WindowDecision {
  if (reports === 'off') return 'off';
  if (!sampledIn(streak)) return 'sampled-out';
  return capAvailable() ? 'report' : 'capped';
}

/** Detections that may count towards a report: never one that is itself a feedback report. */
export function reportable(d: Detection): boolean {
  return !isFeedbackReport(d.headers);
}

/** Feedback-Type for a destination: an exact address match first, then its domain or a parent domain. */
export function feedbackTypeFor(contact: string, settings: Pick<AbuseSettings, 'feedbackType' | 'destinations'>): FeedbackType {
  const address = contact.toLowerCase();
  const domain = address.slice(address.lastIndexOf('@') + 1);
  const exact = settings.destinations.find((d) => d.match === address);
  if (exact) return exact.feedbackType;
  const byDomain = settings.destinations
    .filter((d) => !d.match.includes('@') && (domain === d.match || domain.endsWith(`.${d.match}`)))
    .sort((a, b) => b.match.length - a.match.length)[0];
  return byDomain?.feedbackType ?? settings.feedbackType;
}

export interface AbusePayload {
  clientIp: string;
  windowStart: string;
  detection: Detection;
}

/**
 * Counts a batch of detections into their sources' windows; for each window
 * this batch opened, decides and (if so) enqueues the report job. Returns the
 * decisions for the windows opened, by IP.
 */
export async function recordAbuse(db: Db, ds: readonly Detection[], settings: AbuseSettings, now = new Date()): Promise<Map<string, WindowDecision>> {
  const bySource = new Map<string, { count: number; first: Detection }>();
  for (const d of ds) {
    if (!reportable(d)) continue;
    const entry = bySource.get(d.clientIp);
    if (entry) entry.count++;
    else bySource.set(d.clientIp, { count: 1, first: d });
  }
  const decisions = new Map<string, WindowDecision>();
  const windowMs = settings.window;
  // Rows are locked in one order on every node (sources sorted, then the hourly cap), so two nodes'
  // group commits never wait on each other in a cycle: first every source's window, then the decisions.
  const opened: { ip: string; first: Detection; row: { window_start: Date; streak: number } }[] = [];
  for (const [ip, { count, first }] of [...bySource].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    // One statement decides whether this batch opened a new window: the row's
    // lock serialises nodes, and every CASE reads the row as it was.
    const { rows } = await sql<{ window_start: Date; streak: number; detections: number }>`
      insert into abuse_sources as s (client_ip, window_start, window_end, streak, detections, last_seen, decision)
      values (${ip}::inet, ${now}, ${new Date(now.getTime() + windowMs)}, 1, ${count}, ${now}, 'pending')
      on conflict (client_ip) do update set
        streak = case when ${now} < s.window_end then s.streak when ${now} < s.window_end + ${`${windowMs} milliseconds`}::interval then s.streak + 1 else 1 end,
        window_start = case when ${now} < s.window_end then s.window_start else ${now} end,
        window_end = case when ${now} < s.window_end then s.window_end else ${new Date(now.getTime() + windowMs)} end,
        detections = case when ${now} < s.window_end then s.detections + ${count} else ${count} end,
        last_seen = greatest(s.last_seen, ${now}),
        decision = case when ${now} < s.window_end then s.decision else 'pending' end,
        job_id = case when ${now} < s.window_end then s.job_id else null end
      returning window_start, streak, detections`.execute(db);
    const row = rows[0]!;
    if (row.detections !== count) continue; // the window was already open: counted, nothing to decide
    opened.push({ ip, first, row });
  }
  for (const { ip, first, row } of opened) {
    let capOk = false;
    const decision = decideWindow(settings.reports, row.streak, () => true);
    if (decision === 'report') {
      const hour = new Date(Math.floor(now.getTime() / 3_600_000) * 3_600_000);
      const cap = await sql<{ reports: number }>`
        insert into abuse_hours as h (hour, reports) values (${hour}, 1)
        on conflict (hour) do update set reports = h.reports + 1 where h.reports < ${settings.hourlyCap}
        returning reports`.execute(db);
      capOk = cap.rows.length === 1 && cap.rows[0]!.reports <= settings.hourlyCap;
    }
    const final: WindowDecision = decision === 'report' && !capOk ? 'capped' : decision;
    let jobId: string | null = null;
    if (final === 'report') {
      const windowStart = new Date(row.window_start).toISOString();
      const payload: AbusePayload = { clientIp: ip, windowStart, detection: first };
      jobId = await enqueue(db, { kind: ABUSE_JOB, payload, runAt: new Date(new Date(row.window_start).getTime() + settings.reportDelay), dedupeKey: `abuse:${ip}:${windowStart}` });
    }
    await db.updateTable('abuse_sources').set({ decision: final, job_id: jobId }).where('client_ip', '=', ip).where('window_start', '=', row.window_start).execute();
    decisions.set(ip, final);
  }
  return decisions;
}

/** Records an opt-out: no report goes to this address again (the text part of every report offers it). */
export async function optOut(db: Db, contact: string, note = ''): Promise<void> {
  await db.insertInto('abuse_optouts').values({ contact: contact.toLowerCase(), at: new Date(), note }).onConflict((oc) => oc.column('contact').doNothing()).execute();
}

export interface AbuseHandlerOptions {
  db: Db;
  abuse: AbuseSettings;
  notify: { relay: string; from: string };
  hostname: string;
  sources: ContactSources;
  /** Called for reports handed to the abuse desk (our customer space), and when nothing was found. */
  onOutcome?(outcome: string, payload: AbusePayload, result: ContactResult): void;
}

/** The report job: find the contact, honour opt-outs, send the ARF with our mailbox as envelope sender, record it. */
export function abuseHandlers(opts: AbuseHandlerOptions) {
  return {
    [ABUSE_JOB]: async (raw: unknown, job: Job, ctx?: JobContext) => {
      const payload = raw as AbusePayload;
      const record = (outcome: string, result: ContactResult | null, contact: string | null, source: string | null) =>
        opts.db
          .insertInto('abuse_reports')
          .values({ job_id: job.id, client_ip: payload.clientIp, window_start: payload.windowStart, outcome, contact, source, steps: JSON.stringify(result?.steps ?? []), at: new Date() })
          .onConflict((oc) => oc.column('job_id').doUpdateSet({ outcome, contact, source, steps: JSON.stringify(result?.steps ?? []), at: new Date() }))
          .execute();
      let result: ContactResult;
      try {
        result = await lookupContact(payload.clientIp, opts.abuse, opts.sources);
      } catch (err) {
        if (err instanceof TransientLookupError) await record('retry', { kind: 'none', detail: err.message, steps: (err as { steps?: [] }).steps ?? [] }, null, null);
        throw err;
      }
      if (result.kind !== 'email') {
        await record(result.kind === 'none' ? 'no-contact' : result.kind, result, null, null);
        opts.onOutcome?.(result.kind, payload, result);
        return;
      }
      const optedOut = await opts.db.selectFrom('abuse_optouts').select('contact').where('contact', '=', result.address).executeTakeFirst();
      if (optedOut) {
        await record('opted-out', result, result.address, result.source);
        opts.onOutcome?.('opted-out', payload, result);
        return;
      }
      const source = await opts.db
        .selectFrom('abuse_sources')
        .select(['detections', 'last_seen', 'window_start'])
        .where('client_ip', '=', payload.clientIp)
        .executeTakeFirst();
      const sameWindow = source && new Date(source.window_start).toISOString() === payload.windowStart;
      const raw822 = await composeArf({
        detection: payload.detection,
        incidents: sameWindow ? source.detections : 1,
        firstSeen: new Date(payload.windowStart),
        lastSeen: sameWindow ? new Date(source.last_seen) : new Date(payload.windowStart),
        windowMs: opts.abuse.window,
        feedbackType: feedbackTypeFor(result.address, opts.abuse),
        to: result.address,
        from: opts.notify.from,
        hostname: opts.hostname,
        reportId: job.id,
        contactSource: result.detail,
        now: new Date(),
      });
      // Our reporting mailbox as envelope sender: desks reply to reports and
      // many refuse null-sender mail; a report is never sent about a report,
      // so no loop can form.
      await sendThroughRelay(opts.notify.relay, opts.hostname, result.address, raw822, opts.notify.from, ctx?.handoff);
      await record('sent', result, result.address, result.source);
      opts.onOutcome?.('sent', payload, result);
    },
  };
}
