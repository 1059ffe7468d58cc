/*
 * store/clock — "now" as the shared store sees it.
 *
 * Several nodes share one PostgreSQL, and their own clocks may disagree by
 * minutes (NTP down on one host, a VM resumed). Anything two nodes must agree
 * on — which digest or report window a detection falls in, when a job is due,
 * when a lease has run out — takes its time from the store, so one skewed
 * node can neither open a window of its own nor take a job another node still
 * holds. Inside a transaction this is the transaction's start (PostgreSQL's
 * and PGlite's now()), the same instant for every row it writes.
 *
 * Trusts the store. Never used for what is only this node's business (a
 * socket timeout, a log line's time).
 */
import { sql } from 'kysely';
import type { Db } from './store.ts';

/** The store's current time (the transaction's start when `db` is one). */
export async function storeNow(db: Db): Promise<Date> {
  const { rows } = await sql<{ now: Date | string }>`select now() as now`.execute(db);
  return new Date(rows[0]!.now);
}
