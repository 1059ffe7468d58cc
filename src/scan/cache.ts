/*
 * scan/cache — clamd's verdicts remembered per decoded part (SHA-256 of its
 * bytes), so the thousandth copy of an outbreak's payload costs a hash, not a
 * scan.
 *
 * Per process and bounded (LRU): a performance cache, not state that matters —
 * losing it costs only time. Entries belong to one signature version: a new
 * version empties the cache and bumps `generation`, so a scan that began
 * under the old signatures cannot store its answer under the new ones.
 * Entries also expire after maxAgeMs even if the version string does not
 * move (a private signature database reloaded without a version bump).
 */
/**
 * `clean`: clamd passed these bytes scanned on their own; `whole`: and it also
 * passed a message that carried them, decoded the same way (scanner: what
 * lets a message skip clamd's whole-message pass).
 */
export type CachedVerdict = { kind: 'clean'; whole?: boolean } | { kind: 'infected'; name: string };

export class VerdictCache {
  private readonly entries = new Map<string, { verdict: CachedVerdict; at: number }>();
  private signatures = '';
  /** Bumped on every flush; a writer passes the generation it read under. */
  generation = 0;
  hits = 0;
  misses = 0;
  flushes = 0;

  constructor(
    private readonly maxEntries: number,
    private readonly maxAgeMs = 10 * 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Empties the cache when the signature version changes. Returns true when it did. */
  setSignatures(version: string): boolean {
    if (version === this.signatures) return false;
    this.flush();
    this.signatures = version;
    return true;
  }

  get signatureVersion(): string {
    return this.signatures;
  }

  flush(): void {
    this.entries.clear();
    this.generation++;
    this.flushes++;
  }

  get(digest: string): CachedVerdict | undefined {
    const entry = this.entries.get(digest);
    if (!entry || this.now() - entry.at > this.maxAgeMs) {
      if (entry) this.entries.delete(digest);
      this.misses++;
      return undefined;
    }
    // Re-insert to mark it most recently used (a Map iterates in insertion order).
    this.entries.delete(digest);
    this.entries.set(digest, entry);
    this.hits++;
    return entry.verdict;
  }

  /** Stores a verdict unless the cache was flushed since `generation` was read. */
  set(digest: string, verdict: CachedVerdict, generation = this.generation): void {
    if (this.maxEntries === 0 || generation !== this.generation) return;
    this.entries.delete(digest);
    this.entries.set(digest, { verdict, at: this.now() });
    while (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
  }

  get size(): number {
    return this.entries.size;
  }
}
