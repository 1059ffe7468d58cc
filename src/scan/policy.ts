/*
 * scan/policy — Backstop's own checks, which need no clamd: EICAR, banned
 * file names, executable content under any name, a SHA-256 blocklist, and
 * the same inside zip archives, recursively, within the configured limits.
 *
 * Pure over its inputs (bytes in, verdict out). A limit that is hit makes the
 * file `unscannable`, never clean: a zip bomb is not a harmless zip. Zip
 * entries compressed with a method other than stored/deflate are checked by
 * name only; their content is left to clamd (which unpacks far more formats).
 */
import { createHash } from 'node:crypto';
import { cleanText } from '../obs/clean.ts';
import { ArchiveLimitError, extractEntry, readCentralDirectory } from './archive.ts';
import { baseName, checkFileName } from './names.ts';
import { isEicar, sniff, type SniffedType } from './sniff.ts';
import { banned, clean, infected, unscannable, worst, type Verdict } from './verdict.ts';

export interface PolicyLimits {
  maxArchiveDepth: number;
  maxArchiveEntries: number;
  maxExpansionRatio: number;
  maxExpandedBytes: number;
}

export interface PolicySettings extends PolicyLimits {
  bannedExtensions: ReadonlySet<string>;
  /** Sniffed types refused under any name (scan.bannedTypes). */
  bannedTypes: ReadonlySet<SniffedType>;
  blocklist: ReadonlySet<string>;
}

export interface Leaf {
  /** The decoded file name, if the part had one. */
  name: string | null;
  content: Uint8Array;
  /** A message body (text/plain or text/html shown inline), as opposed to an attachment. */
  body?: boolean;
}

/**
 * uuencoded files inside a text body ("begin 644 name", or the begin-base64
 * form of GNU sharutils): the mail parser leaves them as text, but mail
 * clients and worms (Mydoom's kin among them) still use them. At most the
 * first 100 are looked at: the name check is cheap, the regex is linear.
 */
const UUENCODE_BEGIN = /^begin(?:-base64)? [0-7]{3,4} ([^\r\n]+)$/gm;

function checkBodyFiles(leaf: Leaf, settings: PolicySettings): Verdict {
  const text = Buffer.from(leaf.content.buffer, leaf.content.byteOffset, leaf.content.length).toString('utf8');
  if (!text.includes('begin')) return clean;
  let n = 0;
  for (const match of text.matchAll(UUENCODE_BEGIN)) {
    const failed = checkFileName(match[1]!.trim(), settings.bannedExtensions);
    if (failed) return banned(`${failed} uuencoded in the message body`);
    if (++n >= 100) break;
  }
  return clean;
}

/** Ratios are only meaningful for entries big enough to hurt; tiny CSVs compress 100:1 honestly. */
const RATIO_FLOOR_BYTES = 1024 * 1024;

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export function checkLeaf(leaf: Leaf, settings: PolicySettings): Verdict {
  const verdict = checkFile(leaf.name, leaf.content, settings, 0, { expanded: 0 });
  return leaf.body && verdict.kind === 'clean' ? checkBodyFiles(leaf, settings) : verdict;
}

function checkFile(name: string | null, bytes: Uint8Array, settings: PolicySettings, depth: number, budget: { expanded: number }): Verdict {
  const shown = name === null ? 'unnamed part' : `"${cleanText(name, 80)}"`;
  if (isEicar(bytes)) return infected('Eicar-Test-Signature', 'builtin');
  if (settings.blocklist.size > 0) {
    const digest = sha256(bytes);
    if (settings.blocklist.has(digest)) return banned(`blocklisted attachment (sha256 ${digest.slice(0, 16)}…)`);
  }
  if (name !== null) {
    const failed = checkFileName(name, settings.bannedExtensions);
    if (failed) return banned(failed);
  }
  const type = sniff(bytes);
  if (type !== null && settings.bannedTypes.has(type)) return banned(`executable content (${type}) in ${shown}`);
  if (type === 'zip') return checkZip(name, bytes, settings, depth + 1, budget);
  return clean;
}

function checkZip(name: string | null, zip: Uint8Array, settings: PolicySettings, depth: number, budget: { expanded: number }): Verdict {
  const shown = cleanText(name ?? 'archive', 80);
  if (depth > settings.maxArchiveDepth) return unscannable(`archive limit: nested deeper than ${settings.maxArchiveDepth} (${shown})`);
  let verdict: Verdict = clean;
  try {
    const entries = readCentralDirectory(zip, settings.maxArchiveEntries);
    // Every limit is checked on the declared sizes before a byte is inflated.
    for (const entry of entries) {
      if (entry.encrypted) return banned(`password-protected archive (${shown})`);
      budget.expanded += entry.uncompressedSize;
      if (budget.expanded > settings.maxExpandedBytes) return unscannable(`archive limit: expands beyond ${settings.maxExpandedBytes} bytes (${shown})`);
      if (entry.uncompressedSize > RATIO_FLOOR_BYTES && entry.uncompressedSize > settings.maxExpansionRatio * Math.max(1, entry.compressedSize)) {
        return unscannable(`archive limit: expansion ratio over ${settings.maxExpansionRatio}:1 (${shown})`);
      }
      const failed = entry.name.endsWith('/') ? null : checkFileName(entry.name, settings.bannedExtensions);
      if (failed) return banned(`${failed} in ${shown}`);
    }
    for (const entry of entries) {
      if (entry.name.endsWith('/')) continue;
      // Declared sizes can lie: the cap on actual output is what the declaration promised (plus slack).
      const bytes = extractEntry(zip, entry, Math.min(settings.maxExpandedBytes, entry.uncompressedSize + 1024));
      if (bytes === null) continue; // a method we do not inflate: clamd unpacks it
      const inner = checkFile(baseName(entry.name), bytes, settings, depth, budget);
      if (inner.kind !== 'clean') {
        verdict = worst(verdict, inner.kind === 'banned' ? banned(`${inner.test} in ${shown}`) : inner);
        if (verdict.kind === 'infected' || verdict.kind === 'banned') return verdict;
      }
    }
  } catch (err) {
    if (err instanceof ArchiveLimitError) return unscannable(`archive limit: ${err.message} (${shown})`);
    return unscannable(`damaged archive (${shown})`);
  }
  return verdict;
}
