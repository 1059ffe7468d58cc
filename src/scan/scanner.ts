/*
 * scan/scanner — one verdict per message.
 *
 * Order: (1) the message is split into leaves (scan/mime, with the part and
 * depth limits); (2) the built-in policy on every leaf — cheap, needs no
 * clamd: EICAR, banned names and sniffed types, zip contents, the blocklist;
 * (3) the verdict cache: a leaf clamd already found infected decides the
 * message; (4) clamd on the WHOLE raw message — it does its own MIME and
 * archive unpacking, far beyond ours.
 *
 * The cache (scan/cache) is what makes an outbreak cheap: once clamd has
 * named the infected part of one copy, every later copy carrying the same
 * part is decided by a SHA-256 of it. It is kept correct by three rules:
 *   - clean is remembered only for parts clamd has seen: after a whole-message
 *     `clean`, and only when postal-mime's decoding of the message can be
 *     trusted to be clamd's (no unusual transfer encoding, no charset-converted
 *     body: MimeShape.opaque) and the part is below scan.cacheMaxLeafBytes
 *     (clamd silently skips files above its MaxFileSize);
 *   - after a whole-message `infected` the leaves are scanned one by one, in
 *     the background (the verdict is already known); clean leaves are
 *     remembered only if one leaf was found infected — if clamd's finding
 *     cannot be pinned on a leaf, it came from the message as a whole and
 *     nothing from it is remembered;
 *   - the cache is flushed when clamd's VERSION changes (asked at most once a
 *     minute) and a scan started before a flush cannot write after it.
 * When skipping clamd's whole-message scan is safe (and when it is not):
 *   - infected: one leaf already pinned on a finding decides the message —
 *     nothing else clamd could say would make it deliverable. Always safe.
 *   - banned: refused by our own policy; clamd is not asked (no answer of
 *     its would let the message through). The worm copies of the outbreak
 *     bench are decided here: hand MIME split, zip directory, no clamd.
 *   - clean: only when EVERY leaf's decoded bytes are known clean, the
 *     structure is plain (no decoding where ours and clamd's might differ:
 *     MimeShape.opaque — unusual encodings, converted charsets, base64 with
 *     stray characters or inner padding), and every preamble/epilogue that
 *     holds more than white space is itself known clean (it was part of a
 *     message clamd passed whole). The non-attachment parts — the text and
 *     HTML bodies — are leaves like the attachments: they are hashed and
 *     must be known too, so a new body always goes to clamd.
 *   - what the shortcut does not cover: the header blocks (the message's and
 *     each part's). They are unique per message (Message-ID), so requiring
 *     them known would end the shortcut; a signature that matches only a
 *     header is missed for a message whose every part, preamble and epilogue
 *     clamd has already passed. The built-in policy still runs on every
 *     message, cached or not.
 *
 * Never throws and never answers `clean` for something it did not look at:
 * a parse failure, a limit, a timeout or a clamd failure is `unscannable`.
 * The caller caps the message size before it gets here (postal-mime buffers
 * the whole message).
 */
import { readFileSync } from 'node:fs';
import type { Config } from '../config/schema.ts';
import { cleanText } from '../obs/clean.ts';
import { VerdictCache } from './cache.ts';
import { ClamdClient, ClamdError } from './clamd.ts';
import { MimeLimitError, walkMessage, type WalkedMessage } from './mime.ts';
import { DEFAULT_BANNED_EXTENSIONS } from './names.ts';
import { checkLeaf, sha256, type Leaf, type PolicySettings } from './policy.ts';
import type { ScanResult, Scanner, ScannerEvents } from './types.ts';
import { clean, infected, unscannable, worst, type Verdict } from './verdict.ts';

/** Reads a SHA-256 blocklist: one hex digest per line, `#` starts a comment. */
export function readBlocklist(file: string): Set<string> {
  const set = new Set<string>();
  readFileSync(file, 'utf8')
    .split('\n')
    .forEach((line, i) => {
      const value = line.replace(/#.*/, '').trim().toLowerCase();
      if (!value) return;
      if (!/^[0-9a-f]{64}$/.test(value)) throw new Error(`${file}:${i + 1}: expected a SHA-256 in hex, got "${cleanText(value, 80)}"`);
      set.add(value);
    });
  return set;
}

export interface ScannerOptions {
  /** The clock for the signature poll and cache ages (tests move it). */
  now?: () => number;
  /** clamd's VERSION is asked at most this often: 60 s. */
  signaturePollMs?: number;
}

export interface ScannerStats {
  /** INSTREAM calls made to clamd (whole messages and single leaves). */
  clamdScans: number;
  cacheHits: number;
  cacheMisses: number;
  cacheEntries: number;
  cacheFlushes: number;
  /** clamd's last VERSION answer, '' before the first. */
  signatures: string;
}

export interface BackstopScanner extends Scanner {
  stats(): ScannerStats;
  /** Resolves when background work (finding which leaf carried an infection) is done. */
  settled(): Promise<void>;
}

interface Decision {
  verdict: Verdict;
  cached: boolean;
}

export function createScanner(config: Pick<Config, 'scan' | 'clamd'>, events: ScannerEvents = {}, options: ScannerOptions = {}): BackstopScanner {
  const scan = config.scan;
  const now = options.now ?? Date.now;
  const pollMs = options.signaturePollMs ?? 60_000;
  const settings: PolicySettings = {
    maxArchiveDepth: scan.maxArchiveDepth,
    maxArchiveEntries: scan.maxArchiveEntries,
    maxExpansionRatio: scan.maxExpansionRatio,
    maxExpandedBytes: scan.maxExpandedBytes,
    bannedExtensions: new Set(scan.bannedExtensions ?? DEFAULT_BANNED_EXTENSIONS),
    bannedTypes: new Set(scan.bannedTypes),
    blocklist: scan.blocklistFile ? readBlocklist(scan.blocklistFile) : new Set(),
  };
  const clamd = config.clamd ? new ClamdClient(config.clamd, scan.clamdTimeoutMs) : null;
  const cache = new VerdictCache(scan.cacheEntries, undefined, now);
  const background = new Set<Promise<void>>();
  const learning = new Set<string>();

  let signaturesCheckedAt = -Infinity;
  let signaturesInFlight: Promise<void> | null = null;

  /**
   * Asks clamd's VERSION when the last answer is older than the poll
   * interval; a new version flushes the cache. Shared by concurrent scans, so
   * it runs on clamd's own timeout, not on one caller's deadline. When clamd does
   * not answer, the cache is flushed (unknown signatures) and the error goes
   * to the caller: waiting for INSTREAM next would only double the wait.
   */
  function refreshSignatures(): Promise<void> {
    if (!clamd) return Promise.resolve();
    if (signaturesInFlight) return signaturesInFlight;
    if (now() - signaturesCheckedAt < pollMs) return Promise.resolve();
    signaturesInFlight = clamd
      .version()
      .then(
        (version) => {
          signaturesCheckedAt = now();
          cache.setSignatures(version);
        },
        (err: unknown) => {
          if (!cache.setSignatures('')) cache.flush();
          throw err;
        },
      )
      .finally(() => {
        signaturesInFlight = null;
      });
    return signaturesInFlight;
  }

  const cacheable = (leaf: Leaf) => leaf.content.length <= scan.cacheMaxLeafBytes;

  /**
   * After clamd found the whole message infected: which leaf was it? Runs in
   * the background; its failures cost only a later cache miss.
   */
  function learnInfectedLeaf(leaves: Leaf[], digests: string[], known: unknown[], generation: number): void {
    if (!clamd || scan.cacheEntries === 0) return;
    // Attachments first (where worms travel), and stop at the first infected leaf: the rest stays
    // unknown, which is always safe, and a variant with a new body costs one extra scan, not one per part.
    const todo = leaves
      .map((leaf, i) => ({ leaf, digest: digests[i]! }))
      .filter(({ digest }, i) => known[i] === undefined && !learning.has(digest))
      .sort((a, b) => Number(a.leaf.body ?? false) - Number(b.leaf.body ?? false));
    if (todo.length === 0) return;
    todo.forEach(({ digest }) => learning.add(digest));
    const work = (async () => {
      const cleanLeaves: string[] = [];
      for (const { leaf, digest } of todo) {
        const answer = await clamd.scan(leaf.content, AbortSignal.timeout(scan.clamdTimeoutMs));
        if (answer.kind === 'clean') {
          if (cacheable(leaf)) cleanLeaves.push(digest);
          continue;
        }
        cache.set(digest, { kind: 'infected', name: answer.name }, generation);
        // Only when the finding is explained by a leaf are the other leaves known clean on their own.
        for (const d of cleanLeaves) cache.set(d, { kind: 'clean' }, generation);
        return;
      }
    })()
      .catch((err: Error) => events.onClamdError?.(err))
      .finally(() => {
        todo.forEach(({ digest }) => learning.delete(digest));
        background.delete(work);
      });
    background.add(work);
  }

  async function askClamd(raw: Uint8Array, walked: WalkedMessage, builtin: Verdict, wholeIsLeaf: boolean, signal: AbortSignal): Promise<Decision> {
    const leaves = walked.leaves;
    if (!clamd) return { verdict: builtin, cached: false };
    await refreshSignatures();
    const generation = cache.generation;
    const digests = leaves.map((l) => sha256(l.content));
    const known = digests.map((d) => cache.get(d));
    const hit = known.find((k) => k?.kind === 'infected');
    if (hit?.kind === 'infected') return { verdict: worst(builtin, infected(hit.name)), cached: true };
    // A banned message is refused without clamd: nothing clamd says would let it through.
    if (builtin.kind === 'banned') return { verdict: builtin, cached: false };
    const plain = walked.opaque === null;
    const outside = walked.outside.map((bytes) => sha256(bytes));
    if (plain && leaves.length > 0 && known.every((k) => k?.kind === 'clean') && outside.every((d) => cache.get(d)?.kind === 'clean')) {
      return { verdict: builtin, cached: true };
    }

    const answer = await clamd.scan(raw, signal);
    if (answer.kind === 'clean') {
      if (plain) leaves.forEach((leaf, i) => cacheable(leaf) && known[i] === undefined && cache.set(digests[i]!, { kind: 'clean' }, generation));
      if (plain) outside.forEach((d) => cache.set(d, { kind: 'clean' }, generation));
      return { verdict: builtin, cached: false };
    }
    if (wholeIsLeaf) cache.set(digests[0]!, { kind: 'infected', name: answer.name }, generation);
    else learnInfectedLeaf(leaves, digests, known, generation);
    return { verdict: worst(builtin, infected(answer.name)), cached: false };
  }

  async function decide(raw: Uint8Array, split: () => Promise<WalkedMessage>, wholeIsLeaf: boolean, signal: AbortSignal): Promise<Decision> {
    let walked: WalkedMessage;
    try {
      walked = await split();
    } catch (err) {
      if (err instanceof MimeLimitError) return { verdict: unscannable(`MIME limit: ${err.message}`), cached: false };
      return { verdict: unscannable(`MIME: ${cleanText((err as Error).message, 120)}`), cached: false };
    }
    let builtin: Verdict = clean;
    for (const leaf of walked.leaves) {
      if (signal.aborted) throw signal.reason;
      builtin = worst(builtin, checkLeaf(leaf, settings));
      if (builtin.kind === 'infected') return { verdict: builtin, cached: false };
      if (builtin.kind === 'banned') break;
    }
    try {
      return await askClamd(raw, walked, builtin, wholeIsLeaf, signal);
    } catch (err) {
      if (signal.aborted) throw err;
      events.onClamdError?.(err as Error);
      if (err instanceof ClamdError && err.reason === 'refused') return { verdict: worst(builtin, unscannable(err.message)), cached: false };
      return { verdict: worst(builtin, unscannable(`clamd unavailable: ${cleanText((err as Error).message, 120)}`)), cached: false };
    }
  }

  /** The overall deadline (scan.timeoutMs): clamd calls are aborted with it, and the answer is `unscannable`. */
  async function timed(work: (signal: AbortSignal) => Promise<Decision>): Promise<ScanResult> {
    const started = process.hrtime.bigint();
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<Decision>((resolve) => {
      timer = setTimeout(() => {
        controller.abort(new Error('scan timeout'));
        resolve({ verdict: unscannable(`scan timed out after ${scan.timeoutMs} ms`), cached: false });
      }, scan.timeoutMs);
    });
    let result: Decision;
    try {
      result = await Promise.race([work(controller.signal), deadline]);
    } catch (err) {
      result = controller.signal.aborted
        ? { verdict: unscannable(`scan timed out after ${scan.timeoutMs} ms`), cached: false }
        : { verdict: unscannable(`internal error: ${cleanText((err as Error).message, 120)}`), cached: false };
    } finally {
      clearTimeout(timer);
    }
    return { ...result, ms: Number(process.hrtime.bigint() - started) / 1e6 };
  }

  const limits = { maxMimeDepth: scan.maxMimeDepth, maxParts: scan.maxParts };

  return {
    scanMessage: (raw) => timed((signal) => decide(raw, () => walkMessage(raw, limits), false, signal)),
    scanFile: (name, content) =>
      timed((signal) => decide(content, async () => ({ leaves: [{ name, content }], parts: 1, opaque: null, outside: [] }), true, signal)),
    stats: () => ({
      clamdScans: clamd?.scans ?? 0,
      cacheHits: cache.hits,
      cacheMisses: cache.misses,
      cacheEntries: cache.size,
      cacheFlushes: cache.flushes,
      signatures: cache.signatureVersion,
    }),
    async settled() {
      while (background.size > 0) await Promise.allSettled([...background]);
    },
    async close() {
      await this.settled();
      clamd?.close();
    },
  };
}
