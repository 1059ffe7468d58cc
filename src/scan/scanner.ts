/*
 * scan/scanner — one verdict per message: the built-in policy first (cheap,
 * needs no clamd), then clamd on the whole raw message (it does its own MIME
 * and archive unpacking, far beyond ours), with clamd's verdicts cached per
 * part so an outbreak's repeated payload is decided from memory.
 *
 * Never throws and never answers `clean` for something it did not look at:
 * a parse failure, a limit, a timeout or a clamd failure is `unscannable`.
 * The caller caps the message size before it gets here (postal-mime buffers
 * the whole message).
 */
import { readFileSync } from 'node:fs';
import PostalMime from 'postal-mime';
import type { Config } from '../config/schema.ts';
import { VerdictCache } from './cache.ts';
import { ClamdClient } from './clamd.ts';
import { DEFAULT_BANNED_EXTENSIONS } from './names.ts';
import { checkLeaf, sha256, type Leaf, type PolicySettings } from './policy.ts';
import type { ScanResult, Scanner, ScannerEvents } from './types.ts';
import { clean, infected, unscannable, worst, type Verdict } from './verdict.ts';

const SIGNATURE_POLL_MS = 60_000;

/** Reads a SHA-256 blocklist: one hex digest per line, `#` starts a comment. */
export function readBlocklist(file: string): Set<string> {
  const set = new Set<string>();
  readFileSync(file, 'utf8')
    .split('\n')
    .forEach((line, i) => {
      const value = line.replace(/#.*/, '').trim().toLowerCase();
      if (!value) return;
      if (!/^[0-9a-f]{64}$/.test(value)) throw new Error(`${file}:${i + 1}: expected a SHA-256 in hex, got "${value.slice(0, 80)}"`);
      set.add(value);
    });
  return set;
}

interface ParsedMessage {
  leaves: Leaf[];
  partCount: number;
}

async function parseMessage(raw: Uint8Array, scan: Config['scan']): Promise<ParsedMessage> {
  const mail = await PostalMime.parse(raw, { maxNestingDepth: scan.maxMimeDepth, attachmentEncoding: 'arraybuffer' });
  const leaves: Leaf[] = mail.attachments.map((a) => ({ name: a.filename ?? null, content: new Uint8Array(a.content as ArrayBuffer) }));
  const encoder = new TextEncoder();
  if (mail.text) leaves.push({ name: null, content: encoder.encode(mail.text) });
  if (mail.html) leaves.push({ name: null, content: encoder.encode(mail.html) });
  return { leaves, partCount: leaves.length };
}

export function createScanner(config: Pick<Config, 'scan' | 'clamd'>, events: ScannerEvents = {}): Scanner {
  const scan = config.scan;
  const settings: PolicySettings = {
    maxArchiveDepth: scan.maxArchiveDepth,
    maxArchiveEntries: scan.maxArchiveEntries,
    maxExpansionRatio: scan.maxExpansionRatio,
    maxExpandedBytes: scan.maxExpandedBytes,
    bannedExtensions: new Set(scan.bannedExtensions ?? DEFAULT_BANNED_EXTENSIONS),
    blocklist: scan.blocklistFile ? readBlocklist(scan.blocklistFile) : new Set(),
  };
  const clamd = config.clamd ? new ClamdClient(config.clamd, scan.clamdTimeoutMs) : null;
  const cache = new VerdictCache(scan.cacheEntries);
  let signaturesCheckedAt = -Infinity;

  function refreshSignatures(): void {
    if (!clamd || Date.now() - signaturesCheckedAt < SIGNATURE_POLL_MS) return;
    signaturesCheckedAt = Date.now();
    clamd.version().then(
      (v) => cache.setSignatures(v),
      () => {
        // Unknown version: drop what we remember rather than trust it.
        cache.setSignatures(`unknown-${Date.now()}`);
      },
    );
  }

  async function askClamd(raw: Uint8Array, leaves: Leaf[]): Promise<{ verdict: Verdict; cached: boolean }> {
    if (!clamd) return { verdict: clean, cached: false };
    refreshSignatures();
    const digests = leaves.map((l) => sha256(l.content));
    const known = digests.map((d) => cache.get(d));
    const hit = known.find((k) => k?.kind === 'infected');
    if (hit?.kind === 'infected') return { verdict: infected(hit.name), cached: true };
    if (digests.length > 0 && known.every((k) => k?.kind === 'clean')) return { verdict: clean, cached: true };

    const answer = await clamd.scan(raw);
    if (answer.kind === 'clean') {
      digests.forEach((d) => cache.set(d, { kind: 'clean' }));
      return { verdict: clean, cached: false };
    }
    // Learn which part carried it, so the next copy is decided from the cache.
    for (let i = 0; i < leaves.length; i++) {
      if (known[i]) continue;
      const part = await clamd.scan(leaves[i]!.content);
      cache.set(digests[i]!, part.kind === 'clean' ? { kind: 'clean' } : { kind: 'infected', name: part.name });
    }
    return { verdict: infected(answer.name), cached: false };
  }

  async function withTimeout(work: Promise<{ verdict: Verdict; cached: boolean }>): Promise<{ verdict: Verdict; cached: boolean }> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<{ verdict: Verdict; cached: boolean }>((resolve) => {
      timer = setTimeout(() => resolve({ verdict: unscannable(`scan timed out after ${scan.timeoutMs} ms`), cached: false }), scan.timeoutMs);
    });
    try {
      return await Promise.race([work, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  async function decide(raw: Uint8Array, leavesOf: () => Promise<ParsedMessage>): Promise<{ verdict: Verdict; cached: boolean }> {
    let parsed: ParsedMessage;
    try {
      parsed = await leavesOf();
    } catch (err) {
      return { verdict: unscannable(`MIME: ${(err as Error).message.slice(0, 120)}`), cached: false };
    }
    if (parsed.partCount > scan.maxParts) return { verdict: unscannable(`MIME: more than ${scan.maxParts} parts`), cached: false };
    let builtin: Verdict = clean;
    for (const leaf of parsed.leaves) {
      builtin = worst(builtin, checkLeaf(leaf, settings));
      if (builtin.kind === 'infected' || builtin.kind === 'banned') return { verdict: builtin, cached: false };
    }
    try {
      const fromClamd = await askClamd(raw, parsed.leaves);
      return { verdict: worst(builtin, fromClamd.verdict), cached: fromClamd.cached };
    } catch (err) {
      events.onClamdError?.(err as Error);
      return { verdict: unscannable(`clamd unavailable: ${(err as Error).message.slice(0, 120)}`), cached: false };
    }
  }

  async function timed(work: () => Promise<{ verdict: Verdict; cached: boolean }>): Promise<ScanResult> {
    const started = process.hrtime.bigint();
    let result: { verdict: Verdict; cached: boolean };
    try {
      result = await withTimeout(work());
    } catch (err) {
      result = { verdict: unscannable(`internal error: ${(err as Error).message.slice(0, 120)}`), cached: false };
    }
    return { ...result, ms: Number(process.hrtime.bigint() - started) / 1e6 };
  }

  return {
    scanMessage: (raw) => timed(() => decide(raw, () => parseMessage(raw, scan))),
    scanFile: (name, content) => timed(() => decide(content, async () => ({ leaves: [{ name, content }], partCount: 1 }))),
    async close() {},
  };
}

