/*
 * desk/intake — the abuse desk as a destination of Backstop's own gateway
 * (R8): mail for `<ip>@<abuse domain>` and `abuse@<abuse domain>` is
 * scanned like all mail (spam and malware aimed at the aliases are the
 * gateway's business), then handed to this route's next hop, which stores
 * the report instead of relaying it.
 *
 * For each desk recipient of a message: parse the report (desk/report-parse),
 * take the IP from the alias (or, for abuse@, from the report), attribute
 * (IP, time, port) to a customer, and in ONE store transaction write the
 * desk_reports row, the incident evidence and the forward job — or, when the
 * address is unknown or the attribution ambiguous, the row alone with the
 * reason (the desk's queue; desk/queue files a report a person assigned
 * through the same fileReport). The sender hears 250 only after that
 * transaction committed; any store error is 451 and the sender retries.
 *
 * The reporter never learns who the customer is: the SMTP answer is the same
 * whatever the outcome, given after the same minimum time (answerFloorMs),
 * and nothing is mailed back to the reporter.
 */
import { sql } from 'kysely';
import type { Config } from '../config/schema.ts';
import type { LocalRoute } from '../edge/gateway.ts';
import type { NextHop, NextHopSession } from '../edge/next-hop.ts';
import type { SmtpReply } from '../edge/smtp-client.ts';
import { enqueue } from '../store/jobs.ts';
import type { Db } from '../store/store.ts';
import { parseAlias } from './aliases.ts';
import { parseReport, type ParsedReport } from './report-parse.ts';
import type { EvidenceInput } from './incidents.ts';

/** What intake needs of attribute()'s answer (desk/attribute.ts gives more: how and since when). */
export type Attribution = { kind: 'customer'; customerId: string } | { kind: 'unknown' } | { kind: 'ambiguous'; reason: string };


/**
 * The desk's neighbours, passed in so intake works with whatever store
 * handle it is given (a transaction here): attribution and incidents.
 */
export interface DeskPorts {
  attribute(db: Db, q: { ip: string; at: Date | null; port?: number | null; zoneless?: boolean }): Promise<Attribution>;
  recordEvidence(db: Db, e: EvidenceInput): Promise<{ incidentId: string; opened: boolean }>;
}

export interface DeskSettings {
  abuseDomain: string;
  /** The desk's own mailbox: From and envelope sender of forwards. Default abuse@<abuseDomain>. */
  mailbox?: string;
}

/** The intake's settings from config.desk, or null when the desk takes no mail (no abuseDomain). */
export function deskSettings(config: Pick<Config, 'desk'>): DeskSettings | null {
  const domain = config.desk?.abuseDomain?.trim().toLowerCase();
  return domain ? { abuseDomain: domain, mailbox: config.desk?.notice.from ?? `abuse@${domain}` } : null;
}

export const FORWARD_JOB = 'desk-forward';

/** A report as the desk takes it in, from mail or from the form. */
export interface IncomingReport {
  via: 'alias' | 'abuse' | 'form';
  reporter: string;
  /** The alias's IP, or the form's. */
  ip: string | null;
  port: number | null;
  parsed: ParsedReport | null;
  /** Form reports: what the form said, already validated. */
  form?: { observedAt: Date; zoneless: boolean; summary: string; headers: string | null };
}

export interface IntakeResult {
  id: string;
  state: 'attributed' | 'unattributed';
  reason: string | null;
}

/**
 * Stores one report and what became of it, in one transaction (the caller's,
 * when `db` is one). Throws when the store fails (the caller answers 4xx).
 */
export async function takeReport(db: Db, ports: DeskPorts, r: IncomingReport, now = new Date()): Promise<IntakeResult> {
  const p = r.parsed;
  const ip = r.ip ?? p?.ip ?? null;
  // The report's port counts only when it is about the same address.
  const port = r.port ?? (p && p.ip === ip ? p.port : null);
  const observedAt = r.form?.observedAt ?? p?.observedAt ?? null;
  const zoneless = r.form?.zoneless ?? p?.zoneless ?? true;
  const summary = clip(r.form?.summary ?? p?.summary ?? '', 2000);
  const headers = r.form?.headers ?? p?.headers ?? null;
  const malware = (p?.malware ?? []).slice(0, 8);
  const kind = r.form ? 'form' : (p?.kind ?? 'free-text');

  const inTransaction = <T>(fn: (trx: Db) => Promise<T>) => (db.isTransaction ? fn(db) : db.transaction().execute(fn));
  return inTransaction(async (trx) => {
    const row = await trx
      .insertInto('desk_reports')
      .values({
        received_at: now,
        via: r.via,
        reporter: clip(r.reporter, 320),
        ip,
        port,
        observed_at: observedAt,
        time_source: r.form ? 'form' : (p?.timeSource ?? 'none'),
        zoneless,
        kind,
        feedback_type: p?.feedbackType ?? null,
        summary,
        headers,
        malware,
        state: 'unattributed',
        reason: null,
        customer_id: null,
        incident_id: null,
      })
      .returning('id')
      .executeTakeFirstOrThrow();

    let reason: string | null = null;
    if (!ip) reason = 'the report names no address';
    else if (!observedAt) reason = 'the report gives no time';
    let attribution: Attribution | null = null;
    if (!reason) {
      attribution = await ports.attribute(trx, { ip: ip!, at: observedAt, port, zoneless });
      if (attribution.kind === 'unknown') reason = 'unknown: no customer held the address then';
      else if (attribution.kind === 'ambiguous') reason = `ambiguous: ${clip(attribution.reason, 300)}`;
    }
    if (reason || !attribution || attribution.kind !== 'customer') {
      await trx.updateTable('desk_reports').set({ reason }).where('id', '=', row.id).execute();
      return { id: row.id, state: 'unattributed' as const, reason };
    }

    await fileReport(trx, ports.recordEvidence, { id: row.id, via: r.via, kind, ip: ip!, observedAt: observedAt!, summary, headers, malware }, attribution.customerId);
    return { id: row.id, state: 'attributed' as const, reason: null };
  });
}

/** A stored report with an address and a time: what filing it against a customer needs. */
export interface FileableReport {
  id: string;
  via: IncomingReport['via'];
  kind: string;
  ip: string;
  observedAt: Date;
  summary: string;
  headers: string | null;
  malware: string[];
}

/** The incident evidence's source for a report: the form's, an ARF/X-ARF report's, or an alias's (free text, abuse@ included). */
export function evidenceSource(via: IncomingReport['via'], kind: string): EvidenceInput['source'] {
  if (via === 'form') return 'form';
  return kind === 'arf' || kind === 'x-arf' ? 'arf' : 'alias';
}

/**
 * Files a report against a customer, in the caller's transaction: the row
 * becomes 'attributed' (only from 'unattributed': the update is the claim, so
 * a report is filed once however often this is called), its evidence opens or
 * joins the customer's incident, and the forward job is queued. The one path
 * for a report attributed on arrival (takeReport) and one a person assigned
 * from the queue (desk/queue assignReport, with `assigned` saying who and when).
 * Throws when the report was not in the queue (the transaction rolls back).
 */
export async function fileReport(
  trx: Db,
  recordEvidence: DeskPorts['recordEvidence'],
  report: FileableReport,
  customerId: string,
  assigned?: { by: string; at: Date },
): Promise<{ incidentId: string; opened: boolean }> {
  const claimed = await trx
    .updateTable('desk_reports')
    .set({ state: 'attributed', customer_id: String(customerId), ...(assigned ? { assigned_by: assigned.by, assigned_at: assigned.at } : {}) })
    .where('id', '=', report.id)
    .where('state', '=', 'unattributed')
    .executeTakeFirst();
  if (Number(claimed.numUpdatedRows) !== 1) throw new Error(`report ${report.id} is not in the desk's queue`);
  const evidence = await recordEvidence(trx, {
    customerId: String(customerId),
    source: evidenceSource(report.via, report.kind),
    ip: report.ip,
    observedAt: report.observedAt,
    summary: report.summary,
    ...(report.headers ? { headers: report.headers } : {}),
    ...(report.malware.length ? { malware: report.malware } : {}),
  });
  await trx.updateTable('desk_reports').set({ incident_id: String(evidence.incidentId) }).where('id', '=', report.id).execute();
  await enqueue(trx, { kind: FORWARD_JOB, payload: { reportId: report.id }, dedupeKey: `${FORWARD_JOB}:${report.id}` });
  return { incidentId: String(evidence.incidentId), opened: evidence.opened };
}

/** One report in the desk's queue: nobody could be named for it, and why. */
export interface QueuedReport {
  id: string;
  receivedAt: Date;
  via: 'alias' | 'abuse' | 'form';
  reporter: string;
  ip: string | null;
  port: number | null;
  observedAt: Date | null;
  zoneless: boolean;
  kind: string;
  summary: string;
  malware: string[];
  /** Why nobody could be named when it arrived. */
  reason: string | null;
}

/** The desk's queue (unattributed reports), newest first, and how many there are in all. */
export async function deskQueue(db: Db, limit = 50): Promise<{ total: number; reports: QueuedReport[] }> {
  const rows = await db
    .selectFrom('desk_reports')
    .select(['id', 'received_at', 'via', 'reporter', sql<string | null>`host(ip)`.as('ip'), 'port', 'observed_at', 'zoneless', 'kind', 'summary', 'malware', 'reason'])
    .where('state', '=', 'unattributed')
    .orderBy('received_at', 'desc')
    .limit(limit)
    .execute();
  const total = await db.selectFrom('desk_reports').select((eb) => eb.fn.countAll<string>().as('n')).where('state', '=', 'unattributed').executeTakeFirstOrThrow();
  return {
    total: Number(total.n),
    reports: rows.map((r) => ({
      id: r.id, receivedAt: new Date(r.received_at), via: r.via, reporter: r.reporter, ip: r.ip, port: r.port,
      observedAt: r.observed_at ? new Date(r.observed_at) : null, zoneless: r.zoneless, kind: r.kind, summary: r.summary, malware: r.malware, reason: r.reason,
    })),
  };
}

/** What the sender hears for every report, whatever became of it. */
export const RECEIVED: SmtpReply = { code: 250, text: '2.0.0 Ok: report received by the abuse desk' };
const STORE_TROUBLE: SmtpReply = { code: 451, text: '4.3.0 Temporary failure storing the report, please try again later' };

/**
 * The gateway route for the desk's recipients. Its next hop takes each
 * recipient's report into the store; nothing is relayed anywhere.
 */
export function deskRoute(db: Db, settings: DeskSettings, ports: DeskPorts, options: { onError?: (err: Error) => void; answerFloorMs?: number } = {}): LocalRoute {
  // Every stored report is answered after the same minimum time: an attributed one (incident, job) takes longer than an unknown address.
  const floorMs = options.answerFloorMs ?? 300;
  const nextHop: NextHop = {
    description: `abuse desk (${settings.abuseDomain})`,
    session(): NextHopSession {
      let from = '';
      let rcpts: string[] = [];
      return {
        async mail(f) {
          from = f;
          rcpts = [];
          return { code: 250, text: '2.1.0 Ok' };
        },
        async rcpt(to) {
          if (!parseAlias(to, settings.abuseDomain)) return { code: 550, text: '5.1.1 No such desk address' };
          rcpts.push(to);
          return { code: 250, text: '2.1.5 Ok' };
        },
        async data(parts) {
          const started = Date.now();
          const raw = Buffer.concat(parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength)));
          try {
            // One report per desk recipient (two aliases in one message name two addresses), all or none stored.
            const reports: IncomingReport[] = [];
            const seen = new Set<string>();
            for (const to of rcpts) {
              const target = parseAlias(to, settings.abuseDomain);
              if (!target) continue;
              const key = target.kind === 'ip' ? target.ip : 'abuse';
              if (seen.has(key)) continue;
              seen.add(key);
              const parsed = await parseReport(raw, { targetIp: target.kind === 'ip' ? target.ip : null });
              reports.push({ via: target.kind === 'ip' ? 'alias' : 'abuse', reporter: from, ip: target.kind === 'ip' ? target.ip : null, port: null, parsed });
            }
            await db.transaction().execute(async (trx) => {
              for (const report of reports) await takeReport(trx, ports, report);
            });
          } catch (err) {
            options.onError?.(err as Error);
            return STORE_TROUBLE;
          } finally {
            rcpts = [];
          }
          const wait = started + floorMs - Date.now();
          if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
          return RECEIVED;
        },
        async reset() {
          rcpts = [];
        },
        close() {},
      };
    },
  };
  return { name: 'abuse-desk', accepts: (rcpt) => parseAlias(rcpt, settings.abuseDomain) !== null, nextHop };
}

function clip(s: string, max: number): string {
  return s.length > max ? s.slice(0, max) : s;
}
