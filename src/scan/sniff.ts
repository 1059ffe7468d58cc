/*
 * scan/sniff — what a file really is, from its first bytes, whatever its name
 * and Content-Type claim. Pure; reads at most the first few hundred bytes.
 *
 * Only the types the policy acts on, and each test is strict enough that a
 * text file which happens to start with "MZ" is not called a program: a
 * false "executable content" refuses legitimate mail.
 */
export type SniffedType = 'PE' | 'MS-DOS' | 'ELF' | 'Mach-O' | 'LNK' | 'zip' | null;

function u16le(b: Uint8Array, o: number): number {
  return b[o]! | (b[o + 1]! << 8);
}
function u32le(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}
function u32be(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

/** MS Shell Link header: size 0x4C, then CLSID 00021401-0000-0000-C000-000000000046 ([MS-SHLLINK] 2.1). */
const LNK_HEADER = [0x4c, 0, 0, 0, 0x01, 0x14, 0x02, 0x00, 0, 0, 0, 0, 0xc0, 0, 0, 0, 0, 0, 0, 0x46];

export function sniff(bytes: Uint8Array): SniffedType {
  const n = bytes.length;
  if (n >= 2 && bytes[0] === 0x4d && bytes[1] === 0x5a) {
    // "MZ". A PE file has "PE\0\0" where e_lfanew (offset 0x3C) points.
    if (n >= 0x40) {
      const lfanew = u32le(bytes, 0x3c);
      if (lfanew + 4 <= n && u32le(bytes, lfanew) === 0x00004550) return 'PE';
    }
    // A plain DOS executable: a header of at least the 0x1C bytes of fields,
    // its size in paragraphs (e_cparhdr) inside the file, and the relocation
    // table (e_lfarlc) after the fields. ASCII text after "MZ" fails these.
    if (n >= 0x1c) {
      const headerBytes = u16le(bytes, 8) * 16;
      const relocations = u16le(bytes, 0x18);
      if (headerBytes >= 0x1c && headerBytes <= n && relocations >= 0x1c && relocations <= headerBytes) return 'MS-DOS';
    }
  }
  if (n >= 4 && bytes[0] === 0x7f && bytes[1] === 0x45 && bytes[2] === 0x4c && bytes[3] === 0x46) return 'ELF';
  if (n >= 8) {
    const magic = u32be(bytes, 0);
    if (magic === 0xfeedface || magic === 0xfeedfacf || magic === 0xcefaedfe || magic === 0xcffaedfe) return 'Mach-O';
    // Universal (fat) Mach-O shares 0xCAFEBABE with Java class files; a class
    // file has its major version (>= 45) there, a fat binary its few architectures.
    if (magic === 0xcafebabe && u32be(bytes, 4) > 0 && u32be(bytes, 4) < 20) return 'Mach-O';
    if (magic === 0x504b0304 || magic === 0x504b0506) return 'zip'; // "PK\3\4" local header, or an empty archive
  }
  if (n >= LNK_HEADER.length && LNK_HEADER.every((b, i) => bytes[i] === b)) return 'LNK';
  return null;
}

export type Container = 'zip' | 'gzip' | 'bzip2' | 'tar';

/**
 * The containers scan/policy opens itself, by their magic: a zip local
 * header (or an empty zip's end record), gzip's 1F 8B 08 (RFC 1952, deflate
 * is its only method), bzip2's "BZh1".."BZh9" and its block or end-of-stream
 * magic, a POSIX/GNU tar header ("ustar" at 257). A zip that does not start
 * with `PK` is recognised from its end (archive.isEmbeddedZip).
 */
export function containerOf(bytes: Uint8Array): Container | null {
  const n = bytes.length;
  if (n >= 4 && bytes[0] === 0x50 && bytes[1] === 0x4b && ((bytes[2] === 3 && bytes[3] === 4) || (bytes[2] === 5 && bytes[3] === 6))) return 'zip';
  if (n >= 10 && bytes[0] === 0x1f && bytes[1] === 0x8b && bytes[2] === 8) return 'gzip';
  if (n >= 10 && bytes[0] === 0x42 && bytes[1] === 0x5a && bytes[2] === 0x68 && bytes[3]! >= 0x31 && bytes[3]! <= 0x39) {
    const magic = Buffer.from(bytes.buffer, bytes.byteOffset + 4, 6).toString('hex');
    if (magic === '314159265359' || magic === '177245385090') return 'bzip2';
  }
  if (n >= 512 && Buffer.from(bytes.buffer, bytes.byteOffset + 257, 5).toString('latin1') === 'ustar') return 'tar';
  return null;
}

/** Containers we do not open ourselves; clamd opens them when its build does (scan.clamdOpens). */
export type ForeignContainer = '7z' | 'rar' | 'cab' | 'iso' | 'xz' | 'arj' | 'lzh' | 'cpio' | 'ole' | 'tnef' | 'chm';
export const FOREIGN_CONTAINERS: readonly ForeignContainer[] = ['7z', 'rar', 'cab', 'iso', 'xz', 'arj', 'lzh', 'cpio', 'ole', 'tnef', 'chm'];

const at = (bytes: Uint8Array, offset: number, magic: readonly number[]) => bytes.length >= offset + magic.length && magic.every((b, i) => bytes[offset + i] === b);

/** Exact magic numbers only: a false match here makes legitimate mail unscannable. */
export function foreignContainerOf(bytes: Uint8Array): ForeignContainer | null {
  if (at(bytes, 0, [0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c])) return '7z';
  if (at(bytes, 0, [0x52, 0x61, 0x72, 0x21, 0x1a, 0x07])) return 'rar'; // "Rar!\x1a\x07", then 00 (RAR 4) or 01 00 (RAR 5)
  if (at(bytes, 0, [0x4d, 0x53, 0x43, 0x46, 0, 0, 0, 0])) return 'cab';
  if (at(bytes, 0x8001, [0x43, 0x44, 0x30, 0x30, 0x31])) return 'iso'; // "CD001", ISO 9660 primary volume descriptor
  if (at(bytes, 0, [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) return 'xz';
  if (at(bytes, 0, [0x60, 0xea])) return 'arj';
  if (bytes.length >= 7 && bytes[2] === 0x2d && bytes[3] === 0x6c && bytes[4] === 0x68 && bytes[6] === 0x2d) return 'lzh'; // "-lh?-"
  if (at(bytes, 0, [0x30, 0x37, 0x30, 0x37, 0x30]) || at(bytes, 0, [0xc7, 0x71]) || at(bytes, 0, [0x71, 0xc7])) return 'cpio';
  if (at(bytes, 0, [0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1])) return 'ole';
  if (at(bytes, 0, [0x78, 0x9f, 0x3e, 0x22])) return 'tnef';
  if (at(bytes, 0, [0x49, 0x54, 0x53, 0x46])) return 'chm'; // "ITSF"
  return null;
}

const EICAR = Buffer.from('X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*');

/**
 * The EICAR test file: the 68-byte string at the start of the file, followed
 * by at most whitespace, 128 bytes in all (the EICAR standard's own rule).
 */
export function isEicar(bytes: Uint8Array): boolean {
  if (bytes.length < EICAR.length || bytes.length > 128) return false;
  if (!Buffer.from(bytes.buffer, bytes.byteOffset, EICAR.length).equals(EICAR)) return false;
  for (let i = EICAR.length; i < bytes.length; i++) {
    const c = bytes[i]!;
    if (c !== 0x20 && c !== 0x09 && c !== 0x0d && c !== 0x0a && c !== 0x1a) return false;
  }
  return true;
}
