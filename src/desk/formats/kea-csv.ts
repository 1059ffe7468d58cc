/*
 * desk/formats/kea-csv — Kea's memfile lease files (kea-leases4.csv,
 * kea-leases6.csv) as LeaseRecords.
 *
 * Kea appends one row each time a lease changes; the header row names the
 * columns, and versions differ (2.2 writes no pool_id; lease6 files have
 * duid, lease_type, iaid, prefix_len, hwaddr …), so columns are found by
 * name: address, valid_lifetime and expire are required, the rest optional.
 * Kea does not quote: its CSVFile splits every line at every comma, and
 * commas inside hostname and user_context are written as "&#x2c" — so the
 * lines are split the same way here (csv-parse with quoting off did the
 * same at a fifth of the speed; the import aims at ≥ 50,000 rows/s). Per row:
 *   - start = expire − valid_lifetime (the client's last transaction), end =
 *     expire, or none when valid_lifetime is 0xffffffff (infinite);
 *   - per address, a row with the start of the running lease is the same
 *     lease (last row wins); a later start (a renewal) is a new record and
 *     ends the earlier one there;
 *   - state 0 (default) holds; 2 (expired-reclaimed) ends the running lease
 *     at its expire; 1 (declined: the address was found in use, probation
 *     period) holds nothing and ends the running lease at its start;
 *   - valid_lifetime 0 is how Kea records a deleted lease (a release): the
 *     row repeats the original start and Kea writes no time of the release,
 *     so the lease keeps the end it was granted (unless the next lease of
 *     the address starts earlier) — it is never stretched and never guessed
 *     shorter;
 *   - the line: the relay agent's circuit-id when Kea kept it
 *     (store-extended-info: user_context ISC.relay-agent-info, 2.2's hex
 *     string or the later {sub-options} object), else hwaddr as a MAC, else
 *     (lease6) the MAC inside the DUID. client_id, duid and hostname are
 *     chosen by the client and never identify the line;
 *   - lease6 rows of type 2 (prefix delegation) or prefix_len < 128 are
 *     skipped: a LeaseRecord holds one address.
 * A last line without its newline is still being written and is left for
 * the next read. A repeated header row (files concatenated) starts a new
 * column map. Any
 * malformed row is a LeaseFileError with its line, column and expectation.
 */
import type { LeaseRecord } from '../leases.ts';
import { agentIdValue, checkedIp, checkedMac, duidMacBytes, LeaseFileError } from './lease-file.ts';

const FORMAT = 'kea-csv';
const INFINITE = 0xffffffff;

function fail(line: number, expected: string, found?: string): never {
  throw new LeaseFileError(FORMAT, line, expected, found);
}

function hexBytes(text: string): number[] | null {
  const h = text.replace(/^0x/i, '').replace(/:/g, '');
  if (h.length === 0 || h.length % 2 !== 0 || !/^[0-9a-fA-F]+$/.test(h)) return null;
  return h.match(/../g)!.map((b) => parseInt(b, 16));
}

/** Sub-option 1 (circuit-id) of a relay agent information option's content. */
function circuitFromRai(bytes: number[]): string | null {
  for (let i = 0; i + 1 < bytes.length; ) {
    const code = bytes[i]!;
    const len = bytes[i + 1]!;
    if (i + 2 + len > bytes.length) return null;
    if (code === 1 && len > 0) return agentIdValue(bytes.slice(i + 2, i + 2 + len));
    i += 2 + len;
  }
  return null;
}

function circuitFromContext(text: string, line: number): string | null {
  if (text.trim() === '') return null;
  let ctx: unknown;
  try {
    ctx = JSON.parse(text.replace(/&#x2c/g, ','));
  } catch {
    fail(line, 'user_context as JSON (commas written as &#x2c)', text);
  }
  const rai = (ctx as { ISC?: { 'relay-agent-info'?: unknown } } | null)?.ISC?.['relay-agent-info'];
  const hex = typeof rai === 'string' ? rai : typeof rai === 'object' && rai !== null ? (rai as { 'sub-options'?: unknown })['sub-options'] : undefined;
  if (typeof hex !== 'string') return null;
  const bytes = hexBytes(hex);
  if (!bytes) fail(line, 'relay-agent-info as hex bytes (0x0108…)', hex);
  return circuitFromRai(bytes);
}

function unsigned(v: string | undefined, line: number, column: string, max: number): number {
  if (v === undefined || !/^\d{1,15}$/.test(v.trim()) || Number(v) > max) fail(line, `${column} as a whole number of seconds (0–${max})`, v ?? '');
  return Number(v);
}

export function parse(text: string): LeaseRecord[] {
  const lines = text.replace(/^\ufeff/, '').split('\n');
  // Kea ends every row with a newline: a last line without one is still being
  // written (a cut inside a number would read as a wrong time); the next read takes it.
  lines.pop();
  let cols: Map<string, number> | null = null;
  let width = 0;
  const records: LeaseRecord[] = [];
  const current = new Map<string, LeaseRecord>();
  for (let idx = 0; idx < lines.length; idx++) {
    const raw = lines[idx]!;
    const line = idx + 1;
    const text1 = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (text1.trim() === '') continue;
    // Kea's CSVFile: no quoting, every comma separates (commas in values are written as &#x2c).
    const record = text1.split(',');
    if (record[0]?.trim() === 'address') {
      cols = new Map(record.map((c, i) => [c.trim(), i]));
      width = record.length;
      for (const need of ['valid_lifetime', 'expire']) if (!cols.has(need)) fail(line, `a header with the column ${need}`, record.join(','));
      continue;
    }
    if (!cols) fail(line, 'the header row (address,hwaddr,…,valid_lifetime,expire,…) first', record.join(','));
    if (record.length !== width) fail(line, `${width} columns as in the header`, `${record.length} columns`);
    const get = (name: string): string | undefined => {
      const i = cols!.get(name);
      return i === undefined ? undefined : record[i]!.trim();
    };

    const ip = checkedIp(get('address')!);
    if (!ip) fail(line, 'an IP address in column address', get('address'));
    const leaseType = get('lease_type');
    const prefixLen = get('prefix_len');
    if ((leaseType !== undefined && leaseType !== '' && leaseType !== '0' && leaseType !== '1') || (prefixLen !== undefined && prefixLen !== '' && prefixLen !== '128')) {
      if (leaseType !== undefined && !/^[0-2]$/.test(leaseType)) fail(line, 'lease_type 0 (NA), 1 (TA) or 2 (PD)', leaseType);
      continue; // a delegated prefix, not an address
    }
    const valid = unsigned(get('valid_lifetime'), line, 'valid_lifetime', INFINITE);
    const expire = unsigned(get('expire'), line, 'expire', 8_640_000_000_000);
    const stateText = get('state') ?? '0';
    if (!/^[0-2]$/.test(stateText)) fail(line, 'state 0 (default), 1 (declined) or 2 (expired-reclaimed)', stateText);
    const state = Number(stateText);
    const startS = expire - valid;
    if (startS < 0) fail(line, 'expire not before valid_lifetime seconds after the epoch', `${expire}`);
    const start = new Date(startS * 1000);
    const end = valid === INFINITE ? null : new Date(expire * 1000);

    let lineId: LeaseRecord['line'] = null;
    const circuit = circuitFromContext(get('user_context') ?? '', line);
    const hw = get('hwaddr') ?? '';
    if (circuit) lineId = { kind: 'circuit-id', value: circuit };
    else if (hw !== '') {
      const hwtype = get('hwtype');
      if (hwtype === undefined || hwtype === '' || hwtype === '1') lineId = { kind: 'mac', value: checkedMac(hw) ?? fail(line, 'hwaddr as an Ethernet MAC (52:54:00:0a:00:01) or empty', hw) };
    } else {
      const duid = get('duid');
      const bytes = duid ? hexBytes(duid) : null;
      const mac = bytes ? duidMacBytes(bytes) : null;
      if (mac) lineId = { kind: 'mac', value: mac };
    }

    const cur = current.get(ip);
    const same = cur !== undefined && cur.start.getTime() === start.getTime();
    if (state === 0 && valid !== 0) {
      const rec: LeaseRecord = { ip, start, end, line: lineId };
      if (same) Object.assign(cur, rec);
      else {
        if (cur && cur.start < start && (cur.end === null || cur.end > start)) cur.end = start;
        records.push(rec);
        current.set(ip, rec);
      }
    } else if (valid === 0) {
      // Deleted (released): Kea writes no time of release; the lease keeps its granted end.
      continue;
    } else if (state === 2) {
      if (cur && end && cur.start < end && (cur.end === null || cur.end > end)) cur.end = end;
    } else {
      // Declined: the address was in use by someone else; it holds nothing.
      if (cur && cur.start < start && (cur.end === null || cur.end > start)) cur.end = start;
      current.delete(ip);
    }
  }
  if (!cols && text.trim() !== '') fail(1, 'the header row (address,hwaddr,…,valid_lifetime,expire,…)', text.slice(0, 80));
  return records.filter((r) => r.end === null || r.end.getTime() > r.start.getTime());
}
