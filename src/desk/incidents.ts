/*
 * desk/incidents — incidents in the store (R9): evidence opens or joins a
 * customer's one open incident, transitions run desk/lifecycle's pure `next`
 * and carry out its effects in the same transaction, timers are jobs.
 *
 * Everything that matters is a row: the incident, its history
 * (incident_events, one per transition, plus the audit log), its evidence,
 * and the timers (jobs with run_at and a dedupe key: grace expiry, probation
 * end, notices, enforcement publish), so a restart loses nothing and each
 * timer runs once across nodes. A timer that fires when its state has moved
 * on is refused by `next` and dropped (a stale timer is not an error).
 *
 * Time is the store's (store/clock), not this node's: when no time is
 * given, a transition is dated by its transaction's now(), and so are the
 * grace and probation timers it schedules — a node whose clock is minutes
 * off opens, notifies and restricts on the same schedule as the others, and
 * a timer the store found due is never refused as early. A `now` (or a
 * handler `clock`) is a fake clock: tests run a whole lifecycle — evidence,
 * notice, grace, restriction, attestation, probation, recurrence — in
 * seconds under one, and `incident tick --now` rehearses with one, `tick`
 * claiming the jobs due at that fake time.
 *
 * The portal token: 32 random bytes, base64url in the notice link, only its
 * SHA-256 in the store. A fresh one goes out with every notice (the previous
 * link stops working); attestation, desk release and close revoke it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import type { Config } from '../config/schema.ts';
import { sendThroughRelay } from '../notify/postmaster.ts';
import { audit } from '../store/audit.ts';
import { storeNow } from '../store/clock.ts';
import { claim, complete, enqueue, fail, jobHandoff, type Handoff, type Job, type JobContext } from '../store/jobs.ts';
import type { IncidentsTable } from '../store/schema.ts';
import type { Db } from '../store/store.ts';
import type { Selectable } from 'kysely';
import { allowedEvents, DESK_EVENTS, next, type Effect, type IncidentEvent, type IncidentState, type LifecycleContext, type RestrictionLevel } from './lifecycle.ts';
import { composeCustomerNotice, type NoticeReason } from './notice.ts';

export type Incident = Selectable<IncidentsTable>;

export const NOTICE_JOB = 'desk-incident-notice';
export const GRACE_JOB = 'desk-grace-expiry';
export const PROBATION_JOB = 'desk-probation-end';
export const ENFORCE_JOB = 'desk-enforce-publish';
export const WEBHOOK_JOB = 'desk-enforce-webhook';

export interface IncidentSettings {
  graceMs: number;
  probationMs: number;
  selfReleases: number;
  level: RestrictionLevel;
  tokenTtlMs: number;
}

export const DEFAULT_SETTINGS: IncidentSettings = {
  graceMs: 72 * 3_600_000,
  probationMs: 14 * 86_400_000,
  selfReleases: 2,
  level: 'walled-garden',
  tokenTtlMs: 30 * 86_400_000,
};

type DeskConfig = NonNullable<Config['desk']>;

export function incidentSettings(desk: DeskConfig | undefined): IncidentSettings {
  if (!desk) return DEFAULT_SETTINGS;
  return {
    graceMs: desk.graceHours * 3_600_000,
    probationMs: desk.probationDays * 86_400_000,
    selfReleases: desk.selfReleases,
    level: desk.restriction.level,
    tokenTtlMs: desk.portal.tokenTtl,
  };
}

export interface EvidenceInput {
  customerId: string;
  source: 'gateway' | 'alias' | 'form' | 'arf';
  ip: string;
  observedAt: Date;
  summary: string;
  headers?: string;
  malware?: string[];
}

/** Runs `fn` in the caller's transaction, or in a new one. */
export async function inTransaction<T>(db: Db, fn: (tx: Db) => Promise<T>): Promise<T> {
  if (db.isTransaction) return fn(db);
  return db.transaction().execute((tx) => fn(tx));
}

/** The customer's contact as it is now: kept on the incident as it was when the incident opened. */
export async function contactSnapshot(db: Db, customerId: string): Promise<Record<string, unknown>> {
  const r = await sql<Record<string, unknown>>`select id::text as id, name, email, phone, language, time_zone from customers where id::text = ${customerId}`.execute(db);
  return r.rows[0] ?? {};
}

const clip = (s: string | undefined | null, max: number) => (s == null ? null : String(s).slice(0, max));

/**
 * Stores one piece of evidence about a customer: opens an incident (with a
 * snapshot of the contact and the opening notice queued) or joins the open
 * one; in probation that is a recurrence, restricted again with one fewer
 * self-release. Works inside the caller's transaction (intake) or its own.
 * `at`: a fake clock; absent, the store's (the transaction's now()).
 */
export async function recordEvidence(db: Db, e: EvidenceInput, at?: Date, settings: IncidentSettings = DEFAULT_SETTINGS): Promise<{ incidentId: string; opened: boolean }> {
  const customerId = String(e.customerId);
  return inTransaction(db, async (tx) => {
    const now = at ?? (await storeNow(tx));
    const snapshot = await contactSnapshot(tx, customerId);
    const inserted = await sql<{ id: string }>`
      insert into incidents (customer_id, state, opened_at, state_since, self_releases_left, contact_snapshot)
      values (${customerId}, 'suspected', ${now}, ${now}, ${settings.selfReleases}, ${JSON.stringify(snapshot)}::jsonb)
      on conflict (customer_id) where state <> 'closed' do nothing
      returning id::text as id`.execute(tx);
    const opened = inserted.rows.length === 1;
    const incident = await tx.selectFrom('incidents').selectAll().where('customer_id', '=', customerId).where('state', '<>', 'closed').forUpdate().executeTakeFirstOrThrow();
    await tx
      .insertInto('incident_evidence')
      .values({
        incident_id: incident.id,
        at: now,
        source: e.source,
        ip: e.ip,
        observed_at: e.observedAt,
        summary: clip(e.summary, 2000) ?? '',
        headers: clip(e.headers, 64_000),
        malware: (e.malware ?? []).slice(0, 20).map((m) => String(m).slice(0, 200)),
      })
      .execute();
    if (opened) {
      const ev = await logEvent(tx, incident.id, now, 'opened', 'system', null, 'suspected', { source: e.source, ip: e.ip });
      await enqueue(tx, { kind: NOTICE_JOB, payload: { incidentId: incident.id, reason: 'opened' }, runAt: now, dedupeKey: `desk-notice:${incident.id}:${ev}` });
      await audit(tx, 'system', 'incident.open', incident.id, { customerId, source: e.source });
    } else {
      await applyEvent(tx, incident, 'evidence', 'system', now, settings, { source: e.source, ip: e.ip });
    }
    return { incidentId: incident.id, opened };
  });
}

async function logEvent(db: Db, incidentId: string, at: Date, kind: string, actor: string, from: string | null, to: string | null, detail: Record<string, unknown>): Promise<string> {
  const row = await db
    .insertInto('incident_events')
    .values({ incident_id: incidentId, at, kind, actor, from_state: from, to_state: to, detail: JSON.stringify(detail) })
    .returning('id')
    .executeTakeFirstOrThrow();
  return String(row.id);
}

export type TransitionResult = { ok: true; state: IncidentState; from: IncidentState } | { ok: false; refused: string };

/**
 * One event on one incident, under its row lock; refusals are answered, not thrown. Dated `at` (a fake
 * clock) or, absent, by the store's clock inside the transaction (read once the row is locked, so a timer
 * the store found due is due by it).
 */
export async function transition(db: Db, incidentId: string, event: IncidentEvent, actor: string, at?: Date, settings: IncidentSettings = DEFAULT_SETTINGS, detail: Record<string, unknown> = {}): Promise<TransitionResult> {
  if (!/^[0-9a-f-]{36}$/i.test(incidentId)) return { ok: false, refused: 'no such incident' };
  return inTransaction(db, async (tx) => {
    const incident = await tx.selectFrom('incidents').selectAll().where('id', '=', incidentId).forUpdate().executeTakeFirst();
    if (!incident) return { ok: false, refused: 'no such incident' };
    return applyEvent(tx, incident, event, actor, at ?? (await storeNow(tx)), settings, detail);
  });
}

/** What `next` needs to know about a stored incident at `now`. */
export function lifecycleContext(incident: Incident, settings: IncidentSettings, now: Date): LifecycleContext {
  return {
    now,
    graceMs: settings.graceMs,
    probationMs: settings.probationMs,
    level: incident.restriction_level ?? settings.level,
    selfReleasesLeft: incident.self_releases_left,
    heldFrom: incident.held_from,
    graceUntil: incident.grace_until ? new Date(incident.grace_until) : null,
    probationUntil: incident.probation_until ? new Date(incident.probation_until) : null,
  };
}

/**
 * The desk events `next` would accept for this incident now (the console's
 * buttons). Only a hint for what to offer: `transition` decides again under
 * the row lock, so a button for a state that has moved on gets its refusal.
 */
export function deskEventsFor(incident: Incident, settings: IncidentSettings, now: Date): IncidentEvent[] {
  return allowedEvents(incident.state, lifecycleContext(incident, settings, now), DESK_EVENTS);
}

async function applyEvent(tx: Db, incident: Incident, event: IncidentEvent, actor: string, now: Date, settings: IncidentSettings, detail: Record<string, unknown>): Promise<TransitionResult> {
  const from = incident.state;
  const out = next(from, event, lifecycleContext(incident, settings, now));
  if ('refused' in out) return { ok: false, refused: out.refused };
  if (out.state === from && out.effects.length === 0) {
    // Evidence joining the file: recorded in the history, no transition.
    await logEvent(tx, incident.id, now, event, actor, from, from, detail);
    return { ok: true, state: from, from };
  }
  const set: Record<string, unknown> = { state: out.state, state_since: now };
  if (out.state === 'evidence-hold') set.held_from = from;
  if (from === 'evidence-hold') set.held_from = null;
  if (out.state === 'closed') set.closed_at = now;
  if (event === 'evidence' && from === 'probation') set.recurrences = sql`recurrences + 1`;
  if (out.via) await logEvent(tx, incident.id, now, event, actor, from, out.via, detail);
  const eventId = await logEvent(tx, incident.id, now, out.via ? 'self-release' : event, actor, out.via ?? from, out.state, detail);
  for (const effect of out.effects) await applyEffect(tx, incident, effect, eventId, set, now);
  await tx.updateTable('incidents').set(set).where('id', '=', incident.id).execute();
  await audit(tx, actor, `incident.${event}`, incident.id, { from, to: out.state, ...detail });
  return { ok: true, state: out.state, from };
}

async function applyEffect(tx: Db, incident: Incident, effect: Effect, eventId: string, set: Record<string, unknown>, now: Date): Promise<void> {
  const id = incident.id;
  switch (effect.kind) {
    case 'send-notice':
      await enqueue(tx, { kind: NOTICE_JOB, payload: { incidentId: id, reason: effect.reason }, runAt: now, dedupeKey: `desk-notice:${id}:${eventId}` });
      return;
    case 'schedule-grace':
      set.grace_until = effect.at;
      await enqueue(tx, { kind: GRACE_JOB, payload: { incidentId: id }, runAt: effect.at, dedupeKey: `desk-grace:${id}:${effect.at.toISOString()}` });
      return;
    case 'schedule-probation-end':
      set.probation_until = effect.at;
      await enqueue(tx, { kind: PROBATION_JOB, payload: { incidentId: id }, runAt: effect.at, dedupeKey: `desk-probation:${id}:${effect.at.toISOString()}` });
      return;
    case 'restrict':
      set.restriction_level = effect.level;
      await enqueue(tx, { kind: ENFORCE_JOB, payload: { reason: `incident ${id} restricted` }, runAt: now, dedupeKey: `desk-enforce:${id}:${eventId}` });
      return;
    case 'release':
      set.restriction_level = null;
      await enqueue(tx, { kind: ENFORCE_JOB, payload: { reason: `incident ${id} released` }, runAt: now, dedupeKey: `desk-enforce:${id}:${eventId}` });
      return;
    case 'spend-self-release':
      set.self_releases_left = sql`greatest(self_releases_left - 1, 0)`;
      return;
    case 'issue-portal-token':
      return; // the notice job issues the token it mails (desk/incidents issuePortalToken)
    case 'revoke-portal-token':
      set.portal_token_hash = null;
      set.portal_token_expires = null;
      return;
  }
}

export const hashToken = (token: string) => createHash('sha256').update(token, 'utf8').digest('hex');

/** A fresh portal token for the incident: the raw token for the link, only its hash kept. */
export async function issuePortalToken(db: Db, incidentId: string, now: Date, ttlMs: number): Promise<string> {
  const token = randomBytes(32).toString('base64url');
  await db.updateTable('incidents').set({ portal_token_hash: hashToken(token), portal_token_expires: new Date(now.getTime() + ttlMs) }).where('id', '=', incidentId).execute();
  return token;
}

/** The customers whose lines are fenced in now, with their level (restricted, or held while restricted). */
export async function restrictedCustomers(db: Db): Promise<{ customerId: string; level: RestrictionLevel; incidentId: string }[]> {
  const rows = await db
    .selectFrom('incidents')
    .select(['id', 'customer_id', 'restriction_level'])
    .where('restriction_level', 'is not', null)
    .where((eb) => eb.or([eb('state', '=', 'restricted'), eb.and([eb('state', '=', 'evidence-hold'), eb('held_from', '=', 'restricted')])]))
    .orderBy('customer_id')
    .execute();
  return rows.map((r) => ({ customerId: r.customer_id, level: r.restriction_level!, incidentId: r.id }));
}

export async function listIncidents(db: Db, opts: { open?: boolean; state?: IncidentState; limit?: number } = {}): Promise<Incident[]> {
  let q = db.selectFrom('incidents').selectAll().orderBy('opened_at', 'desc').limit(opts.limit ?? 100);
  if (opts.open) q = q.where('state', '<>', 'closed');
  if (opts.state) q = q.where('state', '=', opts.state);
  return q.execute();
}

/** How many incidents are in each state (states with none are absent). */
export async function incidentCounts(db: Db): Promise<Partial<Record<IncidentState, number>>> {
  const rows = await db.selectFrom('incidents').select(['state', (eb) => eb.fn.countAll<string>().as('n')]).groupBy('state').execute();
  return Object.fromEntries(rows.map((r) => [r.state, Number(r.n)]));
}

/**
 * One incident with its history and evidence (oldest first). `evidenceLimit`
 * keeps only the newest pieces — a worm that mails for days leaves thousands,
 * a page shows the latest — and `evidenceCount` says how many there are.
 */
export async function getIncident(db: Db, id: string, opts: { evidenceLimit?: number } = {}) {
  if (!/^[0-9a-f-]{36}$/i.test(id)) return null;
  const incident = await db.selectFrom('incidents').selectAll().where('id', '=', id).executeTakeFirst();
  if (!incident) return null;
  const events = await db.selectFrom('incident_events').selectAll().where('incident_id', '=', id).orderBy('id').execute();
  let evidenceQuery = db.selectFrom('incident_evidence').selectAll().where('incident_id', '=', id).orderBy('observed_at', 'desc').orderBy('id', 'desc');
  if (opts.evidenceLimit !== undefined) evidenceQuery = evidenceQuery.limit(opts.evidenceLimit);
  const evidence = (await evidenceQuery.execute()).reverse();
  const evidenceCount =
    opts.evidenceLimit === undefined || evidence.length < opts.evidenceLimit
      ? evidence.length
      : Number((await db.selectFrom('incident_evidence').select((eb) => eb.fn.countAll<string>().as('n')).where('incident_id', '=', id).executeTakeFirstOrThrow()).n);
  return { incident, events, evidence, evidenceCount };
}

export interface DeskHandlerDeps {
  hostname: string;
  /** A fake clock (tests, `incident tick --now`); absent, the store's. */
  clock?: () => Date;
  /** Hands a composed mail to the relay (default: notify.relay through sendThroughRelay). */
  send?: (to: string, raw: Buffer, envelopeFrom: string, handoff?: Handoff) => Promise<void>;
  /** The enforcement publisher (desk/enforce.ts publishEnforcement bound to its deps); absent: no outputs. */
  publish?: (now: Date) => Promise<void>;
  /** Sends one signed webhook (desk/enforce.ts). */
  webhook?: (payload: unknown) => Promise<void>;
  log?: (msg: string, detail?: Record<string, unknown>) => void;
}

type Handler = (payload: unknown, job: Job, ctx?: JobContext) => Promise<void>;

/** The job handlers of the desk's incidents: notices, grace and probation timers, enforcement publish and webhook. */
export function deskHandlers(db: Db, config: Pick<Config, 'notify' | 'desk'>, deps: DeskHandlerDeps): Record<string, Handler> {
  const settings = incidentSettings(config.desk);
  const clock = deps.clock;
  const now = async () => clock?.() ?? (await storeNow(db));
  const desk = config.desk;
  const mailbox = desk?.notice.from ?? (desk?.abuseDomain ? `abuse@${desk.abuseDomain}` : config.notify?.from ?? `abuse@${deps.hostname}`);
  const send =
    deps.send ??
    (async (to: string, raw: Buffer, envelopeFrom: string, handoff?: Handoff) => {
      if (!config.notify) throw new Error('notify.relay is not configured: customer notices wait');
      await sendThroughRelay(config.notify.relay, deps.hostname, to, raw, envelopeFrom, handoff);
    });
  const idOf = (payload: unknown) => {
    const id = (payload as { incidentId?: unknown })?.incidentId;
    if (typeof id !== 'string') throw new Error('desk job without an incident id');
    return id;
  };
  const timer = (event: IncidentEvent) => async (payload: unknown) => {
    const r = await transition(db, idOf(payload), event, 'timer', clock?.(), settings);
    if (!r.ok) deps.log?.(`desk ${event} timer dropped`, { incidentId: idOf(payload), reason: r.refused });
  };
  return {
    [NOTICE_JOB]: async (payload, job, ctx) => {
      const incidentId = idOf(payload);
      const reason = ((payload as { reason?: NoticeReason }).reason ?? 'opened') as NoticeReason;
      // One instant for the notice and the transition, so the grace period the notice states is the timer's.
      const at = await now();
      const found = await getIncident(db, incidentId);
      if (!found || found.incident.state === 'closed' || found.incident.state === 'evidence-hold') return;
      const { incident, evidence } = found;
      let contact = incident.contact_snapshot as { name?: string; email?: string; language?: string; time_zone?: string };
      if (!contact.email) {
        // The customer was not known (or had no address) when the incident opened: look again, keep what we find.
        const fresh = await contactSnapshot(db, incident.customer_id);
        if (fresh.email) {
          contact = fresh as typeof contact;
          await db.updateTable('incidents').set({ contact_snapshot: JSON.stringify(fresh) }).where('id', '=', incidentId).execute();
        }
      }
      if (!contact.email) throw new Error(`incident ${incidentId}: the customer has no contact address`);
      const token = await issuePortalToken(db, incidentId, at, settings.tokenTtlMs);
      const base = (desk?.portal.baseUrl ?? 'http://127.0.0.1:8025').replace(/\/+$/, '');
      const raw = await composeCustomerNotice({
        reason,
        contact: { name: contact.name ?? '', email: contact.email, language: contact.language ?? 'en', time_zone: contact.time_zone ?? 'UTC' },
        evidence: evidence.map((e) => ({ observedAt: new Date(e.observed_at), ip: e.ip, malware: e.malware ?? [], summary: e.summary })),
        portalUrl: `${base}/portal/${token}`,
        graceUntil: reason === 'opened' ? new Date(at.getTime() + settings.graceMs) : incident.grace_until ? new Date(incident.grace_until) : null,
        from: `Abuse desk <${mailbox}>`,
        messageId: `<desk-${job.id}@${deps.hostname}>`,
        now: at,
        texts: desk?.notice.texts,
        defaultLanguage: desk?.notice.defaultLanguage,
      });
      await send(contact.email, raw, mailbox, ctx?.handoff);
      if (reason === 'opened') await transition(db, incidentId, 'notice-sent', 'system', at, settings, { job: job.id });
      else await logEvent(db, incidentId, at, 'notice-sent', 'system', incident.state, incident.state, { reason, job: job.id });
    },
    [GRACE_JOB]: timer('grace-expired'),
    [PROBATION_JOB]: timer('probation-expired'),
    [ENFORCE_JOB]: async () => {
      await deps.publish?.(await now());
    },
    [WEBHOOK_JOB]: async (payload) => {
      if (!deps.webhook) return;
      await deps.webhook(payload);
    },
  };
}

/**
 * Runs every job due once (the CLI's `incident tick`): due by the store's
 * clock, or by `now` for a fake one (`tick --now`, tests), which the
 * handlers should then be given too. Returns how many ran and failed.
 */
export async function tick(db: Db, handlers: Record<string, Handler>, now: Date | undefined, worker = `tick-${process.pid}`): Promise<{ ran: number; failed: number; errors: string[] }> {
  let ran = 0;
  let failed = 0;
  const errors: string[] = [];
  for (let round = 0; round < 20; round++) {
    const jobs = await claim(db, worker, Object.keys(handlers), 50, 60_000, now);
    if (jobs.length === 0) break;
    for (const job of jobs) {
      try {
        await handlers[job.kind]!(job.payload, job, { handoff: jobHandoff(db, job, worker, 'backstop.invalid') });
        await complete(db, job.id, worker);
        ran++;
      } catch (err) {
        failed++;
        errors.push(`${job.kind}: ${(err as Error).message}`);
        await fail(db, job, worker, (err as Error).message, now);
      }
    }
  }
  return { ran, failed, errors };
}
