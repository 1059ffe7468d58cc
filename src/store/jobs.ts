/*
 * store/jobs — the durable job queue every background task runs on
 * (notices, abuse reports, complaints, digests, incident timers).
 *
 * A job is a row; a worker claims due jobs with FOR UPDATE SKIP LOCKED and a
 * lease (locked_until), so any number of nodes sharing one PostgreSQL each
 * run a job once, and a job whose worker died is taken again when its lease
 * runs out. Failures are retried with exponential back-off up to
 * max_attempts, then left `failed` for a human. A dedupe key makes enqueueing
 * idempotent: the same notice can never be queued twice.
 *
 * What this does not promise: exactly-once mail. A worker that dies after
 * handing a mail to the relay and before marking the job done leaves it to
 * be sent again once the lease runs out. That window is kept as small as it
 * can be and made visible: a handler's mail goes out through a Handoff
 * (jobHandoff), which marks the job `sending` just before the relay gets the
 * message and `done` right after its 250; a job claimed again while it is
 * `sending` is flagged possible_duplicate, and its mail carries the same
 * Message-ID (jobMessageId, from the job id) so the recipient's side can
 * tell the copies apart.
 */
import { sql, type Selectable } from 'kysely';
import type { JobsTable } from './schema.ts';
import type { Db } from './store.ts';
import { storeNow } from './clock.ts';

export type Job = Selectable<JobsTable>;
export type JobState = 'queued' | 'running' | 'sending' | 'done' | 'failed' | 'cancelled' | 'review';

export interface NewJob {
  kind: string;
  payload: unknown;
  runAt?: Date;
  dedupeKey?: string;
  maxAttempts?: number;
  /** `review`: held until a human approves it (complaints in review mode). */
  state?: 'queued' | 'review';
}

/** Returns the new job's id, or null when a job with the same dedupe key exists. */
export async function enqueue(db: Db, job: NewJob): Promise<string | null> {
  const row = await db
    .insertInto('jobs')
    .values({
      kind: job.kind,
      payload: JSON.stringify(job.payload),
      // Due now by the store's clock (store/clock), whatever this node's clock says; to the millisecond,
      // so a JS Date taken after it (a test's or `incident tick`'s `at`) finds it due.
      run_at: job.runAt ?? sql<Date>`date_trunc('milliseconds', now())`,
      dedupe_key: job.dedupeKey ?? null,
      max_attempts: job.maxAttempts ?? 12,
      state: job.state ?? 'queued',
      locked_by: null,
      locked_until: null,
      last_error: null,
      done_at: null,
    })
    .onConflict((oc) => oc.column('dedupe_key').doNothing())
    .returning('id')
    .executeTakeFirst();
  return row?.id ?? null;
}

/**
 * Claims up to `limit` due jobs of the given kinds for `worker`, leased for
 * leaseMs. Jobs whose lease ran out (their worker died) are due again.
 */
export async function claim(db: Db, worker: string, kinds: readonly string[], limit = 10, leaseMs = 60_000, at?: Date): Promise<Job[]> {
  if (kinds.length === 0) return [];
  // The store's clock, not this node's: a node whose clock runs ahead must not take a job early, nor one
  // whose lease (written by another node) has not run out. `at` is for tests and `incident tick`.
  // now() stays in SQL: a round trip through a JS Date would drop its microseconds.
  const now = at ? sql`${at}::timestamptz` : sql`now()`;
  const until = at ? sql`${new Date(at.getTime() + leaseMs)}::timestamptz` : sql`now() + ${leaseMs} * interval '1 millisecond'`;
  // A job taken back from `sending` was handed to the relay by a worker that never said how it went.
  const result = await sql<Job>`
    update jobs set state = 'running', locked_by = ${worker}, locked_until = ${until}, attempts = attempts + 1,
      possible_duplicate = possible_duplicate or state = 'sending'
    where id in (
      select id from jobs
      where kind in (${sql.join(kinds)})
        and ((state = 'queued' and run_at <= ${now}) or (state in ('running', 'sending') and locked_until < ${now}))
      order by run_at
      limit ${limit}
      for update skip locked
    )
    returning *`.execute(db);
  return result.rows;
}

/** Marks a claimed job done; false if this worker no longer holds it (its lease ran out and another took it). */
export async function complete(db: Db, id: string, worker: string): Promise<boolean> {
  const r = await db
    .updateTable('jobs')
    .set({ state: 'done', done_at: new Date(), locked_by: null, locked_until: null, last_error: null })
    .where('id', '=', id)
    .where('locked_by', '=', worker)
    .where('state', 'in', ['running', 'sending'])
    .executeTakeFirst();
  return Number(r.numUpdatedRows) === 1;
}

/**
 * Marks a claimed job `sending`: its mail is about to be handed to the relay.
 * False (and nothing may be sent) when this worker no longer holds it.
 */
export async function markSending(db: Db, id: string, worker: string, now = new Date()): Promise<boolean> {
  const r = await db
    .updateTable('jobs')
    .set((eb) => ({ state: 'sending', sending_at: now, sent_by: worker, handoffs: eb('handoffs', '+', 1) }))
    .where('id', '=', id)
    .where('locked_by', '=', worker)
    .where('state', 'in', ['running', 'sending'])
    .executeTakeFirst();
  return Number(r.numUpdatedRows) === 1;
}

/** The Message-ID of every mail a job sends, on every attempt: derived from the job id alone. */
export function jobMessageId(job: Pick<Job, 'id' | 'kind'>, hostname: string): string {
  const kind = job.kind.replace(/[^A-Za-z0-9.-]/g, '-').slice(0, 40);
  const host = hostname.replace(/[^A-Za-z0-9.-]/g, '').slice(0, 253) || 'backstop.invalid';
  return `<${kind}.${job.id}@${host}>`;
}

/**
 * What a handler's mail goes out through: `sending()` just before the relay
 * gets the message (throws when the job was taken by another worker, so it is
 * not sent by two), `sent(db?)` right after the relay's 250 (marks the job
 * done; pass a transaction to make it part of the handler's own commit).
 */
export interface Handoff {
  messageId: string;
  sending(): Promise<void>;
  sent(db?: Db): Promise<void>;
}

export function jobHandoff(db: Db, job: Pick<Job, 'id' | 'kind'>, worker: string, hostname: string): Handoff {
  return {
    messageId: jobMessageId(job, hostname),
    async sending() {
      if (!(await markSending(db, job.id, worker))) throw new Error('the job was taken by another worker (its lease ran out): not sending it from here');
    },
    async sent(tx = db) {
      await complete(tx, job.id, worker);
    },
  };
}

/** Exponential back-off: 30 s, 1 min, 2 min … capped at 6 hours. */
export function backoffMs(attempts: number): number {
  return Math.min(6 * 3600_000, 30_000 * 2 ** Math.max(0, attempts - 1));
}

/** Records a failure: retried later with back-off, or `failed` once max_attempts is reached. */
export async function fail(db: Db, job: Job, worker: string, error: string, at?: Date): Promise<'retry' | 'failed'> {
  const now = at ?? (await storeNow(db));
  const final = job.attempts >= job.max_attempts;
  await db
    .updateTable('jobs')
    .set({
      state: final ? 'failed' : 'queued',
      run_at: final ? job.run_at : new Date(now.getTime() + backoffMs(job.attempts)),
      locked_by: null,
      locked_until: null,
      last_error: error.slice(0, 1000),
    })
    .where('id', '=', job.id)
    .where('locked_by', '=', worker)
    .execute();
  return final ? 'failed' : 'retry';
}

/** A human's actions from the CLI or console: cancel, retry now, approve a job held for review. */
export async function setState(db: Db, id: string, action: 'cancel' | 'retry' | 'approve'): Promise<boolean> {
  const from: JobState[] = action === 'cancel' ? ['queued', 'failed', 'review'] : action === 'retry' ? ['failed', 'queued', 'cancelled'] : ['review'];
  const r = await db
    .updateTable('jobs')
    .set(action === 'cancel' ? { state: 'cancelled' } : { state: 'queued', run_at: sql<Date>`date_trunc('milliseconds', now())`, ...(action === 'retry' ? { attempts: 0, last_error: null } : {}) })
    .where('id', '=', id)
    .where('state', 'in', from)
    .executeTakeFirst();
  return Number(r.numUpdatedRows) === 1;
}

/** A handler's third argument: how its mail goes out (see Handoff). */
export interface JobContext {
  handoff: Handoff;
}

export type JobHandler = (payload: unknown, job: Job, ctx?: JobContext) => Promise<void>;

export interface WorkerOptions {
  db: Db;
  worker: string;
  /** The host name in every job's Message-ID. */
  hostname?: string;
  handlers: Record<string, JobHandler>;
  pollMs?: number;
  leaseMs?: number;
  signal: AbortSignal;
  onError?(job: Job, err: Error, outcome: 'retry' | 'failed'): void;
}

/** Runs until the signal aborts: claim, handle, complete or fail; sleeps pollMs when idle. */
export async function runWorker(opts: WorkerOptions): Promise<void> {
  const kinds = Object.keys(opts.handlers);
  while (!opts.signal.aborted) {
    let jobs: Job[] = [];
    try {
      jobs = await claim(opts.db, opts.worker, kinds, 10, opts.leaseMs);
    } catch {
      // The store is away: try again after the pause, nothing is lost (jobs are rows).
    }
    for (const job of jobs) {
      try {
        await opts.handlers[job.kind]!(job.payload, job, { handoff: jobHandoff(opts.db, job, opts.worker, opts.hostname ?? 'backstop.invalid') });
        // Done already when the handler's mail went out through the handoff; this covers handlers that send nothing.
        await complete(opts.db, job.id, opts.worker);
      } catch (err) {
        // Recording the failure needs the store too; when it is away the job keeps its lease, which runs
        // out, and the job is taken again (a worker that throws here would take its whole node down).
        const outcome = await fail(opts.db, job, opts.worker, (err as Error).message).catch(() => 'retry' as const);
        opts.onError?.(job, err as Error, outcome);
      }
    }
    if (jobs.length === 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, opts.pollMs ?? 1000);
        opts.signal.addEventListener('abort', () => {
          clearTimeout(timer);
          resolve();
        }, { once: true });
      });
    }
  }
}
