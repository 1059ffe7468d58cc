/*
 * scan/scanner — one verdict per message, and every finding behind it.
 *
 * The amavis model: we decode the message and the archives we can open
 * ourselves and hand clamd the decoded pieces, instead of trusting clamd's
 * own unpacking of the raw message to reach everything. It does not: a hash
 * signature (.hdb/.hsb, most of ClamAV's published ones) matches a file only
 * when clamd holds it byte for byte, and clamd's MIME and archive walk of a
 * whole message reaches fewer files than the same files sent on their own
 * (clam_cache_emax.tgz, or base64 split into separately padded pieces:
 * clamd's decoder stops at the first `=`, ours reads on).
 *
 * Order: (1) the message is split into leaves (scan/mime, with the part and
 * depth limits), each decoded by our parser; (2) the built-in policy on
 * every leaf and every member of the archives we open (scan/policy): EICAR,
 * banned names and sniffed types, the blocklist, archive limits — every
 * finding is kept, not only the first; (3) clamd, over zINSTREAM sessions,
 * at most scan.clamdConcurrency calls at once: every leaf on its own, every
 * archive member we held (up to scan.maxBufferedEntryBytes per message),
 * and the WHOLE raw message as well — clamd's own reading (its MIME parser,
 * uuencode/binhex/yEnc in bodies, the header blocks) can find what ours
 * does not, so the two views are added, never one trusted over the other.
 * The verdict is the worst finding (scan/verdict: infected beats banned
 * beats unscannable); the result lists them all, each with its part.
 *
 * What clamd is not asked, and why:
 *   - a leaf already known (the cache below) is not sent again;
 *   - when a leaf is known infected from the cache, nothing more is sent:
 *     the verdict cannot get worse, and an outbreak copy must cost a hash.
 *     The built-in findings on the other leaves are still all listed;
 *   - when the built-in policy found EICAR (infected), likewise;
 *   - when the built-in policy banned the message, only its attachments go
 *     to clamd (not the bodies, not the whole message): the message is
 *     refused whatever clamd says, but if an attachment is malware its name
 *     must reach the reply, the postmaster notice and the abuse report. The
 *     worm copies of an outbreak carry the same attachment, so after the
 *     first copy this is a cache hit, not a scan. Those calls get at most
 *     scan.bannedClamdTimeoutMs, and their failure leaves the ban as it is.
 *
 * The cache (scan/cache) is what makes an outbreak cheap: a SHA-256 of each
 * piece's decoded bytes. Its rules:
 *   - a piece's own verdict is remembered from clamd scanning exactly those
 *     bytes on their own — infected always, clean only below
 *     scan.cacheMaxLeafBytes (clamd silently skips files above its
 *     MaxFileSize and answers OK);
 *   - a leaf is marked `whole` (it was in a message clamd passed whole) only
 *     after a whole-message `clean`, and only when our decoding of the
 *     message can be trusted to be clamd's (MimeShape.opaque is null: no
 *     unusual transfer encoding, no charset-converted body, no base64 with
 *     stray characters or inner padding). The preambles and epilogues that
 *     hold more than white space are marked the same way;
 *   - the whole-message pass is skipped only when every leaf and member is
 *     known clean, every leaf and every preamble/epilogue is marked `whole`
 *     and the structure is plain. A finding clamd makes only on a whole
 *     message (a signature on headers or structure) therefore never lets a
 *     later copy through: its leaves are clean on their own but never
 *     `whole`, so the next copy goes to clamd whole again;
 *   - the cache is flushed when clamd's VERSION changes (asked at most once
 *     a minute) and a scan started before a flush cannot write after it.
 * What the shortcut does not cover: the header blocks (the message's and
 * each part's). They are unique per message (Message-ID), so requiring them
 * known would end the shortcut; a signature that matches only a header is
 * missed for a message whose every part clamd has already passed whole.
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
import { inspectLeaf, partLabel, sha256, worstOf, yencFiles, type Finding, type Leaf, type PolicySettings } from './policy.ts';
import type { ScanResult, Scanner, ScannerEvents } from './types.ts';
import { banned, infected, unscannable, type Concern, type Verdict } from './verdict.ts';

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
  /** The processes of this node that share scan.clamdConnections (its workers): each scanner gets its share. */
  processes?: number;
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
  /** Resolves when background work is done (there is none now: every piece is scanned before the answer; kept for callers). */
  settled(): Promise<void>;
}

interface Decision {
  verdict: Verdict;
  findings: Finding[];
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
    maxBufferedEntryBytes: scan.maxBufferedEntryBytes,
    bannedExtensions: new Set(scan.bannedExtensions ?? DEFAULT_BANNED_EXTENSIONS),
    bannedTypes: new Set(scan.bannedTypes),
    blocklist: scan.blocklistFile ? readBlocklist(scan.blocklistFile) : new Set(),
    clamd: Boolean(config.clamd),
    clamdOpens: new Set(config.clamd ? scan.clamdOpens : []),
  };
  const connections = Math.max(2, Math.floor(scan.clamdConnections / (options.processes ?? 1)));
  const clamd = config.clamd ? new ClamdClient(config.clamd, scan.clamdTimeoutMs, undefined, { connections }) : null;
  const cache = new VerdictCache(scan.cacheEntries, undefined, now);

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

  /** One piece clamd may be asked about: a MIME leaf (`leaf`) or an archive member we held. */
  interface Piece {
    digest: string;
    content: Uint8Array;
    part: string;
    leaf: boolean;
    body: boolean;
  }

  async function askClamd(raw: Uint8Array, walked: WalkedMessage, pieces: Piece[], findings: Finding[], wholeIsLeaf: boolean, signal: AbortSignal): Promise<boolean> {
    if (!clamd) return false;
    await refreshSignatures();
    const generation = cache.generation;
    const known = pieces.map((p) => cache.get(p.digest));
    let hit = false;
    pieces.forEach((p, i) => {
      const k = known[i];
      if (k?.kind === 'infected') {
        findings.push({ verdict: clamdFinding(k.name), part: p.part });
        hit = true;
      }
    });
    // Known infected, or EICAR by the built-in check: the verdict cannot get worse.
    if (hit || findings.some((f) => f.verdict.kind === 'infected')) return hit;
    const refused = findings.some((f) => f.verdict.kind === 'banned');
    const plain = walked.opaque === null;
    const outside = walked.outside.map((bytes) => sha256(bytes));
    const allKnown =
      plain &&
      pieces.length > 0 &&
      pieces.every((p, i) => known[i]?.kind === 'clean' && (!p.leaf || (known[i] as { whole?: boolean }).whole === true)) &&
      outside.every((d) => (cache.get(d) as { whole?: boolean } | undefined)?.whole === true);
    if (allKnown) return true;

    const todo = pieces.filter((p, i) => known[i] === undefined && !(refused && p.body));
    // A banned message is refused whatever clamd says: clamd only adds the malware's name, so a slow or hung
    // clamd may cost it scan.bannedClamdTimeoutMs, not the full clamd timeout (a worm wave must not pile up).
    const asked = refused ? AbortSignal.any([signal, AbortSignal.timeout(scan.bannedClamdTimeoutMs)]) : signal;
    const whole = !wholeIsLeaf && !refused;
    const cleanAlone = new Set(pieces.filter((_, i) => known[i]?.kind === 'clean').map((p) => p.digest));
    let wholeClean = false;
    const jobs: (() => Promise<void>)[] = todo.map((p) => async () => {
      try {
        const answer = await clamd.scan(p.content, asked);
        if (answer.kind === 'clean') {
          cleanAlone.add(p.digest);
          if (p.content.length <= scan.cacheMaxLeafBytes) cache.set(p.digest, { kind: 'clean' }, generation);
        } else {
          cache.set(p.digest, { kind: 'infected', name: answer.name }, generation);
          findings.push({ verdict: clamdFinding(answer.name), part: p.part });
        }
      } catch (err) {
        if (refused && !signal.aborted) {
          // The ban stands; the name clamd would have added is what is lost.
          events.onClamdError?.(err as Error);
          return;
        }
        if (!(err instanceof ClamdError && err.reason === 'refused')) throw err;
        events.onClamdError?.(err);
        findings.push({ verdict: unscannable(err.message), part: p.part });
      }
    });
    if (whole) {
      jobs.unshift(async () => {
        try {
          const answer = await clamd.scan(raw, signal);
          if (answer.kind === 'clean') wholeClean = true;
          else findings.push({ verdict: clamdFinding(answer.name), part: WHOLE });
        } catch (err) {
          if (!(err instanceof ClamdError && err.reason === 'refused')) throw err;
          events.onClamdError?.(err);
          findings.push({ verdict: unscannable(err.message), part: WHOLE });
        }
      });
    }
    await pool(jobs, scan.clamdConcurrency);
    if (wholeClean && plain) {
      for (const p of pieces) {
        if (p.leaf && cleanAlone.has(p.digest) && p.content.length <= scan.cacheMaxLeafBytes) cache.set(p.digest, { kind: 'clean', whole: true }, generation);
      }
      outside.forEach((d) => cache.set(d, { kind: 'clean', whole: true }, generation));
    }
    return false;
  }

  async function decide(raw: Uint8Array, split: () => Promise<WalkedMessage>, wholeIsLeaf: boolean, signal: AbortSignal): Promise<Decision> {
    let walked: WalkedMessage;
    try {
      walked = await split();
    } catch (err) {
      if (err instanceof MimeLimitError) return decision([{ verdict: unscannable(`MIME limit: ${err.message}`), part: WHOLE }], false);
      return decision([{ verdict: unscannable(`MIME: ${cleanText((err as Error).message, 120)}`), part: WHOLE }], false);
    }
    const findings: Finding[] = [];
    const pieces: Piece[] = [];
    const seen = new Set<string>();
    const addPiece = (content: Uint8Array, part: string, leaf: boolean, body: boolean) => {
      const digest = sha256(content);
      if (seen.has(digest)) return;
      seen.add(digest);
      pieces.push({ digest, content, part, leaf, body });
    };
    const memberBudget = { bytes: scan.maxBufferedEntryBytes };
    // yEnc files in the raw message and in the decoded bodies: clamd decodes neither, so they are leaves of ours.
    const yenc = new Map<string, Leaf>();
    const texts = [...(Buffer.from(raw.buffer, raw.byteOffset, raw.length).includes('=ybegin ') ? [Buffer.from(raw.buffer, raw.byteOffset, raw.length).toString('latin1')] : [])];
    for (const leaf of walked.leaves) if (leaf.body && Buffer.from(leaf.content.buffer, leaf.content.byteOffset, leaf.content.length).includes('=ybegin ')) texts.push(Buffer.from(leaf.content).toString('utf8'));
    for (const text of texts) for (const file of yencFiles(text).slice(0, 100)) yenc.set(sha256(file.bytes), { name: file.name, content: file.bytes });
    for (const leaf of [...walked.leaves, ...yenc.values()]) {
      if (signal.aborted) throw signal.reason;
      const inspection = inspectLeaf(leaf, settings, memberBudget);
      findings.push(...inspection.findings);
      addPiece(leaf.content, partLabel(leaf), true, leaf.body === true);
      for (const other of leaf.alternatives ?? []) addPiece(other, partLabel(leaf), false, false);
      for (const m of inspection.members) addPiece(m.content, m.part, false, false);
    }
    try {
      const cached = await askClamd(raw, walked, pieces, findings, wholeIsLeaf, signal);
      return decision(findings, cached);
    } catch (err) {
      if (signal.aborted) throw err;
      events.onClamdError?.(err as Error);
      findings.push({ verdict: unscannable(`clamd unavailable: ${cleanText((err as Error).message, 120)}`), part: WHOLE });
      return decision(findings, false);
    }
  }

  /** The overall deadline (scan.timeoutMs): clamd calls are aborted with it, and the answer is `unscannable`. */
  async function timed(work: (signal: AbortSignal) => Promise<Decision>): Promise<ScanResult> {
    const started = process.hrtime.bigint();
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = (): Decision => decision([{ verdict: unscannable(`scan timed out after ${scan.timeoutMs} ms`), part: WHOLE }], false);
    const deadline = new Promise<Decision>((resolve) => {
      timer = setTimeout(() => {
        controller.abort(new Error('scan timeout'));
        resolve(timedOut());
      }, scan.timeoutMs);
    });
    let result: Decision;
    try {
      result = await Promise.race([work(controller.signal), deadline]);
    } catch (err) {
      result = controller.signal.aborted ? timedOut() : decision([{ verdict: unscannable(`internal error: ${cleanText((err as Error).message, 120)}`), part: WHOLE }], false);
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
    async settled() {},
    async close() {
      clamd?.close();
    },
  };
}

/** The part name of findings about the message as a whole (clamd's whole-message pass, MIME limits, timeouts). */
export const WHOLE = 'whole message';

function decision(findings: Finding[], cached: boolean): Decision {
  // clamd may name on the whole message what it already named on a leaf: listed once.
  const named = new Set(findings.filter((f) => f.part !== WHOLE && f.verdict.kind === 'infected').map((f) => (f.verdict as { name: string }).name));
  const kept = findings.filter((f) => !(f.part === WHOLE && f.verdict.kind === 'infected' && named.has(f.verdict.name)));
  return { verdict: worstOf(kept), findings: kept, cached };
}

/**
 * What clamd's FOUND means. Its heuristic for archives it cannot open for a
 * password (AlertEncryptedArchive: Heuristics.Encrypted.Zip, .7Zip, .RAR, …)
 * is no virus: it is the same finding as our own password-protected check.
 */
export function clamdFinding(name: string): Concern {
  if (/^Heuristics\.Encrypted\./.test(name)) return banned(`password-protected archive (clamd: ${name})`);
  return infected(name);
}

/** Runs the jobs with at most `limit` in flight; the first failure rejects (the others' results are dropped). */
async function pool(jobs: (() => Promise<void>)[], limit: number): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) await jobs[next++]!();
  };
  await Promise.all(Array.from({ length: Math.min(limit, jobs.length) }, worker));
}
