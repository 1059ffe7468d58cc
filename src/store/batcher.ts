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
