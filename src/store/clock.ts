/*
 * store/clock — "now" as the shared store sees it.
 *
 * Several nodes share one PostgreSQL, and their own clocks may disagree by
 * minutes (NTP down on one host, a VM resumed). Anything two nodes must agree
 * on — which digest or report window a detection falls in, when a job is due,
 * when a lease has run out, when an incident's grace period ends, when a
 * message arrived — takes its time from the store, so one skewed node can
 * neither open a window of its own nor take a job another node still holds.
 *
 * Two ways to read it. storeNow(db) asks: inside a transaction this is the
 * transaction's start (PostgreSQL's and PGlite's now()), the same instant for
 * every row it writes — for the desk's transitions and the notify windows.
 * StoreClock answers without a round trip, for a stamp taken on the hot path
 * before anything is written (a message's arrival): the store's time of its
 * last sample plus the monotonic time since, so the node's wall clock — the
 * one that is off — is never read. It samples again every refreshMs; a
 * failed sample keeps the last one (the monotonic clock runs on).
 *
 * Trusts the store. Never used for what is only this node's business (a
 * socket timeout, a log line's time, its own Received: stamp).
 */
import { performance } from 'node:perf_hooks';
import { sql } from 'kysely';
import type { Db } from './store.ts';

/** The store's current time (the transaction's start when `db` is one). */
export async function storeNow(db: Db): Promise<Date> {
  const { rows } = await sql<{ now: Date | string }>`select now() as now`.execute(db);
  return new Date(rows[0]!.now);
}

/** One reading of the store's clock: what it said, and this node's monotonic clock around the question. */
export interface ClockSample {
  /** performance.now() when the query went out and when its answer came back. */
  sentAt: number;
  answeredAt: number;
  /** The store's now(), in ms since the epoch. */
  storeMs: number;
}

/** A sample whose round trip took longer than this is a worse guess than the one we have (its error is up to half of it). */
export const MAX_SAMPLE_RTT_MS = 1000;

/**
 * The store's time as of monotonic instant `at`, by a sample: the store answered
 * halfway through the round trip (NTP's assumption), the monotonic clock ran since. Pure.
 */
export function storeTimeAt(sample: ClockSample, at: number): number {
  return sample.storeMs + (at - (sample.sentAt + sample.answeredAt) / 2);
}

/** Which sample to keep: the fresh one unless its round trip was too slow and we have one already. Pure. */
export function betterSample(kept: ClockSample | null, fresh: ClockSample): ClockSample {
  if (!kept || fresh.answeredAt - fresh.sentAt <= MAX_SAMPLE_RTT_MS) return fresh;
  return kept;
}

export interface StoreClockOptions {
  /** How often the store is asked again (default 10 s). */
  refreshMs?: number;
  onError?: (err: Error) => void;
}

/** The store's time without a round trip per reading (see the header). */
export class StoreClock {
  private sample: ClockSample | null = null;
  private timer: NodeJS.Timeout | null = null;

  private constructor(
    private readonly db: Db,
    private readonly options: StoreClockOptions,
  ) {}

  /** Takes the first sample (so now() is the store's from the start) and keeps sampling. */
  static async start(db: Db, options: StoreClockOptions = {}): Promise<StoreClock> {
    const clock = new StoreClock(db, options);
    await clock.sync();
    clock.timer = setInterval(() => void clock.sync().catch((err: Error) => options.onError?.(err)), options.refreshMs ?? 10_000);
    clock.timer.unref();
    return clock;
  }

  /** Asks the store once. */
  async sync(): Promise<void> {
    const sentAt = performance.now();
    const storeMs = (await storeNow(this.db)).getTime();
    this.sample = betterSample(this.sample, { sentAt, answeredAt: performance.now(), storeMs });
  }

  /** The store's time now, by the last sample. */
  now(): Date {
    return new Date(Math.round(storeTimeAt(this.sample!, performance.now())));
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
