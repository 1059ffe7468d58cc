/*
 * web/auth/throttle — failed-login counting in the store, per user name and
 * per client address, so every node behind a load balancer counts the same
 * failures: an attacker gains nothing by spreading guesses over nodes.
 *
 * Fixed windows: a key that reaches its limit is refused until its window
 * ends. A refused attempt is not checked against the password at all (no
 * oracle, no scrypt work for the attacker to make us do). A successful login
 * clears the user's counter, not the address's: one valid account must not
 * reset a spray from the same address.
 */
import { sql } from 'kysely';
import { cleanText } from '../../obs/clean.ts';
import type { Db } from '../../store/store.ts';

export interface ThrottleSettings {
  windowMs: number;
  /** Failures per user name per window. */
  perUser: number;
  /** Failures per client address per window (a NAT'd office shares one). */
  perIp: number;
}

export const THROTTLE_DEFAULTS: ThrottleSettings = { windowMs: 15 * 60_000, perUser: 5, perIp: 30 };

/**
 * The name as typed is the key, cleaned: a NUL in a text column is an error in PostgreSQL and
 * PGlite, and a login with one was a 500 (found by test/fuzz/web-forms.test.ts). Real user names
 * (USER_NAME) have nothing to clean.
 */
export const userKey = (name: string) => `user:${cleanText(name.trim().toLowerCase(), 128)}`;
export const ipKey = (ip: string) => `ip:${ip.slice(0, 64)}`;

/** Seconds until the first of the keys that is over its limit frees up; 0 when none is. */
export async function throttledFor(db: Db, keys: { key: string; limit: number }[], settings: ThrottleSettings): Promise<number> {
  const rows = await db
    .selectFrom('web_login_throttle')
    .select(['key', 'window_start', 'failures'])
    .where('key', 'in', keys.map((k) => k.key))
    .execute();
  let wait = 0;
  const now = Date.now();
  for (const row of rows) {
    const limit = keys.find((k) => k.key === row.key)!.limit;
    const ends = row.window_start.getTime() + settings.windowMs;
    if (ends > now && row.failures >= limit) wait = Math.max(wait, Math.ceil((ends - now) / 1000));
  }
  return wait;
}

/** Counts one failure against each key (atomically: one upsert per key, safe across nodes). */
export async function recordFailure(db: Db, keys: string[], settings: ThrottleSettings): Promise<void> {
  const windowStart = new Date(Date.now() - settings.windowMs);
  for (const key of keys) {
    await db
      .insertInto('web_login_throttle')
      .values({ key, window_start: new Date(), failures: 1 })
      .onConflict((oc) =>
        oc.column('key').doUpdateSet({
          failures: sql`case when web_login_throttle.window_start <= ${windowStart} then 1 else web_login_throttle.failures + 1 end`,
          window_start: sql`case when web_login_throttle.window_start <= ${windowStart} then ${new Date()} else web_login_throttle.window_start end`,
        }),
      )
      .execute();
  }
}

export async function clearFailures(db: Db, key: string): Promise<void> {
  await db.deleteFrom('web_login_throttle').where('key', '=', key).execute();
}
