/*
 * store/message-log — one record per message, written in batches.
 *
 * What this trades: a record may be lost if the process dies within one
 * flush interval of the reply. It never loses mail — the record describes a
 * decision already answered in the SMTP session, and anything that must be
 * durable before the reply (the quarantined message itself) is written
 * synchronously by the quarantine repository instead.
 */
import type { Insertable } from 'kysely';
import { Batcher } from './batcher.ts';
import type { MessagesTable } from './schema.ts';
import type { Db } from './store.ts';

export type MessageRecord = Insertable<MessagesTable>;

export interface MessageLogOptions {
  maxBatch?: number;
  flushMs?: number;
  onError?(err: Error, lost: number): void;
}

export class MessageLog extends Batcher<MessageRecord> {
  constructor(db: Db, options: MessageLogOptions = {}) {
    super({ ...options, write: async (batch) => void (await db.insertInto('messages').values(batch).execute()) });
  }
}
