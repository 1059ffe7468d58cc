/*
 * store/message-log — one record per message, written in batches.
 *
 * The SMTP hot path must not wait on one database write per message, so
 * records are queued and flushed as one multi-row INSERT when the batch fills
 * or a short interval passes. What this trades: a record may be lost if the
 * process dies within one flush interval of the reply. It never loses mail —
 * the record describes a decision already answered in the SMTP session, and
 * anything that must be durable before the reply (the quarantined message
 * itself) is written synchronously by the quarantine repository instead.
 */
import type { Insertable } from 'kysely';
import type { Db } from './store.ts';
import type { MessagesTable } from './schema.ts';

export type MessageRecord = Insertable<MessagesTable>;

export interface MessageLogOptions {
  maxBatch?: number;
  flushMs?: number;
  onError?(err: Error, lost: number): void;
}

export class MessageLog {
  private pending: MessageRecord[] = [];
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<void> = Promise.resolve();
  private readonly maxBatch: number;
  private readonly flushMs: number;

  constructor(
    private readonly db: Db,
    private readonly options: MessageLogOptions = {},
  ) {
    this.maxBatch = options.maxBatch ?? 500;
    this.flushMs = options.flushMs ?? 200;
  }

  add(record: MessageRecord): void {
    this.pending.push(record);
    if (this.pending.length >= this.maxBatch) void this.flush();
    else if (!this.timer) this.timer = setTimeout(() => void this.flush(), this.flushMs);
  }

  /** Writes everything queued so far; resolves when it is in the store. */
  flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const batch = this.pending;
    this.pending = [];
    // Batches are written one after another so records land in arrival order.
    this.inFlight = this.inFlight.then(async () => {
      if (batch.length === 0) return;
      try {
        await this.db.insertInto('messages').values(batch).execute();
      } catch (err) {
        this.options.onError?.(err as Error, batch.length);
      }
    });
    return this.inFlight;
  }
}
