/*
 * store/batcher — gathers items and writes them in batches, so the SMTP hot
 * path never waits on one database write per message (the message log, the
 * detections behind postmaster notices). A batch is written when it is full
 * or when flushMs has passed; batches are written one after another, in
 * arrival order. A failed write is reported with how many items it lost —
 * only for records of decisions already answered in the SMTP session, never
 * for anything that must be durable before the reply.
 */
export interface BatcherOptions<T> {
  write(batch: T[]): Promise<void>;
  onError?(err: Error, lost: number): void;
  maxBatch?: number;
  flushMs?: number;
}

export class Batcher<T> {
  private pending: T[] = [];
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<void> = Promise.resolve();

  constructor(private readonly options: BatcherOptions<T>) {}

  add(item: T): void {
    this.pending.push(item);
    if (this.pending.length >= (this.options.maxBatch ?? 500)) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), this.options.flushMs ?? 200);
  }

  /** Writes everything gathered so far; resolves when it is written (or reported lost). */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const batch = this.pending;
    this.pending = [];
    this.inFlight = this.inFlight.then(async () => {
      if (batch.length === 0) return;
      try {
        await this.options.write(batch);
      } catch (err) {
        this.options.onError?.(err as Error, batch.length);
      }
    });
    return this.inFlight;
  }
}

/*
 * GroupCommit — the durable sibling of Batcher, the way PostgreSQL's group
 * commit and Postfix's cleanup+fsync-before-250 do it: every caller waits for
 * the transaction that holds its item. When no transaction is running, an
 * item starts one at once (windowMs 0: after the I/O callbacks of the current
 * event-loop turn, so items arriving together share it); every item that
 * arrives while a transaction commits goes in the next one, which starts as
 * soon as that one ends. So an idle store adds no wait, and a busy one forms
 * groups by itself. windowMs > 0 is PostgreSQL's commit_delay: the first item
 * of a group waits that long for company. Throughput comes from the group,
 * durability from waiting.
 *
 * Promises: commit() resolves only after the transaction holding the item
 * committed; it rejects when that transaction failed, or when timeoutMs
 * passed first (the caller answers 451 then). write() is told the deadline
 * of its group's oldest caller, so the transaction can give up by itself
 * before it (the message log sets statement_timeout to it). An item whose
 * caller gave up while its transaction went on and committed after all is
 * handed to onLate (the message log corrects the record to say what the
 * sender was told).
 * An item that timed out before its group started is never written. One bad
 * item does not sink its group: a failed group is retried one item per
 * transaction, so only the item that fails alone is refused.
 */
export class StoreTimeoutError extends Error {
  constructor(ms: number) {
    super(`the store did not commit within ${ms} ms`);
  }
}

export interface GroupCommitOptions<T> {
  /** Writes a group in one transaction; throws when it did not commit. `deadline`: epoch ms its oldest caller stops waiting. */
  write(group: T[], deadline: number): Promise<void>;
  /** How long the first item of a group waits for company before the transaction starts; 0: not at all. */
  windowMs: number;
  /** A group this large starts at once. */
  maxGroup: number;
  /** The longest a caller waits for its commit. */
  timeoutMs: number;
  /** Items committed after their caller had been told they were not. */
  onLate?(items: T[]): void;
}

interface Waiting<T> {
  item: T;
  resolve(): void;
  reject(err: Error): void;
  settled: boolean;
  deadline: number;
  timer: NodeJS.Timeout;
}

export class GroupCommit<T> {
  private pending: Waiting<T>[] = [];
  /** Cancels the start already scheduled (a timer or an immediate), if any. */
  private scheduled: (() => void) | null = null;
  private running: Promise<void> | null = null;
  /** Groups committed and their sizes, for the bench and /metrics. */
  groups = 0;
  items = 0;

  constructor(private readonly options: GroupCommitOptions<T>) {}

  /** Resolves once `item` is committed; rejects on failure or after timeoutMs. */
  commit(item: T): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const w: Waiting<T> = {
        item,
        settled: false,
        deadline: Date.now() + this.options.timeoutMs,
        resolve: () => {
          if (w.settled) return;
          w.settled = true;
          clearTimeout(w.timer);
          resolve();
        },
        reject: (err) => {
          if (w.settled) return;
          w.settled = true;
          clearTimeout(w.timer);
          reject(err);
        },
        timer: setTimeout(() => {
          // Not started yet: drop it, so a record of a message answered 451 is never written late.
          const i = this.pending.indexOf(w);
          if (i >= 0) this.pending.splice(i, 1);
          w.reject(new StoreTimeoutError(this.options.timeoutMs));
        }, this.options.timeoutMs),
      };
      this.pending.push(w);
      this.schedule();
    });
  }

  /** Resolves when everything submitted so far has been tried. */
  async flush(): Promise<void> {
    while (this.pending.length > 0 || this.running) {
      if (!this.running) this.start();
      await this.running;
    }
  }

  private schedule(): void {
    if (this.running) return; // the next group starts when this one ends
    if (this.pending.length >= this.options.maxGroup) this.start();
    else if (!this.scheduled && this.options.windowMs > 0) {
      const timer = setTimeout(() => this.start(), this.options.windowMs);
      this.scheduled = () => clearTimeout(timer);
    } else if (!this.scheduled) {
      const immediate = setImmediate(() => this.start());
      this.scheduled = () => clearImmediate(immediate);
    }
  }

  private start(): void {
    this.scheduled?.();
    this.scheduled = null;
    if (this.running || this.pending.length === 0) return;
    const group = this.pending.splice(0, this.options.maxGroup);
    this.running = this.run(group).finally(() => {
      this.running = null;
      // Whoever arrived during the commit has waited long enough: go at once.
      if (this.pending.length > 0) this.start();
    });
  }

  private async run(group: Waiting<T>[]): Promise<void> {
    try {
      await this.options.write(group.map((w) => w.item), Math.min(...group.map((w) => w.deadline)));
      this.groups++;
      this.items += group.length;
      const late = group.filter((w) => w.settled);
      for (const w of group) w.resolve();
      if (late.length > 0) this.options.onLate?.(late.map((w) => w.item));
      return;
    } catch (err) {
      if (group.length === 1) return group[0]!.reject(err as Error);
    }
    for (const w of group) {
      if (w.settled) continue;
      try {
        await this.options.write([w.item], w.deadline);
        this.groups++;
        this.items++;
        if (w.settled) this.options.onLate?.([w.item]);
        w.resolve();
      } catch (err) {
        w.reject(err as Error);
      }
    }
  }
}
