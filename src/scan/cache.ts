/*
 * scan/cache — clamd's verdicts remembered per file content (SHA-256), so the
 * thousandth copy of an outbreak's payload costs a hash, not a scan.
 *
 * Per process and bounded (LRU): a performance cache, not state that matters —
 * losing it costs only time. Entries belong to one signature version and
 * expire after maxAgeMs even if the version string does not move (a private
 * signature database reloaded without a version bump).
 */
export type CachedVerdict = { kind: 'clean' } | { kind: 'infected'; name: string };

export class VerdictCache {
  private readonly entries = new Map<string, { verdict: CachedVerdict; at: number }>();
  private signatures = '';
  hits = 0;
  misses = 0;

  constructor(
    private readonly maxEntries: number,
    private readonly maxAgeMs = 10 * 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Empties the cache when the signature version changes. */
  setSignatures(version: string): void {
    if (version !== this.signatures) {
      this.entries.clear();
      this.signatures = version;
    }
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

  set(digest: string, verdict: CachedVerdict): void {
    if (this.maxEntries === 0) return;
    this.entries.delete(digest);
    this.entries.set(digest, { verdict, at: this.now() });
    while (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
  }

  get size(): number {
    return this.entries.size;
  }
}
