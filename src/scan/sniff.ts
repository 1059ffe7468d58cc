/*
 * scan/sniff — what a file really is, from its first bytes, whatever its name
 * and Content-Type claim. Pure. Only the types the policy acts on.
 */
export type SniffedType = 'PE' | 'ELF' | 'Mach-O' | 'zip' | null;

export function sniff(bytes: Uint8Array): SniffedType {
  if (bytes.length >= 2 && bytes[0] === 0x4d && bytes[1] === 0x5a) return 'PE'; // "MZ": DOS/Windows executable
  if (bytes.length >= 4 && bytes[0] === 0x7f && bytes[1] === 0x45 && bytes[2] === 0x4c && bytes[3] === 0x46) return 'ELF';
  if (bytes.length >= 4) {
    const magic = ((bytes[0]! << 24) | (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!) >>> 0;
    if (magic === 0xfeedface || magic === 0xfeedfacf || magic === 0xcefaedfe || magic === 0xcffaedfe) return 'Mach-O';
    if (magic === 0x504b0304 || magic === 0x504b0506) return 'zip'; // "PK\3\4" local header or empty archive
  }
  return null;
}

export const EXECUTABLE_TYPES: ReadonlySet<SniffedType> = new Set(['PE', 'ELF', 'Mach-O']);

const EICAR = Buffer.from('X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*');

/** The EICAR test string must start the file (within its first 128 bytes, as the standard allows trailing whitespace). */
export function isEicar(bytes: Uint8Array): boolean {
  if (bytes.length < EICAR.length || bytes.length > 128) return false;
  return Buffer.from(bytes.buffer, bytes.byteOffset, EICAR.length).equals(EICAR);
}
