/*
 * web/auth/users — the console's local users: a name, a role, a password
 * hash. Roles: `admin` (may act: release, delete, download) and `analyst`
 * (reads everything the console shows, changes nothing).
 *
 * Trusts: names only after USER_NAME has matched. Must never: return a
 * password hash to a page, or tell a caller whether a name exists in a way
 * the login form could reveal (that is the login route's job to hide).
 */
import type { Db } from '../../store/store.ts';
import { hashPassword } from './passwords.ts';

export const ROLES = ['admin', 'analyst'] as const;
export type Role = (typeof ROLES)[number];

/** Lower-case letters, digits, ".", "_", "-"; what the table's check constraint allows. */
export const USER_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;

export interface WebUser {
  name: string;
  role: Role;
  disabled: boolean;
  createdAt: Date;
}

export class UserError extends Error {}

export function normaliseUserName(name: string): string {
  return name.trim().toLowerCase();
}

export async function addUser(db: Db, name: string, role: Role, password: string): Promise<void> {
  const n = normaliseUserName(name);
  if (!USER_NAME.test(n)) throw new UserError('a user name is 1–64 of a-z 0-9 . _ - and starts with a letter or digit');
  const password_hash = await hashPassword(password);
  const r = await db.insertInto('web_users').values({ name: n, role, password_hash }).onConflict((oc) => oc.column('name').doNothing()).returning('name').executeTakeFirst();
  if (!r) throw new UserError(`user "${n}" already exists`);
}

export async function setPassword(db: Db, name: string, password: string): Promise<boolean> {
  const password_hash = await hashPassword(password);
  const n = normaliseUserName(name);
  const r = await db.updateTable('web_users').set({ password_hash, updated_at: new Date() }).where('name', '=', n).executeTakeFirst();
  // A new password ends every session that was opened with the old one.
  await db.deleteFrom('web_sessions').where('user_name', '=', n).execute();
  return Number(r.numUpdatedRows) === 1;
}

export async function setDisabled(db: Db, name: string, disabled: boolean): Promise<boolean> {
  const n = normaliseUserName(name);
  const r = await db.updateTable('web_users').set({ disabled_at: disabled ? new Date() : null, updated_at: new Date() }).where('name', '=', n).executeTakeFirst();
  if (disabled) await db.deleteFrom('web_sessions').where('user_name', '=', n).execute();
  return Number(r.numUpdatedRows) === 1;
}

export async function removeUser(db: Db, name: string): Promise<boolean> {
  const r = await db.deleteFrom('web_users').where('name', '=', normaliseUserName(name)).executeTakeFirst();
  return Number(r.numDeletedRows) === 1;
}

export async function listUsers(db: Db): Promise<WebUser[]> {
  const rows = await db.selectFrom('web_users').select(['name', 'role', 'disabled_at', 'created_at']).orderBy('name').execute();
  return rows.map((r) => ({ name: r.name, role: r.role, disabled: r.disabled_at !== null, createdAt: r.created_at }));
}

/** The stored hash for a login attempt; undefined for an unknown or disabled user. */
export async function credentialsOf(db: Db, name: string): Promise<{ name: string; role: Role; hash: string } | undefined> {
  const n = normaliseUserName(name);
  if (!USER_NAME.test(n)) return undefined;
  const row = await db.selectFrom('web_users').select(['name', 'role', 'password_hash', 'disabled_at']).where('name', '=', n).executeTakeFirst();
  if (!row || row.disabled_at) return undefined;
  return { name: row.name, role: row.role, hash: row.password_hash };
}

export async function countUsers(db: Db): Promise<number> {
  const r = await db.selectFrom('web_users').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
  return Number(r.n);
}
