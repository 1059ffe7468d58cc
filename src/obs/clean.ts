/*
 * obs/clean — make a peer-supplied string safe to log, store in a text column,
 * put in an SMTP reply or a header. (Postfix's printable(): every value that
 * arrived in an email is hostile.) HTML escaping is the web layer's job.
 */

// C0/C1 controls (CR and LF included), DEL, and the bidirectional overrides and
// isolates that make "exe.txt" display as "txt.exe".
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]/g;

/** Replaces unsafe characters with "?" and truncates (marking the cut with "..."). */
export function cleanText(value: string, maxLength = 200): string {
  const safe = value.replace(UNSAFE, '?');
  return safe.length > maxLength ? `${safe.slice(0, Math.max(0, maxLength - 3))}...` : safe;
}

/** True when the string has characters cleanText would replace. */
export function hasUnsafeCharacters(value: string): boolean {
  UNSAFE.lastIndex = 0;
  return UNSAFE.test(value);
}
