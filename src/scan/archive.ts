/*
 * scan/archive — look inside zip archives without trusting them.
 *
 * The central directory is read by hand (a few dozen lines of a documented
 * format, PKWARE APPNOTE 4.3.12/4.3.16) because every limit must be checked
 * BEFORE anything is inflated: entry count, declared sizes, total expansion,
 * encryption flags. Only then are entries inflated, with fflate, fed in small
 * slices so that a lying size field cannot make one call allocate a gigabyte.
 * Never trusts a size, an offset or a name in the archive.
 */
import { Inflate } from 'fflate';

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
const ZIP64_LOCATOR = 0x07064b50;
const ZIP64_EOCD = 0x06064b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;

function u16(b: Uint8Array, o: number): number {
  return b[o]! | (b[o + 1]! << 8);
}
function u32(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}
function u64(b: Uint8Array, o: number): number {
  return u32(b, o) + u32(b, o + 4) * 2 ** 32;
}

/** Reads the central directory; throws ArchiveLimitError when the archive is malformed or over maxEntries. */
export function readCentralDirectory(zip: Uint8Array, maxEntries: number): ZipEntry[] {
  if (zip.length < 22) throw new ArchiveLimitError('truncated zip archive');
  let eocd = -1;
  for (let i = zip.length - 22; i >= Math.max(0, zip.length - 22 - 65535); i--) {
    if (u32(zip, i) === EOCD) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new ArchiveLimitError('zip archive without a central directory');
  let count = u16(zip, eocd + 10);
  let offset = u32(zip, eocd + 16);
  if ((count === 0xffff || offset === 0xffffffff) && eocd >= 20 && u32(zip, eocd - 20) === ZIP64_LOCATOR) {
    const z64 = Number(u64(zip, eocd - 20 + 8));
    if (z64 + 56 > zip.length || u32(zip, z64) !== ZIP64_EOCD) throw new ArchiveLimitError('malformed zip64 archive');
    count = u64(zip, z64 + 32);
    offset = u64(zip, z64 + 48);
  }
  if (count > maxEntries) throw new ArchiveLimitError(`more than ${maxEntries} entries in one archive`);
  const entries: ZipEntry[] = [];
  let p = offset;
  for (let n = 0; n < count; n++) {
    if (p + 46 > zip.length || u32(zip, p) !== CENTRAL) throw new ArchiveLimitError('malformed zip central directory');
    const flags = u16(zip, p + 8);
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
      const size = u16(zip, e + 2);
      if (id === 0x0001) {
        let q = e + 4;
        if (uncompressedSize === 0xffffffff) (uncompressedSize = u64(zip, q)), (q += 8);
        if (compressedSize === 0xffffffff) (compressedSize = u64(zip, q)), (q += 8);
        if (localHeaderOffset === 0xffffffff) localHeaderOffset = u64(zip, q);
      }
      e += 4 + size;
    }
    entries.push({ name, encrypted: (flags & 1) === 1, method: u16(zip, p + 10), compressedSize, uncompressedSize, localHeaderOffset });
    p += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

/**
 * The entry's bytes, inflated with a hard cap on output. Returns null for
 * compression methods we do not inflate (left to clamd, which knows them).
 */
export function extractEntry(zip: Uint8Array, entry: ZipEntry, maxBytes: number): Uint8Array | null {
  const p = entry.localHeaderOffset;
  if (p + 30 > zip.length || u32(zip, p) !== LOCAL) throw new ArchiveLimitError('malformed zip local header');
  const start = p + 30 + u16(zip, p + 26) + u16(zip, p + 28);
  const data = zip.subarray(start, Math.min(zip.length, start + entry.compressedSize));
  if (entry.method === 0) {
    if (data.length > maxBytes) throw new ArchiveLimitError(`entry expands beyond ${maxBytes} bytes`);
    return data;
  }
  if (entry.method !== 8) return null;
  const chunks: Uint8Array[] = [];
  let total = 0;
  let overflow = false;
  const inflater = new Inflate((chunk) => {
    total += chunk.length;
    if (total > maxBytes) overflow = true;
    else chunks.push(chunk);
  });
  const SLICE = 16 * 1024; // deflate expands at most ~1032:1, so one slice yields at most ~16 MB
  try {
    for (let o = 0; o < data.length && !overflow; o += SLICE) inflater.push(data.subarray(o, o + SLICE), o + SLICE >= data.length);
  } catch (err) {
    // fflate throws a plain Error on a corrupt stream ("invalid length/literal"); to the callers a damaged entry is one more malformed archive (found by test/fuzz).
    throw new ArchiveLimitError(`damaged deflate data (${(err as Error).message})`);
  }
  if (overflow) throw new ArchiveLimitError(`entry expands beyond ${maxBytes} bytes`);
  const out = new Uint8Array(total);
  let o = 0;
  for (const c of chunks) out.set(c, o), (o += c.length);
  return out;
}
