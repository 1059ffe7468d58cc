/*
 * store/quarantine — whole messages held back, kept in the store so that any
 * node can list, release or delete them. Written before the sender hears 250:
 * a quarantined message is durable or it was never accepted.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Selectable } from 'kysely';
import type { Db } from './store.ts';
import type { QuarantineTable } from './schema.ts';

export type QuarantineRow = Selectable<QuarantineTable>;
export type QuarantineSummary = Omit<QuarantineRow, 'raw'>;

export interface NewQuarantine {
  messageLogId: string;
  clientIp: string;
  helo: string;
  mailFrom: string;
  rcptTo: string[];
  messageId: string | null;
  subject: string | null;
  verdict: string;
  verdictDetail: string | null;
  raw: Uint8Array;
}

export async function quarantineMessage(db: Db, q: NewQuarantine): Promise<string> {
  const id = randomUUID();
  await db
    .insertInto('quarantine')
    .values({
      id,
      message_log_id: q.messageLogId,
      client_ip: q.clientIp,
      helo: q.helo,
      mail_from: q.mailFrom,
      rcpt_to: q.rcptTo,
      message_id: q.messageId,
      subject: q.subject,
      verdict: q.verdict,
      verdict_detail: q.verdictDetail,
      size: q.raw.byteLength,
      sha256: createHash('sha256').update(q.raw).digest('hex'),
      raw: q.raw,
    })
    .execute();
  return id;
}

const SUMMARY_COLUMNS = [
  'id', 'created_at', 'message_log_id', 'client_ip', 'helo', 'mail_from', 'rcpt_to', 'message_id', 'subject',
  'verdict', 'verdict_detail', 'size', 'sha256', 'released_at', 'released_by', 'deleted_at',
] as const;

export interface QuarantineFilter {
  verdict?: string;
  includeDone?: boolean;
  limit?: number;
}

export async function listQuarantine(db: Db, filter: QuarantineFilter = {}): Promise<QuarantineSummary[]> {
  let q = db.selectFrom('quarantine').select(SUMMARY_COLUMNS).orderBy('created_at', 'desc').limit(filter.limit ?? 100);
  if (!filter.includeDone) q = q.where('deleted_at', 'is', null).where('released_at', 'is', null);
  if (filter.verdict) q = q.where('verdict', '=', filter.verdict);
  return q.execute();
}

export async function getQuarantined(db: Db, id: string): Promise<QuarantineRow | undefined> {
  if (!isUuid(id)) return undefined;
  const row = await db.selectFrom('quarantine').selectAll().where('id', '=', id).executeTakeFirst();
  if (!row) return undefined;
  // node-postgres returns Buffer, PGlite Uint8Array: hand out one type.
  return { ...row, raw: Buffer.from(row.raw.buffer, row.raw.byteOffset, row.raw.byteLength) };
}

export async function markReleased(db: Db, id: string, by: string): Promise<boolean> {
  const r = await db
    .updateTable('quarantine')
    .set({ released_at: new Date(), released_by: by })
    .where('id', '=', id)
    .where('released_at', 'is', null)
    .where('deleted_at', 'is', null)
    .executeTakeFirst();
  return Number(r.numUpdatedRows) === 1;
}

/** Undoes a release claim whose delivery failed, so it can be tried again. */
export async function unmarkReleased(db: Db, id: string): Promise<void> {
  await db.updateTable('quarantine').set({ released_at: null, released_by: null }).where('id', '=', id).execute();
}

export async function markDeleted(db: Db, id: string): Promise<boolean> {
  // The raw message is dropped; the summary stays for the audit trail.
  const r = await db
    .updateTable('quarantine')
    .set({ deleted_at: new Date(), raw: new Uint8Array(0) })
    .where('id', '=', id)
    .where('deleted_at', 'is', null)
    .executeTakeFirst();
  return Number(r.numUpdatedRows) === 1;
}

export function isUuid(value: string): boolean {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value);
}
