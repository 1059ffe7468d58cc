/*
 * store/message-log — one record per message, written in batches.
 *
 * Batches of up to 1,000 rows, written at least once a second: on the
 * embedded PGlite an insert costs ~0.2 ms of the main thread per row in
 * batches of 50 and ~0.11 ms in batches of 200 or more (measured, on disk),
 * and PGlite runs on the SMTP thread.
 *
 * What this trades: a record may be lost if the process dies within one
 * flush interval (1 s) of the reply. It never loses mail — the record describes a
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
    super({ maxBatch: 1000, flushMs: 1000, ...options, write: async (batch) => void (await db.insertInto('messages').values(batch).execute()) });
  }
}
