/*
 * cluster/plan — the pure decisions behind `smtp.workers` (node:cluster):
 * how many worker processes a node runs, what each one is called in the
 * records, jobs and metrics it writes, and how long the primary waits before
 * it starts again a worker that died.
 *
 * Why one rule per store: with PostgreSQL every worker is a full node of its
 * own (records, rates, jobs claimed with SKIP LOCKED, windows on the store's
 * clock), so any number of them may share one; PGlite is one database inside
 * one process and a second process cannot open it, so it has one worker (the
 * config schema refuses an explicit workers above 1 with it).
 *
 * Trusts its arguments (the parsed configuration, the machine's core count).
 */

/** The number of worker processes: the configured one, else every core with PostgreSQL and 1 with PGlite. */
export function effectiveWorkers(configured: number | undefined, store: string, cores: number): number {
  if (store.startsWith('pglite')) return 1;
  return configured ?? Math.max(1, cores);
}

/**
 * The name one worker writes in a record's `node`, a job's worker and its
 * metrics: the node's name alone when the node is one process (as before
 * workers existed), else NAME/wK. A node name never holds "/" (config
 * schema), so the two parts are always told apart. The slot K (1…N) stays
 * the same when the primary starts a dead worker again.
 */
export function workerIdentity(nodeName: string, slot: number | null): string {
  return slot === null ? nodeName : `${nodeName}/w${slot}`;
}

/** How long a worker that died is left down before it is started again. */
export interface RestartPolicy {
  /** The first wait after a death. */
  baseMs: number;
  /** The most it ever waits. */
  maxMs: number;
  /** A worker that ran at least this long died of something new: its wait starts again at baseMs. */
  stableMs: number;
}

export const RESTART_POLICY: RestartPolicy = { baseMs: 500, maxMs: 30_000, stableMs: 60_000 };

/**
 * Pure: the wait before the next start of a slot whose worker just died after
 * `ranMs`, having died `quickDeaths` times in a row before without running
 * stableMs. Doubles per quick death (a worker that dies at start-up, e.g. the
 * store is down, is not started 100 times a second), resets after a stable
 * run. Returns the wait and the new count of quick deaths.
 */
export function restartDelay(policy: RestartPolicy, quickDeaths: number, ranMs: number): { waitMs: number; quickDeaths: number } {
  const deaths = ranMs >= policy.stableMs ? 0 : quickDeaths + 1;
  const waitMs = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, deaths - 1));
  return { waitMs, quickDeaths: deaths };
}
