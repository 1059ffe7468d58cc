/*
 * store/message-log — one record per message, committed before the reply.
 *
 * The Postfix rule (cleanup writes and fsyncs the queue file before smtpd
 * says 250): the reply to the end of DATA is sent only once the message's
 * record — and whatever rides with it, the detection that feeds postmaster
 * notices and abuse reports — is committed. commit() waits for that; the
 * records of many concurrent messages share one transaction (group commit,
 * store/batcher): an idle store commits a record at once (the price is one
 * commit's time, well under a millisecond on PGlite), a busy one carries the
 * records that arrived during a commit in the next one.
 *
 * Trusts its caller to have cleaned every peer string. Never resolves
 * commit() for a record that is not committed; a failed or slow store makes
 * commit() reject, and the gateway answers 451 4.3.0 so the sender keeps the
 * message. record() is for replies the sender will retry anyway (4xx): the
 * record is written in the next group, nobody waits, a failure is counted.
 *
 * `waitForCommit: false` brings back the old behaviour (commit() resolves at
 * once, groups of up to 1,000 every second, whatever `records:` says): only
 * `npm run bench` uses it, to show the cost of waiting side by side.
 */
import { sql, type Insertable } from 'kysely';
import { GroupCommit, StoreTimeoutError } from './batcher.ts';
import type { MessagesTable } from './schema.ts';
import type { Db, RowInserter } from './store.ts';

export type MessageRecord = Insertable<MessagesTable>;
export { StoreTimeoutError };

/** A message's record and what rides with it in the same transaction (a detection, for notify:). */
export interface LogEntry<E> {
  row: MessageRecord;
  extra: E | null;
}

export interface DurabilitySettings {
  /**
   * How long the first record of a group waits for others before its transaction starts. 0 (the default):
   * not at all — a record commits at once when no transaction is running, and those that arrive during one
   * share the next (PostgreSQL's group commit); > 0 is PostgreSQL's commit_delay.
   */
  groupCommitMs: number;
  /** Records per transaction at most. */
  maxGroup: number;
  /** The longest a reply waits for its record; past it the reply is 451 4.3.0. */
  commitTimeoutMs: number;
}

export const DEFAULT_DURABILITY: DurabilitySettings = { groupCommitMs: 0, maxGroup: 500, commitTimeoutMs: 5000 };

export interface MessageLogOptions<E> extends Partial<DurabilitySettings> {
  /** Writes the extras of a group inside the group's transaction. */
  writeExtra?(tx: Db, extras: E[]): Promise<void>;
  /** A record nobody waited for (record(), or commit() without waitForCommit) could not be written. */
  onError?(err: Error, lost: number): void;
  /** Bench only: answer before the commit (the old batching). */
  waitForCommit?: boolean;
  /**
   * Give each group's transaction its waiters' deadline as statement_timeout (default true). Off for the
   * embedded PGlite: one process, no lock waits to bound, no timer inside WASM — and one statement less.
   */
  transactionDeadline?: boolean;
  /** What a record committed after its caller was told 451 is corrected to say (the gateway's 451). */
  late?: Pick<MessageRecord, 'action' | 'reply'>;
  /** The store's prepared INSERT (Store.insertRows, PGlite only): a group of records alone goes through it, not Kysely. */
  insertRows?: RowInserter;
}

/** Every column of a record, for the prepared INSERT. */
const COLUMNS = [
  'id', 'received_at', 'node', 'client_ip', 'client_port', 'helo', 'mail_from', 'rcpt_to', 'message_id', 'subject',
  'size', 'verdict', 'verdict_detail', 'action', 'reply', 'scan_ms', 'quarantine_id', 'findings',
] as const satisfies readonly (keyof MessagesTable)[];
// A column added to MessagesTable and not to COLUMNS fails to compile here.
const everyColumn: Exclude<keyof MessagesTable, (typeof COLUMNS)[number]> extends never ? true : never = true;
void everyColumn;

/** Of a transaction's time, what is kept back so it gives up before its waiters do, not just after. */
const MARGIN_MS = (timeoutMs: number) => Math.min(200, Math.max(20, Math.round(timeoutMs / 10)));

export class MessageLog<E = unknown> {
  private readonly group: GroupCommit<LogEntry<E>>;
  private readonly wait: boolean;

  constructor(
    db: Db,
    private readonly options: MessageLogOptions<E> = {},
  ) {
    this.wait = options.waitForCommit ?? true;
    const margin = MARGIN_MS(options.commitTimeoutMs ?? DEFAULT_DURABILITY.commitTimeoutMs);
    const prepared = options.insertRows?.('messages', COLUMNS);
    const insert = (rows: MessageRecord[]) => (prepared ? prepared(rows) : db.insertInto('messages').values(rows).execute());
    this.group = new GroupCommit<LogEntry<E>>({
      windowMs: this.wait ? (options.groupCommitMs ?? DEFAULT_DURABILITY.groupCommitMs) : 1000,
      maxGroup: this.wait ? (options.maxGroup ?? DEFAULT_DURABILITY.maxGroup) : 1000,
      timeoutMs: options.commitTimeoutMs ?? DEFAULT_DURABILITY.commitTimeoutMs,
      onLate: (entries) => {
        const late = options.late;
        if (!late) return;
        db.updateTable('messages')
          .set(late)
          .where('id', 'in', entries.map((e) => e.row.id))
          .execute()
          .catch((err: Error) => options.onError?.(err, entries.length));
      },
      write: async (entries, deadline) => {
        const extras = options.writeExtra ? entries.flatMap((e) => (e.extra === null ? [] : [e.extra])) : [];
        const deadlined = this.wait && options.transactionDeadline !== false;
        // Records alone and no deadline to set (PGlite): one INSERT is its own transaction — one statement, not three.
        if (extras.length === 0 && !deadlined) return void (await insert(entries.map((e) => e.row)));
        await db.transaction().execute(async (tx) => {
          // The transaction gives up when its oldest waiter does (they were told 451), rather than commit behind their backs.
          if (deadlined) await sql`select set_config('statement_timeout', ${String(Math.max(1, deadline - Date.now() - margin))}, true)`.execute(tx);
          await tx.insertInto('messages').values(entries.map((e) => e.row)).execute();
          if (extras.length > 0) await options.writeExtra!(tx, extras);
        });
      },
    });
  }

  /** Resolves once the record (and its extra) is committed; rejects when the store failed or was too slow. */
  commit(row: MessageRecord, extra: E | null = null): Promise<void> {
    const done = this.group.commit({ row, extra });
    if (this.wait) return done;
    done.catch((err: Error) => this.options.onError?.(err, 1));
    return Promise.resolve();
  }

  /** Writes the record with the next group; nobody waits (for replies the sender retries anyway). */
  record(row: MessageRecord, extra: E | null = null): void {
    this.group.commit({ row, extra }).catch((err: Error) => this.options.onError?.(err, 1));
  }

  /** Tries everything submitted so far (at shutdown). */
  flush(): Promise<void> {
    return this.group.flush();
  }

  /** Transactions committed and the records they carried. */
  get stats(): { groups: number; records: number } {
    return { groups: this.group.groups, records: this.group.items };
  }
}
