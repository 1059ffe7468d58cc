/*
 * desk/queue — the desk's queue worked by hand (R8): a report nobody could be
 * named for (desk/intake left it 'unattributed' with the reason) is assigned
 * by an agent to a customer, or dismissed with a reason.
 *
 * decideQueueAction is the pure decision (table-tested): which report may be
 * assigned or dismissed, and the refusal in words when not. assignReport and
 * dismissReport are its store adapters: each reads the report under its row
 * lock, decides, and changes it in the same transaction, with the audit row.
 * An assigned report is filed through intake's own fileReport — the same
 * evidence, incident and forward job as a report attributed on arrival, the
 * update from 'unattributed' being the claim — so a twice-submitted assign
 * makes one piece of evidence and one forward, the second is refused.
 *
 * Trusts nothing it stores: the reason is a person's text but goes into the
 * audit log and the console, so it is cleaned and limited; the customer id
 * must name a customer we know. Must never file a report that is not in the
 * queue (attributed on arrival, assigned, dismissed), and never forwards by
 * itself: the forward job does, to the customer's address, never the reporter.
 */
import { sql } from 'kysely';
import { cleanText } from '../obs/clean.ts';
import { audit } from '../store/audit.ts';
import { storeNow } from '../store/clock.ts';
import type { Db } from '../store/store.ts';
import { DEFAULT_SETTINGS, inTransaction, recordEvidence, type IncidentSettings } from './incidents.ts';
import { fileReport, type QueuedReport } from './intake.ts';

/** The longest dismissal reason (the column's check says the same). */
export const MAX_DISMISS_REASON = 500;

/** One report at the desk, as the queue's pages and the CLI show it: the queue's row and the rest of its story. */
export interface DeskReport extends QueuedReport {
  timeSource: string;
  feedbackType: string | null;
  headers: string | null;
  state: 'attributed' | 'unattributed' | 'forwarded' | 'dismissed';
  customerId: string | null;
  incidentId: string | null;
  assignedBy: string | null;
  assignedAt: Date | null;
  dismissedBy: string | null;
  dismissedAt: Date | null;
  dismissReason: string | null;
}

export type RefusalKind = 'unknown-report' | 'not-queued' | 'not-fileable' | 'unknown-customer' | 'bad-reason';
export type QueueRefusal = { ok: false; why: RefusalKind; refused: string };

export type QueueAction = { kind: 'assign'; customerId: string; customerKnown: boolean } | { kind: 'dismiss'; reason: string };

type Decidable = Pick<DeskReport, 'state' | 'ip' | 'observedAt' | 'customerId' | 'assignedBy' | 'assignedAt' | 'dismissedBy' | 'dismissedAt'>;

const iso = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, 'Z');
const refuse = (why: RefusalKind, refused: string): QueueRefusal => ({ ok: false, why, refused });

/**
 * A dismissal reason as it is kept: whitespace runs (line breaks of a text
 * area) become one space, what is left of control and bidi characters is
 * replaced; required, at most MAX_DISMISS_REASON characters.
 */
export function dismissReason(raw: string): { ok: true; reason: string } | QueueRefusal {
  const reason = cleanText(String(raw ?? '').replace(/\s+/g, ' ').trim(), Number.MAX_SAFE_INTEGER);
  if (!reason) return refuse('bad-reason', 'a dismissal needs a reason');
  if (reason.length > MAX_DISMISS_REASON) return refuse('bad-reason', `the reason is ${reason.length} characters, at most ${MAX_DISMISS_REASON} are kept`);
  return { ok: true, reason };
}

/**
 * May this report be assigned or dismissed now? Only a report in the queue
 * (unattributed, neither assigned nor dismissed); an assignment also needs an
 * address and a time (the evidence and the customer's forward name both) and
 * a customer we know; a dismissal needs a reason.
 */
export function decideQueueAction(report: Decidable | null, action: QueueAction): { ok: true } | QueueRefusal {
  if (!report) return refuse('unknown-report', 'no such report');
  if (report.state === 'dismissed') return refuse('not-queued', `already dismissed${report.dismissedBy ? ` by ${report.dismissedBy}` : ''}${report.dismissedAt ? ` at ${iso(report.dismissedAt)}` : ''}`);
  if (report.assignedAt) return refuse('not-queued', `already assigned to customer ${report.customerId ?? '?'}${report.assignedBy ? ` by ${report.assignedBy}` : ''} at ${iso(report.assignedAt)}`);
  if (report.state !== 'unattributed') return refuse('not-queued', `not in the queue: attributed to customer ${report.customerId ?? '?'} when it arrived`);
  if (action.kind === 'dismiss') {
    const r = dismissReason(action.reason);
    return r.ok ? { ok: true } : r;
  }
  if (!report.ip) return refuse('not-fileable', 'the report names no address, so there is nothing to file against a customer (dismiss it instead)');
  if (!report.observedAt) return refuse('not-fileable', 'the report gives no time, so there is nothing to file against a customer (dismiss it instead)');
  if (!action.customerId.trim()) return refuse('unknown-customer', 'give the customer id');
  if (!action.customerKnown) return refuse('unknown-customer', `no customer with id ${action.customerId.trim()}`);
  return { ok: true };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function reportQuery(db: Db) {
  return db
    .selectFrom('desk_reports')
    .select([
      'id', 'received_at', 'via', 'reporter', sql<string | null>`host(ip)`.as('ip'), 'port', 'observed_at', 'time_source', 'zoneless', 'kind', 'feedback_type', 'summary', 'headers', 'malware',
      'state', 'reason', 'customer_id', 'incident_id', 'assigned_by', 'assigned_at', 'dismissed_by', 'dismissed_at', 'dismiss_reason',
    ]);
}

type Row = NonNullable<Awaited<ReturnType<ReturnType<typeof reportQuery>['executeTakeFirst']>>>;
const date = (v: Date | string | null) => (v === null ? null : new Date(v));

function toReport(r: Row): DeskReport {
  return {
    id: r.id, receivedAt: new Date(r.received_at), via: r.via, reporter: r.reporter, ip: r.ip, port: r.port, observedAt: date(r.observed_at), timeSource: r.time_source,
    zoneless: r.zoneless, kind: r.kind, feedbackType: r.feedback_type, summary: r.summary, headers: r.headers, malware: r.malware ?? [], state: r.state, reason: r.reason,
    customerId: r.customer_id, incidentId: r.incident_id, assignedBy: r.assigned_by, assignedAt: date(r.assigned_at), dismissedBy: r.dismissed_by, dismissedAt: date(r.dismissed_at), dismissReason: r.dismiss_reason,
  };
}

/** One report, whatever became of it; null for an unknown id (or one that is not a UUID). */
export async function getReport(db: Db, id: string): Promise<DeskReport | null> {
  if (!UUID.test(id)) return null;
  const row = await reportQuery(db).where('id', '=', id).executeTakeFirst();
  return row ? toReport(row) : null;
}

/** The report under its row lock: a second assign or dismiss of it waits here for the first to commit, then sees its outcome. */
async function lockReport(tx: Db, id: string): Promise<DeskReport | null> {
  if (!UUID.test(id)) return null;
  const row = await reportQuery(tx).where('id', '=', id).forUpdate().executeTakeFirst();
  return row ? toReport(row) : null;
}

export type AssignResult = { ok: true; customerId: string; incidentId: string; opened: boolean } | QueueRefusal;

/**
 * Assigns a queued report to a customer, in one transaction: the report is
 * filed as attributed (evidence on the customer's incident — opened or
 * joined —, the forward job) with who and when, and audited as
 * `desk-report.assign` by `actor`. Refusals are answered, not thrown.
 * `at`: a fake clock; absent, the store's (the incident's timers are).
 */
export async function assignReport(
  db: Db,
  reportId: string,
  customerId: string,
  actor: string,
  at?: Date,
  opts: { settings?: IncidentSettings; detail?: Record<string, unknown> } = {},
): Promise<AssignResult> {
  const customer = String(customerId ?? '').trim();
  return inTransaction(db, async (tx) => {
    const report = await lockReport(tx, reportId);
    const now = at ?? (await storeNow(tx));
    const known = report && customer ? await tx.selectFrom('customers').select('id').where('id', '=', customer).executeTakeFirst() : undefined;
    const decision = decideQueueAction(report, { kind: 'assign', customerId: customer, customerKnown: known !== undefined });
    if (!decision.ok) return decision;
    const r = report!;
    const settings = opts.settings ?? DEFAULT_SETTINGS;
    const filed = await fileReport(
      tx,
      (trx, e) => recordEvidence(trx, e, now, settings),
      { id: r.id, via: r.via, kind: r.kind, ip: r.ip!, observedAt: r.observedAt!, summary: r.summary, headers: r.headers, malware: r.malware },
      customer,
      { by: actor, at: now },
    );
    await audit(tx, actor, 'desk-report.assign', r.id, { customerId: customer, incidentId: filed.incidentId, opened: filed.opened, ...(opts.detail ?? {}) });
    return { ok: true as const, customerId: customer, incidentId: filed.incidentId, opened: filed.opened };
  });
}

export type DismissResult = { ok: true; reason: string } | QueueRefusal;

/** Dismisses a queued report with a reason (cleaned, at most 500 characters), audited as `desk-report.dismiss` by `actor`. */
export async function dismissReport(db: Db, reportId: string, reason: string, actor: string, now = new Date(), detail: Record<string, unknown> = {}): Promise<DismissResult> {
  return inTransaction(db, async (tx) => {
    const report = await lockReport(tx, reportId);
    const decision = decideQueueAction(report, { kind: 'dismiss', reason });
    if (!decision.ok) return decision;
    const kept = dismissReason(reason) as { ok: true; reason: string };
    const done = await tx
      .updateTable('desk_reports')
      .set({ state: 'dismissed', dismissed_by: actor, dismissed_at: now, dismiss_reason: kept.reason })
      .where('id', '=', report!.id)
      .where('state', '=', 'unattributed')
      .executeTakeFirst();
    if (Number(done.numUpdatedRows) !== 1) throw new Error(`report ${report!.id} left the queue under its lock`);
    await audit(tx, actor, 'desk-report.dismiss', report!.id, { reason: kept.reason, ...detail });
    return { ok: true as const, reason: kept.reason };
  });
}
