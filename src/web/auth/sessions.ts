/*
 * web/auth/sessions — console sessions and the keys behind them, all in the
 * store so that any node behind a load balancer knows every session and signs
 * with the same key.
 *
 * A session is a random 256-bit id sent in a signed, HttpOnly,
 * SameSite=Strict cookie; the store keeps the id's SHA-256 with the user,
 * an absolute expiry and an idle limit. Logging out deletes the row, so a
 * copied cookie dies with the session (a purely stateless cookie could not
 * be revoked). Each request re-reads the user, so a disabled user or a
 * changed role takes effect at once.
 *
 * Must never: keep a session or a key only in process memory; store a
 * session id in the clear.
 */
import { createHash, randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import type { Db } from '../../store/store.ts';
import type { Role } from './users.ts';

export interface SessionSettings {
  /** From login; the session ends then whatever happens. */
  maxAgeMs: number;
  /** Without a request for this long the session ends. */
  idleMs: number;
}

export const SESSION_DEFAULTS: SessionSettings = { maxAgeMs: 12 * 3_600_000, idleMs: 2 * 3_600_000 };

/** last_seen_at is written at most this often per session: not one UPDATE per page view. */
const TOUCH_EVERY_MS = 60_000;

export interface Session {
  idHash: string;
  user: string;
  role: Role;
  expiresAt: Date;
}

const hashId = (id: string) => createHash('sha256').update(id).digest('hex');

/**
 * The named secret, made by whichever node asks first. `insert … on conflict
 * do nothing` then a read: two nodes starting at once end up with one key.
 */
export async function sharedSecret(db: Db, name: string): Promise<string> {
  await db
    .insertInto('web_secrets')
    .values({ name, value: randomBytes(32).toString('base64') })
    .onConflict((oc) => oc.column('name').doNothing())
    .execute();
  const row = await db.selectFrom('web_secrets').select('value').where('name', '=', name).executeTakeFirstOrThrow();
  return row.value;
}

/** Opens a session; returns the id for the cookie (only its hash is stored). */
export async function createSession(db: Db, user: string, clientIp: string, settings: SessionSettings): Promise<string> {
  const id = randomBytes(32).toString('base64url');
  await db
    .insertInto('web_sessions')
    .values({ id_hash: hashId(id), user_name: user, expires_at: new Date(Date.now() + settings.maxAgeMs), client_ip: clientIp.slice(0, 64) })
    .execute();
  // Housekeeping rides on logins: expired rows from any node go away here.
  await db.deleteFrom('web_sessions').where('expires_at', '<', new Date()).execute();
  return id;
}

/** The live session for a cookie's id, or undefined (unknown, expired, idle too long, user disabled). */
export async function loadSession(db: Db, id: string, settings: SessionSettings): Promise<Session | undefined> {
  if (!/^[A-Za-z0-9_-]{43}$/.test(id)) return undefined;
  const idHash = hashId(id);
  const row = await db
    .selectFrom('web_sessions as s')
    .innerJoin('web_users as u', 'u.name', 's.user_name')
    .select(['s.id_hash', 's.user_name', 's.expires_at', 's.last_seen_at', 'u.role', 'u.disabled_at'])
    .where('s.id_hash', '=', idHash)
    .executeTakeFirst();
  if (!row || row.disabled_at) return undefined;
  const now = Date.now();
  if (row.expires_at.getTime() <= now || row.last_seen_at.getTime() + settings.idleMs <= now) {
    await endSession(db, id);
    return undefined;
  }
  if (row.last_seen_at.getTime() + TOUCH_EVERY_MS <= now) {
    await db.updateTable('web_sessions').set({ last_seen_at: sql`now()` }).where('id_hash', '=', idHash).execute();
  }
  return { idHash, user: row.user_name, role: row.role, expiresAt: row.expires_at };
}

export async function endSession(db: Db, id: string): Promise<void> {
  await db.deleteFrom('web_sessions').where('id_hash', '=', hashId(id)).execute();
}
