/*
 * desk/formats/radius-detail — FreeRADIUS accounting `detail` files (the
 * `detail` module in the accounting section) as LeaseRecords: which
 * subscriber line held which address during which session.
 *
 * A record is a date line (the server's local time, ignored: it has no
 * zone) followed by tab-indented `Attribute = value` lines, records apart by
 * blank lines. Only accounting packets count:
 *   - the time of a packet: Event-Timestamp (the NAS's clock; FreeRADIUS
 *     writes it as "Nov 22 2026 19:36:40 UTC", a NAS may send it as epoch
 *     seconds; when the server adds it itself it has already subtracted
 *     Acct-Delay-Time), else Timestamp (arrival, epoch seconds) minus
 *     Acct-Delay-Time. An Event-Timestamp in a zone named by an
 *     abbreviation other than UTC/GMT (CET, EST …) is ambiguous, so the
 *     arrival time is used instead;
 *   - packets belong to one session by Acct-Unique-Session-Id, else by NAS
 *     (NAS-IP-Address / NAS-IPv6-Address / NAS-Identifier) + Acct-Session-Id;
 *   - Start opens the session at its time; Interim-Update or Stop of a
 *     session we saw no Start for (file rotated, packet lost) opens it at
 *     time − Acct-Session-Time; Stop ends it; Accounting-On/Off from a NAS
 *     (reboot) ends every session of that NAS still open;
 *   - a session holds every address it was given: Framed-IP-Address,
 *     Framed-IPv6-Address, and a Framed-IPv6-Prefix or Delegated-IPv6-Prefix
 *     of length 128. Shorter prefixes are skipped: a LeaseRecord holds one
 *     address;
 *   - per address, a session still open (or ending later) when the next
 *     session of the address starts is closed there — a lost Stop is ended
 *     by the next Start;
 *   - the line is User-Name (radius-user), else Calling-Station-Id when it
 *     is a MAC (mac).
 * Packets of other kinds, and sessions without an address, give no records;
 * a last record not yet ended by its blank line is left for the next read.
 * Anything malformed — no date line, a line that is not `Attr = value`, an
 * unterminated string, a bad address, number or time, a packet without
 * Timestamp or Event-Timestamp — is a LeaseFileError with its line.
 */
import type { LeaseRecord } from '../leases.ts';
import { checkedIp, checkedMac, epochSeconds, LeaseFileError } from './lease-file.ts';

const FORMAT = 'radius-detail';

function fail(line: number, expected: string, found?: string): never {
  throw new LeaseFileError(FORMAT, line, expected, found);
}

interface Attr {
  value: string;
  line: number;
}

interface Packet {
  line: number;
  attrs: Map<string, Attr>;
}

const DATE_LINE = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d \d\d:\d\d:\d\d \d{4}$/;
const ATTR_LINE = /^[ \t]+([A-Za-z0-9][A-Za-z0-9._:-]*)\s*(?:=|:=|\+=|==)\s*(.*?)\s*$/;

function unquote(raw: string, line: number): string {
  if (!raw.startsWith('"')) return raw;
  let v = '';
  for (let i = 1; i < raw.length; i++) {
    const c = raw[i]!;
    if (c === '"') {
      if (i !== raw.length - 1) fail(line, 'nothing after the closing "', raw.slice(i + 1));
      return v;
    }
    if (c !== '\\') {
      v += c;
      continue;
    }
    const oct = /^[0-7]{3}/.exec(raw.slice(i + 1, i + 4));
    if (oct) {
      v += String.fromCharCode(parseInt(oct[0], 8) & 0xff);
      i += 3;
      continue;
    }
    const e = raw[i + 1];
    if (e === undefined) break;
    v += e === 'n' ? '\n' : e === 'r' ? '\r' : e === 't' ? '\t' : e;
    i++;
  }
  return fail(line, 'a closing " at the end of the value', raw);
}

function readPackets(text: string): Packet[] {
  const lines = text.split('\n');
  // The detail module ends every record with a blank line. Without one the
  // last record is still being written — a cut inside a number would read as
  // a wrong time — so it is left, unchecked, for the next read.
  if (!/\n\r?\n\s*$/.test(text)) {
    let i = lines.length - 1;
    while (i >= 0 && (lines[i]!.trim() === '' || /^[ \t]/.test(lines[i]!))) i--;
    lines.length = Math.max(i, 0);
  }
  const packets: Packet[] = [];
  let cur: Packet | null = null;
  lines.forEach((raw, idx) => {
    const no = idx + 1;
    const l = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (l.trim() === '') {
      cur = null;
      return;
    }
    if (!/^[ \t]/.test(l)) {
      if (!DATE_LINE.test(l)) fail(no, 'a date line starting a record (Sun Nov 22 19:36:40 2026)', l);
      cur = { line: no, attrs: new Map() };
      packets.push(cur);
      return;
    }
    if (!cur) fail(no, 'a date line before the attributes of a record', l.trim());
    const m = ATTR_LINE.exec(l);
    if (!m) fail(no, 'an "Attribute = value" line', l.trim());
    (cur as Packet).attrs.set(m[1]!, { value: unquote(m[2]!, no), line: no });
  });
  return packets;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** Event-Timestamp: epoch seconds, or "Nov 22 2026 19:36:40 UTC" / "+0100"; null when its zone is an ambiguous abbreviation. */
function eventTime(a: Attr): Date | null {
  const epoch = epochSeconds(a.value);
  if (epoch) return epoch;
  const m = /^([A-Z][a-z]{2}) +(\d{1,2}) (\d{4}) (\d\d):(\d\d):(\d\d)(?: (\S+))?$/.exec(a.value);
  const mon = m ? MONTHS.indexOf(m[1]!) : -1;
  if (!m || mon < 0) return fail(a.line, 'Event-Timestamp as epoch seconds or "Nov 22 2026 19:36:40 UTC"', a.value);
  const [d, y, h, mi, s] = [m[2], m[3], m[4], m[5], m[6]].map(Number) as [number, number, number, number, number];
  const zone = m[7] ?? '';
  let offset: number;
  if (/^(UTC|GMT|Z|UT)$/.test(zone)) offset = 0;
  else if (/^[+-]\d{4}$/.test(zone)) offset = (zone[0] === '-' ? -1 : 1) * (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(3)));
  else return null;
  const t = Date.UTC(y, mon, d, h, mi, s) - offset * 60_000;
  const back = new Date(Date.UTC(y, mon, d, h, mi, s));
  if (back.getUTCDate() !== d || h > 23 || mi > 59 || s > 59) return fail(a.line, 'a real date in Event-Timestamp', a.value);
  return new Date(t);
}

function seconds(a: Attr | undefined, name: string): number | null {
  if (!a) return null;
  if (!/^\d{1,10}$/.test(a.value)) fail(a.line, `${name} as a whole number of seconds`, a.value);
  return Number(a.value);
}

function timeOf(p: Packet): Date {
  const ev = p.attrs.get('Event-Timestamp');
  const at = ev ? eventTime(ev) : null;
  if (at) return at;
  const ts = p.attrs.get('Timestamp');
  if (!ts) fail(p.line, 'a Timestamp = EPOCH (or Event-Timestamp) attribute in the record');
  const arrival = epochSeconds(ts.value) ?? fail(ts.line, 'Timestamp as epoch seconds', ts.value);
  const delay = seconds(p.attrs.get('Acct-Delay-Time'), 'Acct-Delay-Time') ?? 0;
  return new Date(arrival.getTime() - delay * 1000);
}

function addressesOf(p: Packet): string[] {
  const out: string[] = [];
  const v4 = p.attrs.get('Framed-IP-Address');
  if (v4) {
    const ip = checkedIp(v4.value);
    if (!ip || ip.includes(':')) fail(v4.line, 'an IPv4 address in Framed-IP-Address', v4.value);
    // 255.255.255.254/255 ask the NAS to choose or negotiate: no address yet.
    if (ip !== '255.255.255.254' && ip !== '255.255.255.255' && ip !== '0.0.0.0') out.push(ip);
  }
  const v6 = p.attrs.get('Framed-IPv6-Address');
  if (v6) {
    const ip = checkedIp(v6.value);
    if (!ip || !ip.includes(':')) fail(v6.line, 'an IPv6 address in Framed-IPv6-Address', v6.value);
    out.push(ip);
  }
  for (const name of ['Framed-IPv6-Prefix', 'Delegated-IPv6-Prefix']) {
    const a = p.attrs.get(name);
    if (!a) continue;
    const m = /^([0-9A-Fa-f:.]+)\/(\d{1,3})$/.exec(a.value);
    const ip = m ? checkedIp(m[1]!) : null;
    if (!m || !ip || !ip.includes(':') || Number(m[2]) > 128) fail(a.line, `an IPv6 prefix in ${name} (2001:db8::/56)`, a.value);
    if (Number(m[2]) === 128) out.push(ip);
  }
  return out;
}

const KINDS: Record<string, 'start' | 'interim' | 'stop' | 'on-off'> = {
  Start: 'start', '1': 'start',
  Stop: 'stop', '2': 'stop',
  'Interim-Update': 'interim', Alive: 'interim', '3': 'interim',
  'Accounting-On': 'on-off', '7': 'on-off',
  'Accounting-Off': 'on-off', '8': 'on-off',
};

interface Session {
  nas: string;
  start: Date | null;
  end: Date | null;
  ips: string[];
  line: LeaseRecord['line'];
}

export function parse(text: string): LeaseRecord[] {
  const sessions = new Map<string, Session>();
  const order: Session[] = [];
  for (const p of readPackets(text)) {
    const type = p.attrs.get('Acct-Status-Type');
    if (!type) continue; // not an accounting packet
    const kind = KINDS[type.value];
    if (!kind) continue; // Failed, Tunnel-*: no session boundary
    const t = timeOf(p);
    const nas = p.attrs.get('NAS-IP-Address')?.value ?? p.attrs.get('NAS-IPv6-Address')?.value ?? p.attrs.get('NAS-Identifier')?.value ?? '';
    if (kind === 'on-off') {
      for (const s of order) if (s.nas === nas && s.start && s.start <= t && (s.end === null || s.end > t)) s.end = t;
      continue;
    }
    const sessionTime = seconds(p.attrs.get('Acct-Session-Time'), 'Acct-Session-Time');
    const user = p.attrs.get('User-Name');
    if (user && (user.value.trim() === '' || user.value.length > 253 || /[\u0000-\u001f\u007f]/.test(user.value))) fail(user.line, 'a User-Name of printable characters', user.value);
    const calling = p.attrs.get('Calling-Station-Id');
    const mac = calling ? checkedMac(calling.value) : null;
    const line: LeaseRecord['line'] = user ? { kind: 'radius-user', value: user.value.trim() } : mac ? { kind: 'mac', value: mac } : null;
    const unique = p.attrs.get('Acct-Unique-Session-Id')?.value;
    const sid = p.attrs.get('Acct-Session-Id')?.value;
    const ips = addressesOf(p);
    const key = unique ? `u:${unique}` : sid ? `s:${nas}\u0000${sid}` : `a:${nas}\u0000${ips.join(',')}\u0000${user?.value ?? ''}`;
    let s = sessions.get(key);
    if (!s || (kind === 'start' && s.end !== null)) {
      s = { nas, start: null, end: null, ips: [], line: null };
      sessions.set(key, s);
      order.push(s);
    }
    for (const ip of ips) if (!s.ips.includes(ip)) s.ips.push(ip);
    if (line) s.line = line;
    if (kind === 'start') s.start = t;
    else if (!s.start) s.start = new Date(t.getTime() - (sessionTime ?? 0) * 1000);
    if (kind === 'stop') s.end = t;
  }

  const records: LeaseRecord[] = [];
  for (const s of order) for (const ip of s.ips) records.push({ ip, start: s.start!, end: s.end, line: s.line });
  // Per address: the next session's start ends one still open (or ending later).
  const byIp = new Map<string, LeaseRecord[]>();
  for (const r of records) (byIp.get(r.ip) ?? byIp.set(r.ip, []).get(r.ip)!).push(r);
  for (const list of byIp.values()) {
    const sorted = [...list].sort((a, b) => a.start.getTime() - b.start.getTime());
    for (let i = 0; i + 1 < sorted.length; i++) {
      const r = sorted[i]!;
      const next = sorted[i + 1]!;
      if (r.end === null || r.end > next.start) r.end = next.start;
    }
  }
  return records.filter((r) => r.end === null || r.end.getTime() > r.start.getTime());
}
