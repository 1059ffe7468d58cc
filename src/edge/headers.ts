/*
 * edge/headers — the few header fields the message log keeps, read from the
 * header block without a full MIME parse (the hot path). Values are cleaned;
 * they are the sender's words.
 */
import { cleanText } from '../obs/clean.ts';

const MAX_HEADER_BLOCK = 256 * 1024;

export function headerBlock(raw: Uint8Array): string {
  const buf = Buffer.from(raw.buffer, raw.byteOffset, Math.min(raw.byteLength, MAX_HEADER_BLOCK));
  let end = buf.indexOf('\r\n\r\n');
  if (end === -1) end = buf.indexOf('\n\n');
  // UTF-8 (RFC 6532); bytes that are not UTF-8 become U+FFFD rather than mojibake.
  return buf.subarray(0, end === -1 ? buf.length : end).toString('utf8');
}

/** The first occurrence of a field, unfolded (RFC 5322 §2.2.3), cleaned; null if absent. */
export function headerField(block: string, name: string): string | null {
  const re = new RegExp(`^${name}:[ \\t]*((?:.*)(?:\\r?\\n[ \\t].*)*)`, 'im');
  const m = re.exec(block);
  if (!m) return null;
  return cleanText(m[1]!.replace(/\r?\n[ \t]+/g, ' ').trim(), 500);
}
