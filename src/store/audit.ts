/*
 * store/audit — who did what to which object, for every human action
 * (release, delete, approve, state change). Append-only.
 */
import type { Db } from './store.ts';

export async function audit(db: Db, actor: string, action: string, target: string, detail: Record<string, unknown> = {}): Promise<void> {
  await db.insertInto('audit').values({ actor, action, target, detail: JSON.stringify(detail) }).execute();
}
