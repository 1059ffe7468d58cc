/*
 * backscatter/keys — the BATV (prvs) keys and the Message-ID stamp keys, kept
 * in the store (migration 0201) so that every node signs and verifies with the
 * same ones and nothing lives only in memory.
 *
 *   ensureKeys(db)    generates the first key of each kind on first start
 *                     (any number of nodes at once: the partial unique index
 *                     on the current key makes the insert idempotent)
 *   rotateKeys(db)    `backstop batv rotate`: retires the current key and
 *                     makes the next (key number + 1 mod 10) current
 *   loadKeys(db)      the current key and the retired ones that still verify
 *   KeyCache          the gateway's copy, re-read every minute so a rotation
 *                     on one node reaches all of them
 *
 * A retired BATV key keeps verifying for the tag's validity window plus the
 * clock skew (8 days) — and the key retired last always does, so a rotation
 * never invalidates tags that are out there. Stamp keys (quoted Message-IDs,
 * which can come back later than a bounce) verify for 30 days after retiring.
 *
 * Trusts: the store. Secrets are never logged or printed.
 */
import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import type { Db } from '../store/store.ts';
import { BATV_CLOCK_SKEW_DAYS, BATV_VALIDITY_DAYS, makeKeyring, type BatvKeyring } from './batv.ts';

export type KeyKind = 'batv' | 'stamp';
const KINDS: KeyKind[] = ['batv', 'stamp'];
const DAY_MS = 86_400_000;
/** How long a retired key keeps verifying, per kind. */
export const RETIRED_VALID_MS: Record<KeyKind, number> = { batv: (BATV_VALIDITY_DAYS + BATV_CLOCK_SKEW_DAYS) * DAY_MS, stamp: 30 * DAY_MS };
const SECRET_BYTES = 32; // ≤ 64, Exim's limit for prvs keys

export interface StoredKey {
  num: number;
  secret: Buffer;
  createdAt: Date;
  retiredAt: Date | null;
}

export interface BackscatterKeys {
  ring: BatvKeyring;
  /** Stamp keys, current first. */
  stampKeys: Buffer[];
}

/** Creates the first key of each kind where there is none. Safe to run on every start, on every node. */
export async function ensureKeys(db: Db): Promise<void> {
  for (const kind of KINDS) {
    await sql`insert into backscatter_keys (kind, num, secret)
              select ${kind}, 0, ${randomBytes(SECRET_BYTES)}
              where not exists (select 1 from backscatter_keys where kind = ${kind})
              on conflict do nothing`.execute(db);
  }
}

/**
 * Which stored keys verify at `now`: the current one, then retired ones
 * (most recently retired first) still inside their window — the last retired
 * always — with one key per key number (K is a single digit).
 * Pure, for the table test.
 */
export function usableKeys(kind: KeyKind, rows: readonly StoredKey[], now: Date): { current: StoredKey; previous: StoredKey[] } | null {
  const current = rows.find((r) => r.retiredAt === null);
  if (!current) return null;
  const retired = rows.filter((r) => r.retiredAt !== null).sort((a, b) => b.retiredAt!.getTime() - a.retiredAt!.getTime());
  const nums = new Set([current.num]);
  const previous: StoredKey[] = [];
  retired.forEach((r, i) => {
    if (nums.has(r.num)) return;
    if (i > 0 && now.getTime() - r.retiredAt!.getTime() > RETIRED_VALID_MS[kind]) return;
    nums.add(r.num);
    previous.push(r);
  });
  return { current, previous };
}

async function rowsOf(db: Db, kind: KeyKind): Promise<StoredKey[]> {
  const rows = await db.selectFrom('backscatter_keys').select(['num', 'secret', 'created_at', 'retired_at']).where('kind', '=', kind).orderBy('id', 'desc').limit(50).execute();
  return rows.map((r) => ({ num: r.num, secret: Buffer.from(r.secret), createdAt: new Date(r.created_at), retiredAt: r.retired_at === null ? null : new Date(r.retired_at) }));
}

/** The keys as the shield uses them; generates them first if the store has none. */
export async function loadKeys(db: Db, now = new Date()): Promise<BackscatterKeys> {
  let batv = usableKeys('batv', await rowsOf(db, 'batv'), now);
  let stamp = usableKeys('stamp', await rowsOf(db, 'stamp'), now);
  if (!batv || !stamp) {
    await ensureKeys(db);
    batv = usableKeys('batv', await rowsOf(db, 'batv'), now)!;
    stamp = usableKeys('stamp', await rowsOf(db, 'stamp'), now)!;
  }
  return {
    ring: makeKeyring(batv.current, batv.previous),
    stampKeys: [stamp.current.secret, ...stamp.previous.map((k) => k.secret)],
  };
}

/**
 * Retires the current key of each kind asked for and makes a new one current
 * (key number + 1 mod 10), in one transaction under an advisory lock, so two
 * operators rotating at once make one new key each time, never two current.
 * Returns the new key numbers.
 */
export async function rotateKeys(db: Db, kinds: readonly KeyKind[] = KINDS, now = new Date()): Promise<Record<string, number>> {
  await ensureKeys(db);
  return db.transaction().execute(async (tx) => {
    await sql`select pg_advisory_xact_lock(727275)`.execute(tx);
    const out: Record<string, number> = {};
    for (const kind of kinds) {
      const cur = await tx.selectFrom('backscatter_keys').select(['id', 'num']).where('kind', '=', kind).where('retired_at', 'is', null).executeTakeFirstOrThrow();
      await tx.updateTable('backscatter_keys').set({ retired_at: now }).where('id', '=', cur.id).execute();
      const num = (cur.num + 1) % 10;
      await tx.insertInto('backscatter_keys').values({ kind, num, secret: randomBytes(SECRET_BYTES), created_at: now, retired_at: null }).execute();
      out[kind] = num;
    }
    return out;
  });
}

/** The gateway's copy of the keys: loaded at start, re-read in the background. */
export class KeyCache {
  private keys: BackscatterKeys;
  private timer: NodeJS.Timeout | null = null;

  private constructor(private readonly db: Db, keys: BackscatterKeys) {
    this.keys = keys;
  }

  static async open(db: Db, refreshMs = 60_000, onError: (err: Error) => void = () => {}): Promise<KeyCache> {
    const cache = new KeyCache(db, await loadKeys(db));
    if (refreshMs > 0) {
      cache.timer = setInterval(() => void cache.refresh().catch(onError), refreshMs);
      cache.timer.unref();
    }
    return cache;
  }

  get current(): BackscatterKeys {
    return this.keys;
  }

  async refresh(): Promise<void> {
    this.keys = await loadKeys(this.db);
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
