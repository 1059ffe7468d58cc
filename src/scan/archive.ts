/*
 * scan/archive — look inside zip archives (and gzip/bzip2 streams) without trusting them.
 *
 * The central directory is read by hand (a few dozen lines of a documented
 * format, PKWARE APPNOTE 4.3.12/4.3.16) because every limit must be checked
 * BEFORE anything is inflated: entry count, declared sizes, total expansion,
 * encryption flags. Only then are entries inflated — deflate with fflate,
 * bzip2 (method 12) with seek-bzip — fed in small slices and streamed to a
 * sink, so that a lying size field cannot make one call allocate a gigabyte
 * and a 200 MB entry is never held whole just to be sniffed and hashed.
 *
 * Offsets are taken relative to the end of central directory record, not to
 * byte 0: a self-extracting or prefixed archive (bytes before the first
 * `PK\3\4`) has every stored offset short by the prefix's length, and
 * readers that do not correct for it (ours did) see a damaged zip — or none
 * at all — where clamd and unzip see the files.
 *
 * Compression methods are a closed list: stored, deflate and bzip2 are
 * opened here; deflate64 and implode are opened by clamd but not here; every
 * other method (LZMA, PPMd, xz, zstd, AES, …) is opened by nobody on the
 * path and the scanner must call the entry `unscannable`.
 * fflate and seek-bzip are loaded on the first archive that needs them (the
 * code here is synchronous, so by require): `backstop scan` on a file without
 * one starts without them.
 * Never trusts a size, an offset or a name in the archive.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
let fflate: typeof import('fflate') | undefined;
const inflaters = () => (fflate ??= require('fflate') as typeof import('fflate'));
let seekBzip: typeof import('seek-bzip').default | undefined;
const bzip2 = () => (seekBzip ??= require('seek-bzip') as typeof import('seek-bzip').default);

export interface ZipEntry {
  name: string;
  encrypted: boolean;
  method: number;
  compressedSize: number;
  uncompressedSize: number;
  localHeaderOffset: number;
}

export class ArchiveLimitError extends Error {}

const EOCD = 0x06054b50;
/** EOCD as it is on disk (little-endian): PK\5\6. */
const EOCD_BYTES = Buffer.from([0x50, 0x4b, 0x05, 0x06]);
const ZIP64_LOCATOR = 0x07064b50;
const ZIP64_EOCD = 0x06064b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;

/** Methods this reader inflates (APPNOTE 4.4.5). */
export const OPENED_METHODS: ReadonlySet<number> = new Set([0, 8, 12]);
/** Methods clamd's unzip opens but this reader does not: implode (6), deflate64 (9). */
export const CLAMD_ONLY_METHODS: ReadonlySet<number> = new Set([6, 9]);
/** Method 99: WinZip AES (the entry is encrypted whatever the flags say). */
const AES = 99;

const METHOD_NAMES: Record<number, string> = {
  1: 'shrink', 2: 'reduce', 3: 'reduce', 4: 'reduce', 5: 'reduce', 6: 'implode', 9: 'deflate64', 10: 'PKWARE DCL implode',
  14: 'LZMA', 18: 'IBM TERSE', 19: 'IBM LZ77', 20: 'zstd', 93: 'zstd', 94: 'MP3', 95: 'xz', 96: 'JPEG', 97: 'WavPack', 98: 'PPMd',
};
export function methodName(method: number): string {
  return METHOD_NAMES[method] ?? `method ${method}`;
}

function u16(b: Uint8Array, o: number): number {
  return b[o]! | (b[o + 1]! << 8);
}
function u32(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}
function u64(b: Uint8Array, o: number): number {
  return u32(b, o) + u32(b, o + 4) * 2 ** 32;
}

/**
 * Where the end of central directory record is, or -1. `strict`: only a
 * record whose comment ends exactly at the end of the file counts — used to
 * recognise a zip that does not start with `PK` (a prefixed or
 * self-extracting one) without calling every file with "PK\5\6" in its last
 * 64 KiB an archive.
 */
export function findEndOfCentralDirectory(zip: Uint8Array, strict = false): number {
  if (zip.length < 22) return -1;
  // Buffer.lastIndexOf (native) finds the same candidates, last first, as a byte loop from the end would:
  // every member of every archive is asked this (isEmbeddedZip), an outbreak's worm copies included.
  const buf = Buffer.from(zip.buffer, zip.byteOffset, zip.byteLength);
  const lowest = Math.max(0, zip.length - 22 - 65535);
  for (let i = buf.lastIndexOf(EOCD_BYTES, zip.length - 22); i >= lowest; i = i > 0 ? buf.lastIndexOf(EOCD_BYTES, i - 1) : -1) {
    if (!strict || i + 22 + u16(zip, i + 20) === zip.length) return i;
  }
  return -1;
}

/**
 * True when the bytes hold a zip whose central directory is where its end
 * record says (directly, or shifted by a prefix): what makes a file that
 * does not start with `PK\3\4` an archive worth opening.
 */
export function isEmbeddedZip(zip: Uint8Array): boolean {
  const eocd = findEndOfCentralDirectory(zip, true);
  if (eocd < 0) return false;
  const size = u32(zip, eocd + 12);
  const offset = u32(zip, eocd + 16);
  const shift = eocd - size - offset;
  return u16(zip, eocd + 10) > 0 && shift >= 0 && offset + shift + 4 <= zip.length && u32(zip, offset + shift) === CENTRAL;
}

export interface CentralDirectory {
  entries: ZipEntry[];
  /** Bytes before the archive proper (a self-extractor's stub, a prefix): added to every stored offset. */
  shift: number;
}

/** Reads the central directory; throws ArchiveLimitError when the archive is malformed or over maxEntries. */
export function readCentralDirectory(zip: Uint8Array, maxEntries: number): ZipEntry[] {
  return readDirectory(zip, maxEntries).entries;
}

export function readDirectory(zip: Uint8Array, maxEntries: number): CentralDirectory {
  if (zip.length < 22) throw new ArchiveLimitError('truncated zip archive');
  const eocd = findEndOfCentralDirectory(zip);
  if (eocd < 0) throw new ArchiveLimitError('zip archive without a central directory');
  let count = u16(zip, eocd + 10);
  let size = u32(zip, eocd + 12);
  let offset = u32(zip, eocd + 16);
  let end = eocd; // where the central directory must end
  if ((count === 0xffff || offset === 0xffffffff || size === 0xffffffff) && eocd >= 20 && u32(zip, eocd - 20) === ZIP64_LOCATOR) {
    const declared = Number(u64(zip, eocd - 20 + 8));
    // The locator's offset is short by the prefix too: the zip64 record sits right before the locator.
    const z64 = u32(zip, declared) === ZIP64_EOCD ? declared : eocd - 20 - 56;
    if (z64 < 0 || z64 + 56 > zip.length || u32(zip, z64) !== ZIP64_EOCD) throw new ArchiveLimitError('malformed zip64 archive');
    count = u64(zip, z64 + 32);
    size = u64(zip, z64 + 40);
    offset = u64(zip, z64 + 48);
    end = z64;
  }
  if (count > maxEntries) throw new ArchiveLimitError(`more than ${maxEntries} entries in one archive`);
  // The directory ends where the end record starts: anything before the stored offset's place is a prefix.
  let shift = 0;
  if (!(offset + 4 <= zip.length && u32(zip, offset) === CENTRAL) || count === 0) {
    const moved = end - size - offset;
    if (moved > 0 && offset + moved + 4 <= zip.length && u32(zip, offset + moved) === CENTRAL) shift = moved;
  }
  const entries: ZipEntry[] = [];
  let p = offset + shift;
  for (let n = 0; n < count; n++) {
    if (p + 46 > zip.length || u32(zip, p) !== CENTRAL) throw new ArchiveLimitError('malformed zip central directory');
    const flags = u16(zip, p + 8);
    const method = u16(zip, p + 10);
    const nameLength = u16(zip, p + 28);
    const extraLength = u16(zip, p + 30);
    const commentLength = u16(zip, p + 32);
    let compressedSize = u32(zip, p + 20);
    let uncompressedSize = u32(zip, p + 24);
    let localHeaderOffset = u32(zip, p + 42);
    if (p + 46 + nameLength + extraLength > zip.length) throw new ArchiveLimitError('malformed zip central directory');
    const name = new TextDecoder('utf-8').decode(zip.subarray(p + 46, p + 46 + nameLength));
    // ZIP64 extended information extra field (id 0x0001) carries the real sizes.
    for (let e = p + 46 + nameLength; e + 4 <= p + 46 + nameLength + extraLength; ) {
      const id = u16(zip, e);
      const length = u16(zip, e + 2);
      if (id === 0x0001) {
        let q = e + 4;
        if (uncompressedSize === 0xffffffff) (uncompressedSize = u64(zip, q)), (q += 8);
        if (compressedSize === 0xffffffff) (compressedSize = u64(zip, q)), (q += 8);
        if (localHeaderOffset === 0xffffffff) localHeaderOffset = u64(zip, q);
      }
      e += 4 + length;
    }
    // Bit 0: encrypted; bit 6: strong encryption; method 99: AES (APPNOTE 4.4.4, appendix E).
    const encrypted = (flags & 0x41) !== 0 || method === AES;
    entries.push({ name, encrypted, method, compressedSize, uncompressedSize, localHeaderOffset: localHeaderOffset + shift });
    p += 46 + nameLength + extraLength + commentLength;
  }
  return { entries, shift };
}

/** Receives an entry's bytes as they are inflated; never the whole entry at once unless it is small. */
export type ByteSink = (chunk: Uint8Array) => void;

/** Compressed input is pushed in slices this big: deflate expands at most ~1032:1, so one push yields at most ~4 MB. */
const SLICE = 4 * 1024;

/** A sink that counts and stops the decoder (by throwing) past maxBytes. */
function capped(maxBytes: number, sink: ByteSink): { push: ByteSink; total: () => number } {
  let total = 0;
  return {
    push(chunk) {
      total += chunk.length;
      if (total > maxBytes) throw new ArchiveLimitError(`entry expands beyond ${maxBytes} bytes`);
      sink(chunk);
    },
    total: () => total,
  };
}

/** The entry's compressed bytes (after its local header). */
function entryData(zip: Uint8Array, entry: ZipEntry): Uint8Array {
  const p = entry.localHeaderOffset;
  if (p + 30 > zip.length || u32(zip, p) !== LOCAL) throw new ArchiveLimitError('malformed zip local header');
  const start = p + 30 + u16(zip, p + 26) + u16(zip, p + 28);
  return zip.subarray(start, Math.min(zip.length, start + entry.compressedSize));
}

/**
 * Streams the entry's bytes into `sink`, with a hard cap on output. Returns
 * false for compression methods this reader does not open (the caller
 * decides what that means: OPENED_METHODS, CLAMD_ONLY_METHODS).
 */
export function streamEntry(zip: Uint8Array, entry: ZipEntry, maxBytes: number, sink: ByteSink): boolean {
  if (!OPENED_METHODS.has(entry.method)) return false;
  const data = entryData(zip, entry);
  const out = capped(maxBytes, sink);
  if (entry.method === 0) {
    for (let o = 0; o < data.length; o += 64 * 1024) out.push(data.subarray(o, o + 64 * 1024));
    return true;
  }
  if (entry.method === 8) {
    const inflater = new (inflaters().Inflate)((chunk) => out.push(chunk));
    try {
      for (let o = 0; o < data.length; o += SLICE) inflater.push(data.subarray(o, o + SLICE), o + SLICE >= data.length);
      if (data.length === 0) inflater.push(new Uint8Array(0), true);
    } catch (err) {
      if (err instanceof ArchiveLimitError) throw err;
      // fflate throws a plain Error on a corrupt stream ("invalid length/literal"); to the callers a damaged entry is one more malformed archive (found by test/fuzz).
      throw new ArchiveLimitError(`damaged deflate data (${(err as Error).message})`);
    }
    return true;
  }
  bunzip(data, out.push);
  return true;
}

/** The entry's bytes, whole (for entries small enough to hold); null for a method this reader does not open. */
export function extractEntry(zip: Uint8Array, entry: ZipEntry, maxBytes: number): Uint8Array | null {
  const chunks: Uint8Array[] = [];
  if (!streamEntry(zip, entry, maxBytes, (c) => chunks.push(c.slice()))) return null;
  return concat(chunks);
}

export function concat(chunks: Uint8Array[]): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let o = 0;
  for (const c of chunks) out.set(c, o), (o += c.length);
  return out;
}

/**
 * bzip2 (every stream of a multi-stream file) into `sink`, 64 KiB at a
 * time. seek-bzip decodes a byte at a time into an output stream; reading
 * past the input's end is an error here, not the endless zeros its default
 * input would give.
 */
export function bunzip(data: Uint8Array, sink: ByteSink): void {
  const buffer = new Uint8Array(64 * 1024);
  let fill = 0;
  let pos = 0;
  const input = {
    readByte: () => {
      if (pos >= data.length) throw new ArchiveLimitError('truncated bzip2 stream');
      return data[pos++]!;
    },
    read(target: Uint8Array, offset: number, length: number) {
      let n = 0;
      while (n < length && pos < data.length) target[offset + n++] = data[pos++]!;
      return n === 0 ? -1 : n;
    },
    seek: (p: number) => void (pos = p),
    eof: () => pos >= data.length,
  };
  const output = {
    writeByte(b: number) {
      buffer[fill++] = b;
      if (fill === buffer.length) {
        sink(buffer.slice());
        fill = 0;
      }
    },
    write(bytes: Uint8Array, offset: number, length: number) {
      for (let i = 0; i < length; i++) this.writeByte(bytes[offset + i]!);
      return length;
    },
    flush() {},
  };
  try {
    bzip2().decode(input, output, true);
  } catch (err) {
    if (err instanceof ArchiveLimitError) throw err;
    throw new ArchiveLimitError(`damaged bzip2 stream: ${(err as Error).message}`);
  }
  if (fill > 0) sink(buffer.slice(0, fill));
}

/** gzip (RFC 1952, every member) into `sink`, streamed with fflate's bounded window. */
export function gunzip(data: Uint8Array, sink: ByteSink): void {
  let ended = false;
  const inflater = new (inflaters().Gunzip)((chunk, final) => {
    sink(chunk);
    if (final) ended = true;
  });
  try {
    for (let o = 0; o < data.length; o += SLICE) inflater.push(data.subarray(o, o + SLICE), o + SLICE >= data.length);
  } catch (err) {
    if (err instanceof ArchiveLimitError) throw err;
    throw new ArchiveLimitError(`damaged gzip stream: ${(err as Error).message}`);
  }
  if (!ended) throw new ArchiveLimitError('truncated gzip stream');
}

export { capped };
