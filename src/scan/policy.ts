/*
 * scan/policy — Backstop's own checks, which need no clamd: EICAR, banned
 * file names, executable content under any name, a SHA-256 blocklist, and
 * the same inside the containers we open ourselves — zip, gzip, bzip2 and
 * tar, recursively — within the configured limits.
 *
 * Pure over its inputs (bytes in, findings out). Every check runs on every
 * file, and every finding is returned, not only the first: the scanner
 * reports the worst (scan/verdict) and records them all. A limit that is hit
 * is an `unscannable` finding, never silence: a zip bomb is not a harmless
 * zip.
 *
 * What counts as "looked at" (the rule every container follows): a file is
 * checked when each check that applies could run on its bytes. So:
 *   - a zip entry compressed with a method nobody on the path opens (LZMA,
 *     PPMd, xz, zstd, …: archive.ts) is `unscannable`;
 *   - a zip entry in deflate64 or implode, which clamd opens and we do not,
 *     is left to clamd only when no check of ours needs its bytes (no
 *     bannedTypes, no blocklist, clamd configured); otherwise `unscannable`
 *     — the executable-type ban cannot be answered for bytes it never saw;
 *   - an encrypted entry is `banned` (password-protected archive);
 *   - a file that does not start with `PK` but ends with a zip's directory
 *     (self-extracting, or junk prepended to hide the archive) is opened
 *     like any zip;
 *   - containers we do not open (7z, rar, cab, iso, arj, cpio, chm, OLE,
 *     TNEF, …, sniffed by their exact magic) go to clamd whole, which opens
 *     them: their contents are clamd's to judge, and bannedTypes does not
 *     reach inside them. Only the types scan.clamdOpens names count as
 *     opened (Debian's clamd has no unrar); any other — and every one of
 *     them when no clamd is configured — is `unscannable`. That is the line
 *     between "tempfail": nobody could look, and "scanned": clamd could;
 *     making every 7z unscannable would tempfail much legitimate mail.
 *
 * Memory: a member up to maxBufferedEntryBytes is held whole (to recurse
 * into it and to hand it to clamd on its own); a larger one is streamed
 * through a hash and a sniff of its head and never held — if that head says
 * it is itself an archive, it is `unscannable` (we cannot open it without
 * holding it). Held members are handed to the scanner for clamd up to
 * maxBufferedEntryBytes in total per message.
 */
import { createHash } from 'node:crypto';
import { cleanText } from '../obs/clean.ts';
import {
  ArchiveLimitError,
  bunzip,
  capped,
  CLAMD_ONLY_METHODS,
  concat,
  gunzip,
  isEmbeddedZip,
  methodName,
  OPENED_METHODS,
  readDirectory,
  streamEntry,
  type ByteSink,
} from './archive.ts';
import { baseName, checkFileName } from './names.ts';
import { containerOf, foreignContainerOf, isEicar, sniff, type ForeignContainer, type SniffedType } from './sniff.ts';
import { banned, clean, infected, unscannable, verdictDetail, worst, type Concern, type Verdict } from './verdict.ts';

export interface PolicyLimits {
  maxArchiveDepth: number;
  maxArchiveEntries: number;
  maxExpansionRatio: number;
  maxExpandedBytes: number;
  /** Members up to this size are held whole; larger ones are streamed and never held (see the header). */
  maxBufferedEntryBytes: number;
}

export interface PolicySettings extends PolicyLimits {
  bannedExtensions: ReadonlySet<string>;
  /** Sniffed types refused under any name (scan.bannedTypes). */
  bannedTypes: ReadonlySet<SniffedType>;
  blocklist: ReadonlySet<string>;
  /** A clamd is configured: entries only clamd can open are left to it when no check of ours needs them. */
  clamd: boolean;
  /** Containers we do not open that clamd does (scan.clamdOpens); empty without clamd. */
  clamdOpens: ReadonlySet<ForeignContainer>;
}

export interface Leaf {
  /** The decoded file name, if the part had one. */
  name: string | null;
  content: Uint8Array;
  /** A message body (text/plain or text/html shown inline), as opposed to an attachment. */
  body?: boolean;
  /**
   * Other readings of the same part that clamd should see too, where our
   * decoder and the sender's may differ (postal-mime keeps the line break
   * before a quoted-printable part's delimiter: the file without it is the
   * one a hash signature names).
   */
  alternatives?: Uint8Array[];
}

export interface Member extends Leaf {
  part: string;
}

/** One check that failed, and on what. */
export interface Finding {
  verdict: Concern;
  /** Where: the part's file name, "message body", an archive path ("a.zip/b.exe"), "whole message". */
  part: string;
}

export interface Inspection {
  findings: Finding[];
  /** Archive members we opened and held, for clamd to see on their own; `part` is their path. */
  members: Member[];
}

/** Findings as the message record keeps them (store migration 0040): JSON, at most `max`, every string cleaned. */
export function recordFindings(findings: readonly Finding[], max = 50): string | null {
  if (findings.length === 0) return null;
  return JSON.stringify(
    findings.slice(0, max).map((f) => ({ verdict: f.verdict.kind, detail: cleanText(verdictDetail(f.verdict) ?? '', 300), part: cleanText(f.part, 200) })),
  );
}

/** The most serious finding's verdict (the first of equals), or clean. */
export function worstOf(findings: readonly Finding[]): Verdict {
  return findings.reduce<Verdict>((v, f) => worst(v, f.verdict), clean);
}

export function partLabel(leaf: Leaf): string {
  return leaf.name !== null ? cleanText(leaf.name, 120) : leaf.body ? 'message body' : 'unnamed part';
}

/**
 * uuencoded files inside a text body ("begin 644 name", or the begin-base64
 * form of GNU sharutils): the mail parser leaves them as text, but mail
 * clients and worms (Mydoom's kin among them) still use them. At most the
 * first 100 are looked at: the name check is cheap, the regex is linear.
 */
const UUENCODE_BEGIN = /^begin(?:-base64)? [0-7]{3,4} ([^\r\n]+)$/gm;

function checkBodyFiles(leaf: Leaf, walk: Walk, settings: PolicySettings): void {
  const text = Buffer.from(leaf.content.buffer, leaf.content.byteOffset, leaf.content.length).toString('latin1');
  const part = partLabel(leaf);
  if (text.includes('begin')) {
    let n = 0;
    for (const match of text.matchAll(UUENCODE_BEGIN)) {
      const failed = checkFileName(match[1]!.trim(), settings.bannedExtensions);
      if (failed) walk.findings.push({ verdict: banned(`${failed} uuencoded in the message body`), part });
      if (++n >= 100) break;
    }
  }
}

/** Files yEnc-encoded in a text (=ybegin … =yend, yEnc 1.3; multi-part =ypart lines are skipped, their data kept in order). */
export function yencFiles(text: string): { name: string; bytes: Uint8Array }[] {
  const files: { name: string; bytes: Uint8Array }[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const begin = /^=ybegin .*name=(.*)$/.exec(lines[i]!);
    if (!begin) continue;
    const out: number[] = [];
    for (i++; i < lines.length && !lines[i]!.startsWith('=yend'); i++) {
      const line = lines[i]!;
      if (line.startsWith('=ypart ')) continue;
      for (let j = 0; j < line.length; j++) {
        let c = line.charCodeAt(j);
        if (c === 0x3d && j + 1 < line.length) c = (line.charCodeAt(++j) - 64) & 0xff;
        out.push((c - 42) & 0xff);
      }
    }
    files.push({ name: begin[1]!.trim() || 'unnamed', bytes: Uint8Array.from(out) });
  }
  return files;
}

/** 7-Zip's AES-256 + SHA-256 coder id (7-Zip's Methods.txt: 06F10701). */
const SEVEN_ZIP_AES = Buffer.from([0x06, 0xf1, 0x07, 0x01]);

/**
 * True when a 7z archive's header (plain, or the packed header's own coder
 * list) names the AES coder: what clamd cannot open without the password.
 * A header that is itself LZMA-compressed hides its coders from this check;
 * clamd's AlertEncryptedArchive is the other half (scanner.clamdFinding).
 */
export function sevenZipEncrypted(bytes: Uint8Array): boolean {
  if (bytes.length < 32) return false;
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const offset = Number(b.readBigUInt64LE(12));
  const size = Number(b.readBigUInt64LE(20));
  const start = 32 + offset;
  if (!Number.isSafeInteger(start) || size <= 0 || size > 1024 * 1024 || start + size > b.length) return false;
  return b.subarray(start, start + size).includes(SEVEN_ZIP_AES);
}

/** Ratios are only meaningful for entries big enough to hurt; tiny CSVs compress 100:1 honestly. */
const RATIO_FLOOR_BYTES = 1024 * 1024;
/** Bytes of a streamed member kept for sniffing: PE headers (e_lfanew) sit well inside this. */
const HEAD_BYTES = 64 * 1024;

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** The worst finding of one leaf (for callers that want a single answer). */
export function checkLeaf(leaf: Leaf, settings: PolicySettings): Verdict {
  return worstOf(inspectLeaf(leaf, settings).findings);
}

/** Every built-in finding on one leaf and everything inside it; the archive members we held. */
export function inspectLeaf(leaf: Leaf, settings: PolicySettings, memberBudget = { bytes: settings.maxBufferedEntryBytes }): Inspection {
  const walk = new Walk(settings, memberBudget);
  walk.file(leaf.name, leaf.content, 0, partLabel(leaf), true);
  if (leaf.body) checkBodyFiles(leaf, walk, settings);
  return { findings: walk.findings, members: walk.members };
}

class Walk {
  readonly findings: Finding[] = [];
  readonly members: Member[] = [];
  /** Bytes expanded so far, over every archive in this leaf (scan.maxExpandedBytes). */
  private expanded = 0;
  constructor(
    private readonly settings: PolicySettings,
    private readonly memberBudget: { bytes: number },
  ) {}

  private add(verdict: Finding['verdict'], part: string): void {
    this.findings.push({ verdict, part });
  }

  /** A file decoded out of a text body (yEnc): a member at depth 0. */
  decoded(name: string, bytes: Uint8Array, part: string): void {
    this.member(name, bytes, 0, part);
  }

  /** A member we opened: checked here, and held for clamd while the budget lasts. */
  private member(name: string, bytes: Uint8Array, depth: number, part: string): void {
    if (bytes.length <= this.memberBudget.bytes) {
      this.memberBudget.bytes -= bytes.length;
      this.members.push({ name, content: bytes, part });
    }
    this.file(name, bytes, depth, part, false);
  }

  /** The checks on one file's bytes; `top`: a MIME leaf (its name is shown as the part's). */
  file(name: string | null, bytes: Uint8Array, depth: number, part: string, top: boolean): void {
    const s = this.settings;
    const shown = name === null ? 'unnamed part' : `"${cleanText(name, 80)}"`;
    if (isEicar(bytes)) this.add(infected('Eicar-Test-Signature', 'builtin'), part);
    if (s.blocklist.size > 0) {
      const digest = sha256(bytes);
      if (s.blocklist.has(digest)) this.add(banned(`blocklisted attachment (sha256 ${digest.slice(0, 16)}…)`), part);
    }
    if (name !== null && top) {
      const failed = checkFileName(name, s.bannedExtensions);
      if (failed) this.add(banned(failed), part);
    }
    const type = sniff(bytes);
    if (type !== null && s.bannedTypes.has(type)) this.add(banned(`executable content (${type}) in ${shown}`), part);
    const container = containerOf(bytes) ?? (type !== 'zip' && isEmbeddedZip(bytes) ? 'zip' : null);
    if (container === null) {
      const foreign = foreignContainerOf(bytes);
      // Neither we nor clamd can look inside: nobody has.
      if (foreign !== null && !s.clamdOpens.has(foreign)) this.add(unscannable(`${foreign} archive that neither Backstop nor clamd opens (${shown})`), part);
      if (foreign === '7z' && sevenZipEncrypted(bytes)) this.add(banned(`password-protected archive (${cleanText(name ?? 'archive', 80)})`), part);
      return;
    }
    const inner = depth + 1;
    const label = cleanText(name ?? 'archive', 80);
    if (inner > s.maxArchiveDepth) return this.add(unscannable(`archive limit: nested deeper than ${s.maxArchiveDepth} (${label})`), part);
    const before = this.findings.length;
    try {
      if (container === 'zip') this.zip(label, bytes, inner, part);
      else if (container === 'tar') this.tar(label, bytes, inner, part);
      else this.stream(name, bytes, container, inner, part);
    } catch (err) {
      this.add(unscannable(err instanceof ArchiveLimitError ? `archive limit: ${err.message} (${label})` : `damaged archive (${label})`), part);
    }
    // Findings inside say where: "… in outer.zip".
    for (let i = before; i < this.findings.length; i++) {
      const f = this.findings[i]!;
      if (f.verdict.kind === 'banned' && !f.verdict.test.endsWith(`(${label})`)) f.verdict = banned(`${f.verdict.test} in ${label}`);
    }
  }

  private budget(declared: number, compressed: number, label: string): number {
    const s = this.settings;
    this.expanded += declared;
    if (this.expanded > s.maxExpandedBytes) throw new ArchiveLimitError(`expands beyond ${s.maxExpandedBytes} bytes`);
    if (declared > RATIO_FLOOR_BYTES && declared > s.maxExpansionRatio * Math.max(1, compressed)) {
      throw new ArchiveLimitError(`expansion ratio over ${s.maxExpansionRatio}:1`);
    }
    return declared;
  }

  private zip(label: string, zip: Uint8Array, depth: number, part: string): void {
    const s = this.settings;
    const { entries } = readDirectory(zip, s.maxArchiveEntries);
    const open: typeof entries = [];
    // Every limit is checked on the declared sizes before a byte is inflated.
    for (const entry of entries) {
      if (entry.name.endsWith('/')) continue;
      const failed = checkFileName(entry.name, s.bannedExtensions);
      if (failed) this.add(banned(failed), `${part}/${cleanText(entry.name, 80)}`);
      if (entry.encrypted) {
        this.add(banned(`password-protected archive (${label})`), part);
        continue;
      }
      this.budget(entry.uncompressedSize, entry.compressedSize, label);
      if (OPENED_METHODS.has(entry.method)) open.push(entry);
      else if (!(CLAMD_ONLY_METHODS.has(entry.method) && s.clamd && s.bannedTypes.size === 0 && s.blocklist.size === 0)) {
        this.add(unscannable(`archive entry compressed with ${methodName(entry.method)}, which Backstop cannot open (${cleanText(entry.name, 80)} in ${label})`), part);
      }
    }
    for (const entry of open) {
      const name = baseName(entry.name);
      const where = `${part}/${cleanText(entry.name, 80)}`;
      // Declared sizes can lie: the cap on actual output is what the declaration promised (plus slack).
      const cap = Math.min(s.maxExpandedBytes, entry.uncompressedSize + 1024);
      this.entry(name, where, depth, cap, (sink) => void streamEntry(zip, entry, cap, sink));
    }
  }

  /**
   * One member, produced by `produce` into a sink: held whole when it is
   * small enough, else streamed through a hash and a sniff of its head.
   */
  private entry(name: string, where: string, depth: number, cap: number, produce: (sink: ByteSink) => void, sizeKnown = true): void {
    const s = this.settings;
    if (cap <= s.maxBufferedEntryBytes) {
      const chunks: Uint8Array[] = [];
      produce((c) => chunks.push(c.slice()));
      return this.member(name, concat(chunks), depth, where);
    }
    // A declared size over the limit: nothing is held (an entry that lied and is small is only sniffed, which is safe:
    // if it is an archive, it is unscannable). A gzip/bzip2 stream has no declared size: held until it passes the limit.
    let held: Uint8Array[] | null = sizeKnown ? null : [];
    let heldBytes = 0;
    const headChunks: Uint8Array[] = [];
    let headBytes = 0;
    const hash = s.blocklist.size > 0 ? createHash('sha256') : null;
    let total = 0;
    produce((chunk) => {
      total += chunk.length;
      hash?.update(chunk);
      if (headBytes < HEAD_BYTES) {
        const piece = chunk.slice(0, HEAD_BYTES - headBytes);
        headChunks.push(piece);
        headBytes += piece.length;
      }
      if (held === null) return;
      heldBytes += chunk.length;
      // Past the limit nothing more is held: the rest only passes through the hash.
      if (heldBytes > s.maxBufferedEntryBytes) held = null;
      else held.push(chunk.slice());
    });
    if (held !== null) return this.member(name, concat(held), depth, where); // a stream that stayed under the limit
    const head = concat(headChunks);
    const shown = `"${cleanText(name, 80)}"`;
    if (hash) {
      const digest = hash.digest('hex');
      if (s.blocklist.has(digest)) this.add(banned(`blocklisted attachment (sha256 ${digest.slice(0, 16)}…)`), where);
    }
    const type = sniff(head);
    if (type !== null && s.bannedTypes.has(type)) this.add(banned(`executable content (${type}) in ${shown}`), where);
    if (containerOf(head) !== null) {
      this.add(unscannable(`archive limit: archive entry ${shown} of ${total} bytes is larger than ${s.maxBufferedEntryBytes} bytes and itself an archive`), where);
    }
  }

  /** gzip and bzip2: one member, the name without its suffix. */
  private stream(name: string | null, bytes: Uint8Array, kind: 'gzip' | 'bzip2', depth: number, part: string): void {
    const s = this.settings;
    const inner = (name ?? 'archive').replace(kind === 'gzip' ? /\.(t?gz|gzip|z)$/i : /\.(t?bz2?|bzip2)$/i, (m) => (/^\.t/i.test(m) ? '.tar' : '')) || 'data';
    // What the recipient's unpacker will call it: "invoice.pdf.exe.gz" unpacks to a program.
    const failed = name === null ? null : checkFileName(inner, s.bannedExtensions);
    if (failed) this.add(banned(failed), part);
    const remaining = s.maxExpandedBytes - this.expanded;
    // No declared size to check first: the cap is the ratio's (above the floor) and the total budget.
    const cap = Math.min(remaining, Math.max(RATIO_FLOOR_BYTES, s.maxExpansionRatio * bytes.length));
    let produced = 0;
    this.entry(baseName(inner), `${part}/${cleanText(baseName(inner), 80)}`, depth, cap, (sink) => {
      const out = capped(cap, (c) => ((produced += c.length), sink(c)));
      try {
        (kind === 'gzip' ? gunzip : bunzip)(bytes, out.push);
      } catch (err) {
        if (err instanceof ArchiveLimitError && /expands beyond/.test(err.message)) {
          throw new ArchiveLimitError(cap === remaining ? `expands beyond ${s.maxExpandedBytes} bytes` : `expansion ratio over ${s.maxExpansionRatio}:1`);
        }
        throw err;
      }
    }, false);
    this.expanded += produced;
  }

  /** POSIX ustar / GNU tar: 512-byte headers, octal sizes; regular files are members. */
  private tar(label: string, tar: Uint8Array, depth: number, part: string): void {
    const s = this.settings;
    let longName: string | null = null;
    let count = 0;
    for (let p = 0; p + 512 <= tar.length; ) {
      const header = tar.subarray(p, p + 512);
      if (header.every((b) => b === 0)) break;
      const text = (o: number, n: number) => Buffer.from(header.subarray(o, o + n)).toString('utf8').replace(/\0.*$/s, '');
      const sizeField = text(124, 12).trim();
      if (!/^[0-7]*$/.test(sizeField)) throw new ArchiveLimitError('malformed tar header');
      const size = sizeField === '' ? 0 : parseInt(sizeField, 8);
      const type = String.fromCharCode(header[156]!);
      const prefix = text(257, 6).startsWith('ustar') ? text(345, 155) : '';
      let name = longName ?? (prefix ? `${prefix}/${text(0, 100)}` : text(0, 100));
      longName = null;
      const start = p + 512;
      if (start + size > tar.length) throw new ArchiveLimitError('truncated tar archive');
      const data = tar.subarray(start, start + size);
      p = start + Math.ceil(size / 512) * 512;
      if (type === 'L') {
        longName = Buffer.from(data).toString('utf8').replace(/\0.*$/s, '');
        continue;
      }
      if (type !== '0' && type !== '\0' && type !== '7') continue; // directories, links, pax headers: no content
      if (++count > s.maxArchiveEntries) throw new ArchiveLimitError(`more than ${s.maxArchiveEntries} entries in one archive`);
      name = name || 'unnamed';
      const where = `${part}/${cleanText(name, 80)}`;
      const failed = checkFileName(name, s.bannedExtensions);
      if (failed) this.add(banned(failed), where);
      this.budget(size, size, label);
      this.entry(baseName(name), where, depth, size, (sink) => sink(data));
    }
  }
}
