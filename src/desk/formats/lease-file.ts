/*
 * desk/formats/lease-file — what the lease-file parsers (isc-dhcpd, kea-csv,
 * radius-detail) share: their one error type, which names the line and what
 * was expected there, and small checked conversions (addresses, MACs, times).
 *
 * A parser either returns every lease the file describes or throws a
 * LeaseFileError; it never returns a lease it had to guess, and any other
 * exception escaping a parser is a bug (the tests feed random truncations).
 */
import { canonicalIp } from '../attribute.ts';
import { normaliseMac } from '../customers.ts';

export class LeaseFileError extends Error {
  constructor(
    readonly format: string,
    readonly line: number,
    readonly expected: string,
    found?: string,
  ) {
    super(`${format}: line ${line}: expected ${expected}${found === undefined ? '' : `, found ${JSON.stringify(found.slice(0, 80))}`}`);
    this.name = 'LeaseFileError';
  }
}

const DOTTED_QUAD = /^(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})$/;

/** The canonical spelling of an IP address (four-part IPv4 or IPv6), or null. */
export function checkedIp(text: string): string | null {
  // Fast path for the common case, a plain dotted quad without leading zeros: already canonical.
  const m = DOTTED_QUAD.exec(text);
  if (m && m.slice(1).every((p) => Number(p) <= 255)) return text;
  try {
    return canonicalIp(text);
  } catch {
    return null;
  }
}

export function checkedIpv6(text: string): string | null {
  const ip = checkedIp(text);
  return ip !== null && ip.includes(':') ? ip : null;
}

export function checkedMac(text: string): string | null {
  return normaliseMac(text);
}

/** Seconds since the epoch as a Date; null unless a non-negative integer in range. */
export function epochSeconds(text: string): Date | null {
  if (!/^\d{1,12}$/.test(text)) return null;
  const d = new Date(Number(text) * 1000);
  return Number.isNaN(d.getTime()) ? null : d;
}

const digits = (s: string, from: number, to: number): number => {
  let v = 0;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return -1;
    v = v * 10 + c;
  }
  return v;
};

/** YYYY/MM/DD HH:MM:SS (or with '-' between the date parts, one-digit month, day, hour allowed) taken as UTC; null when not a real time. */
export function utcDateTime(date: string, time: string): Date | null {
  let y: number, mo: number, d: number, h: number, mi: number, s: number;
  // The form dhcpd writes, without a regular expression: it is parsed three times a lease.
  if (date.length === 10 && time.length === 8 && (date[4] === '/' || date[4] === '-') && date[7] === date[4] && time[2] === ':' && time[5] === ':') {
    [y, mo, d, h, mi, s] = [digits(date, 0, 4), digits(date, 5, 7), digits(date, 8, 10), digits(time, 0, 2), digits(time, 3, 5), digits(time, 6, 8)];
    if (y < 0 || mo < 0 || d < 0 || h < 0 || mi < 0 || s < 0) return null;
  } else {
    const dm = /^(\d{4})[/-](\d{1,2})[/-](\d{1,2})$/.exec(date);
    const tm = /^(\d{1,2}):(\d{2}):(\d{2})$/.exec(time);
    if (!dm || !tm) return null;
    [y, mo, d, h, mi, s] = [dm[1], dm[2], dm[3], tm[1], tm[2], tm[3]].map(Number) as [number, number, number, number, number, number];
  }
  if (mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 59) return null;
  const back = new Date(Date.UTC(y, mo - 1, d, h, mi, s));
  // Date.UTC rolls 2026/02/31 over into March; a lease file never means that.
  if (back.getUTCMonth() !== mo - 1 || back.getUTCDate() !== d) return null;
  return back;
}

/** A relay agent identifier (circuit-id) as a line value: printable ASCII as it is, anything else as colon-separated hex bytes. */
export function agentIdValue(bytes: number[]): string {
  const text = String.fromCharCode(...bytes);
  if (bytes.length > 0 && /^[\x21-\x7e][\x20-\x7e]*$/.test(text) && text.trim() === text) return text;
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** The MAC inside a DHCPv6 DUID (DUID-LLT type 1 or DUID-LL type 3 of hardware type 1, Ethernet), else null. */
export function duidMacBytes(duid: number[]): string | null {
  if (duid.length < 4) return null;
  const type = (duid[0]! << 8) | duid[1]!;
  const hw = (duid[2]! << 8) | duid[3]!;
  const addr = type === 1 ? duid.slice(8) : type === 3 ? duid.slice(4) : [];
  if (hw !== 1 || addr.length !== 6) return null;
  return addr.map((x) => x.toString(16).padStart(2, '0')).join(':');
}
