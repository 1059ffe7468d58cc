/*
 * desk/report-parse — what an abuse report sent to the desk says: which
 * address, when, what happened, and the header block of the mail it is
 * about.
 *
 * Three shapes are read (R8):
 *  - ARF (RFC 5965): multipart/report; report-type=feedback-report with a
 *    message/feedback-report part (Feedback-Type, Source-IP, Source-Port of
 *    RFC 6692, Arrival-Date — or the pre-RFC draft's Received-Date, which
 *    real feedback loops still send) and the reported message as
 *    message/rfc822 or text/rfc822-headers (RFC 5965 §2 (d)).
 *  - X-ARF v0.2 (x-arf.org): an `X-XARF: PLAIN` (or `X-ARF: yes`) message
 *    whose second MIME part is a YAML block with Source, Source-Type, Date,
 *    Category, Report-Type.
 *  - Free text with the offending message or its headers attached; the IP
 *    is the desk alias's, or the one the attached top Received line names.
 *
 * The observed time, in this order: ARF Arrival-Date (or X-ARF Date), the
 * attached Received line whose `from` clause names the IP, the attached
 * Date header, the report's own Date. Which one was used is recorded, and
 * whether it carried a zone: a zoneless time (no offset, an unknown zone
 * name like "JST", or RFC 5322's "-0000") is read as UTC and flagged, so
 * attribution can refuse it near a lease change.
 *
 * Pure and hostile-input safe: no network, no eval of YAML (only `Key:
 * value` lines are read), bounded sizes, and never any body or attachment
 * content in what comes back — only the attached header block.
 */
import ipaddr from 'ipaddr.js';
import PostalMime from 'postal-mime';
import { cleanText } from '../obs/clean.ts';

export type ReportKind = 'arf' | 'x-arf' | 'free-text';
export type TimeSource = 'arrival-date' | 'x-arf-date' | 'received' | 'attached-date' | 'report-date' | 'none';

export interface ParsedReport {
  kind: ReportKind;
  ip: string | null;
  port: number | null;
  observedAt: Date | null;
  timeSource: TimeSource;
  zoneless: boolean;
  feedbackType: string | null;
  /** Our own words built from the report's machine-readable facts; never the reporter's prose. */
  summary: string;
  /** The attached header block (CRLF lines), or null when the report carried none. */
  headers: string | null;
  malware: string[];
}

export interface ParseOptions {
  /** The IP the recipient alias names: the Received line that names it sets the time. */
  targetIp?: string | null;
}

/** Largest report we read at all; the gateway's size cap is usually lower. */
export const MAX_REPORT_BYTES = 10 * 1024 * 1024;
/** Largest attached header block we keep. */
export const MAX_HEADER_BLOCK = 64 * 1024;
const MAX_FIELD = 998;

export async function parseReport(raw: Uint8Array | string, options: ParseOptions = {}): Promise<ParsedReport> {
  const bytes = typeof raw === 'string' ? Buffer.from(raw, 'utf8') : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  const input = bytes.length > MAX_REPORT_BYTES ? bytes.subarray(0, MAX_REPORT_BYTES) : bytes;
  const target = canonicalIp(options.targetIp ?? null);

  let email: Awaited<ReturnType<typeof PostalMime.parse>> | null = null;
  try {
    email = await PostalMime.parse(input, { forceRfc822Attachments: true, attachmentEncoding: 'arraybuffer' } as Parameters<typeof PostalMime.parse>[1]);
  } catch {
    email = null;
  }
  const topHeaders = email?.headers ?? [];
  const top = (name: string) => topHeaders.find((h) => h.key.toLowerCase() === name)?.value ?? null;
  const contentType = (top('content-type') ?? '').toLowerCase();
  const reportDate = parseMailDate(top('date'));
  const attachments = email?.attachments ?? [];
  const asText = (a: (typeof attachments)[number]) => Buffer.from(a.content as ArrayBuffer).toString('latin1');

  // The attached message or header block: its headers only.
  const attached = attachments.find((a) => /^(message\/rfc822|text\/rfc822-headers?|message\/rfc822-headers)$/i.test(a.mimeType));
  const headers = attached ? headerBlockOf(asText(attached)) : null;
  const fields = headers ? unfold(headers) : [];

  const isArf = /multipart\/report/.test(contentType) && /report-type\s*=\s*"?feedback-report"?/.test(contentType);
  const feedbackPart = attachments.find((a) => a.mimeType.toLowerCase() === 'message/feedback-report');
  if (isArf || feedbackPart) {
    const fb = feedbackPart ? unfold(asText(feedbackPart)) : [];
    const get = (name: string) => fb.find((f) => f.name === name)?.value ?? null;
    const feedbackType = token(get('feedback-type'));
    const ip = canonicalIp(get('source-ip')) ?? target ?? sourceFromReceived(fields);
    const port = portOf(get('source-port'));
    const arrival = parseMailDate(get('arrival-date') ?? get('received-date'));
    const time = arrival
      ? { at: arrival.at, zoneless: arrival.zoneless, source: 'arrival-date' as const }
      : chooseTime(fields, ip, reportDate);
    const malware = malwareNames([text(email?.text), ...fb.filter((f) => /virus|malware/.test(f.name)).map((f) => f.value)]);
    const domain = get('reported-domain');
    const summary = [
      `Feedback report (ARF), type ${feedbackType ?? 'unknown'}`,
      ip ? `about mail from ${ip}${port ? ` port ${port}` : ''}` : 'naming no source address',
      domain ? `(reported domain ${clip(cleanLine(domain), 100)})` : '',
      malware.length ? `carrying ${malware.join(', ')}` : '',
    ].filter(Boolean).join(' ') + '.';
    return { kind: 'arf', ip, port, observedAt: time.at, timeSource: time.source, zoneless: time.zoneless, feedbackType, summary, headers, malware };
  }

  // X-ARF 4 travels as a JSON attachment (xarf.json), with or without the X-XARF header.
  const jsonReport = attachments
    .filter((a) => /^application\/(json|x-xarf)/i.test(a.mimeType) && (a.content as ArrayBuffer).byteLength <= 256 * 1024)
    .map((a) => xarfJsonFields(asText(a)))
    .find((f) => f.length > 0);
  const xarf = /^(plain|yes|bzip2|zip)\b/i.test((top('x-xarf') ?? top('x-arf') ?? '').trim()) || jsonReport !== undefined;
  if (xarf) {
    const fromPart = xarfReportPart(input);
    const report = fromPart.some((f) => f.name === 'source') ? fromPart : (jsonReport ?? fromPart);
    const get = (name: string) => report.find((f) => f.name === name)?.value ?? null;
    const sourceType = (get('source-type') ?? '').toLowerCase();
    const source = /^(ip-address|ipv4|ipv6)$/.test(sourceType) || sourceType === '' ? canonicalIp(get('source')) : null;
    const ip = source ?? target;
    const date = parseXarfDate(get('date') ?? get('report-date'));
    const time = date ? { at: date.at, zoneless: date.zoneless, source: 'x-arf-date' as const } : chooseTime(fields, ip, reportDate);
    const category = token(get('category'));
    const reportType = token(get('report-type'));
    const service = token(get('service'));
    const malware = malwareNames([get('malware'), get('virus')]);
    const summary = [
      `X-ARF report, ${category ?? 'abuse'}${reportType ? `/${reportType}` : ''}`,
      service ? `(service ${service})` : '',
      ip ? `from ${ip}` : 'naming no source address',
      malware.length ? `carrying ${malware.join(', ')}` : '',
    ].filter(Boolean).join(' ') + '.';
    // X-ARF 4's source_port is the source's own port (CGNAT); v0.2's Port is the attacked service's, never used.
    const port = source && source === ip ? portOf(get('source-port')) : null;
    return { kind: 'x-arf', ip, port, observedAt: time.at, timeSource: time.source, zoneless: time.zoneless, feedbackType: reportType, summary, headers, malware };
  }

  const ip = target ?? sourceFromReceived(fields);
  const time = chooseTime(fields, ip, reportDate);
  const malware = malwareNames([text(email?.text)]);
  const summary = [
    'Abuse report (free text)',
    ip ? `about ${ip}` : 'naming no address',
    headers ? 'with the header block of the mail attached' : 'without attached headers',
    malware.length ? `naming ${malware.join(', ')}` : '',
  ].filter(Boolean).join(' ') + '.';
  return { kind: 'free-text', ip, port: null, observedAt: time.at, timeSource: time.source, zoneless: time.zoneless, feedbackType: null, summary, headers, malware };
}

// ── time ─────────────────────────────────────────────────────────────────

interface Dated {
  at: Date;
  zoneless: boolean;
}

function chooseTime(fields: Field[], ip: string | null, reportDate: Dated | null): { at: Date | null; zoneless: boolean; source: TimeSource } {
  if (ip) {
    for (const f of fields) {
      if (f.name !== 'received') continue;
      if (!receivedNames(f.value, ip)) continue;
      const semi = f.value.lastIndexOf(';');
      const d = semi === -1 ? null : parseMailDate(f.value.slice(semi + 1));
      if (d) return { at: d.at, zoneless: d.zoneless, source: 'received' };
    }
  }
  const date = fields.find((f) => f.name === 'date');
  const attachedDate = date ? parseMailDate(date.value) : null;
  if (attachedDate) return { at: attachedDate.at, zoneless: attachedDate.zoneless, source: 'attached-date' };
  if (reportDate) return { at: reportDate.at, zoneless: reportDate.zoneless, source: 'report-date' };
  return { at: null, zoneless: true, source: 'none' };
}

const MONTHS: Record<string, number> = { jan: 0, feb: 1, mar: 2, apr: 3, may: 4, jun: 5, jul: 6, aug: 7, sep: 8, oct: 9, nov: 10, dec: 11 };
/** RFC 5322 §4.3 obsolete zone names; anything else alphabetic is unknown. */
const ZONES: Record<string, number> = { ut: 0, utc: 0, gmt: 0, z: 0, edt: -240, est: -300, cdt: -300, cst: -360, mdt: -360, mst: -420, pdt: -420, pst: -480 };

/** An RFC 5322 date-time ("Thu, 29 Apr 2015 23:34:45 +0900 (JST)"), tolerant of the usual deviations. */
export function parseMailDate(value: string | null | undefined): Dated | null {
  if (!value) return null;
  const v = value.replace(/\([^()]*\)/g, ' ').replace(/\s+/g, ' ').trim().slice(0, 200);
  const m = /^(?:[A-Za-z]{3},?\s*)?(\d{1,2})\s+([A-Za-z]{3})[a-z]*\s+(\d{2,4})\s+(\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(?:\s*([+-]\d{4}|[A-Za-z]{1,5}))?\s*$/.exec(v);
  if (m) return build(Number(m[3]), MONTHS[(m[2] ?? '').toLowerCase()], Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6] ?? 0), m[7] ?? null);
  return parseIsoDate(v);
}

/** X-ARF's Date: RFC 2822, ISO 8601, or the "Feb  3 2014 02:13:35 +0100" form pyxarf writes. */
export function parseXarfDate(value: string | null | undefined): Dated | null {
  if (!value) return null;
  const v = value.replace(/^['"]|['"]$/g, '').replace(/\s+/g, ' ').trim().slice(0, 200);
  const m = /^(?:[A-Za-z]{3},?\s*)?([A-Za-z]{3})[a-z]*\s+(\d{1,2})\s+(\d{4})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?(?:\s*([+-]\d{4}|[A-Za-z]{1,5}))?$/.exec(v);
  if (m) return build(Number(m[3]), MONTHS[(m[1] ?? '').toLowerCase()], Number(m[2]), Number(m[4]), Number(m[5]), Number(m[6] ?? 0), m[7] ?? null);
  return parseMailDate(v);
}

function parseIsoDate(v: string): Dated | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?\s*(Z|[+-]\d{2}:?\d{2})?$/i.exec(v);
  if (!m) return null;
  return build(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6] ?? 0), m[7] ? m[7].replace(':', '').replace(/^z$/i, '+0000') : null);
}

function build(year: number, month: number | undefined, day: number, hour: number, minute: number, second: number, zone: string | null): Dated | null {
  if (month === undefined) return null;
  if (year < 100) year += year < 50 ? 2000 : 1900; // RFC 5322 §4.3
  if (day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) return null;
  let offset = 0;
  let zoneless = true;
  if (zone && /^[+-]\d{4}$/.test(zone)) {
    const minutes = Number(zone.slice(1, 3)) * 60 + Number(zone.slice(3, 5));
    if (Number(zone.slice(3, 5)) > 59 || minutes > 14 * 60) return null;
    offset = (zone[0] === '-' ? -1 : 1) * minutes;
    // RFC 5322 §3.3: "-0000" says the time is UTC but the local zone is unknown.
    zoneless = zone === '-0000';
  } else if (zone && zone.toLowerCase() in ZONES) {
    offset = ZONES[zone.toLowerCase()] ?? 0;
    zoneless = false;
  }
  const ms = Date.UTC(year, month, day, hour, minute, Math.min(second, 59)) - offset * 60_000;
  const at = new Date(ms);
  if (Number.isNaN(ms) || at.getUTCFullYear() < 1990 || at.getUTCFullYear() > 2200) return null;
  return { at, zoneless };
}

// ── header blocks ────────────────────────────────────────────────────────

interface Field {
  name: string;
  value: string;
}

/** The header block of an attached message: everything before the first empty line. */
export function headerBlockOf(message: string): string | null {
  const text = message.replace(/\r\n/g, '\n').replace(/^\n+/, '');
  const end = text.indexOf('\n\n');
  let block = end === -1 ? text : text.slice(0, end);
  if (block.length > MAX_HEADER_BLOCK) block = block.slice(0, block.lastIndexOf('\n', MAX_HEADER_BLOCK));
  // Only header-shaped lines (a field or its continuation) — anything else means we are in a body.
  const lines: string[] = [];
  for (const line of block.split('\n')) {
    if (/^[\x21-\x39\x3b-\x7e]+:/.test(line) || (/^[ \t]/.test(line) && lines.length > 0)) lines.push(line.replace(/[\0\r]/g, ''));
    else break;
  }
  if (!lines.length) return null;
  let out = `${lines.join('\r\n')}\r\n`;
  // CRLF made it longer: drop whole fields from the end until it fits.
  while (out.length > MAX_HEADER_BLOCK) {
    const cut = out.lastIndexOf('\r\n', out.length - 3);
    if (cut <= 0) return null;
    out = out.slice(0, cut + 2);
  }
  return out;
}

function unfold(block: string): Field[] {
  const out: Field[] = [];
  for (const line of block.replace(/\r\n/g, '\n').split('\n')) {
    if (line === '') {
      if (out.length) break;
      continue;
    }
    if (/^[ \t]/.test(line) && out.length) {
      const last = out[out.length - 1]!;
      if (last.value.length < 8 * MAX_FIELD) last.value += ' ' + line.trim();
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    out.push({ name: line.slice(0, colon).trim().toLowerCase(), value: line.slice(colon + 1).trim() });
  }
  return out;
}

/** Does this Received field's `from` clause name the IP ("from host (rdns [IP])", "from [IP]", "(IP)")? */
function receivedNames(value: string, ip: string): boolean {
  const from = fromClause(value);
  if (!from) return false;
  return ipsIn(from).includes(ip);
}

function fromClause(value: string): string | null {
  const m = /^\s*from\s+(.*?)(?:\s+by\s|;|$)/i.exec(value);
  return m?.[1] ?? null;
}

function ipsIn(text: string): string[] {
  const found: string[] = [];
  for (const m of text.matchAll(/[[(]\s*(?:IPv6:)?([0-9A-Fa-f:.]{2,45})\s*[\])]/g)) {
    const ip = canonicalIp(m[1]);
    if (ip) found.push(ip);
  }
  return found;
}

/** The source of the attached message: the IP named by the topmost Received line with one. */
function sourceFromReceived(fields: Field[]): string | null {
  for (const f of fields) {
    if (f.name !== 'received') continue;
    const from = fromClause(f.value);
    if (!from) continue;
    const ips = ipsIn(from).filter((ip) => ipaddr.parse(ip).range() === 'unicast' || isDocumentation(ip));
    if (ips.length) return ips[ips.length - 1] ?? null;
  }
  return null;
}

function isDocumentation(ip: string): boolean {
  // 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32 (RFC 5737, 3849): the examples' space.
  const a = ipaddr.parse(ip);
  return a.range() === 'reserved' || (a.kind() === 'ipv6' && a.match(ipaddr.parseCIDR('2001:db8::/32')));
}

// ── X-ARF ────────────────────────────────────────────────────────────────

/** The second MIME part of an X-ARF message, read as `Key: value` lines (never as YAML code). */
function xarfReportPart(raw: Buffer): Field[] {
  const text = raw.toString('latin1').replace(/\r\n/g, '\n');
  const headEnd = text.indexOf('\n\n');
  if (headEnd === -1) return [];
  const head = unfold(text.slice(0, headEnd));
  const ct = head.find((f) => f.name === 'content-type')?.value ?? '';
  const b = /boundary\s*=\s*(?:"([^"]{1,200})"|([^\s;]{1,200}))/i.exec(ct);
  if (!b) return [];
  const boundary = `--${b[1] ?? b[2]}`;
  const parts = text.slice(headEnd + 2).split(new RegExp(`^${escapeRegex(boundary)}(?:--)?[ \\t]*$`, 'm')).slice(1, 4);
  const part = parts[1];
  if (!part) return [];
  const body = part.replace(/^\n/, '');
  const partHeadEnd = body.indexOf('\n\n');
  const partHead = partHeadEnd === -1 ? [] : unfold(body.slice(0, partHeadEnd));
  let content = partHeadEnd === -1 ? body : body.slice(partHeadEnd + 2);
  const cte = (partHead.find((f) => f.name === 'content-transfer-encoding')?.value ?? '').toLowerCase();
  if (cte === 'base64') content = Buffer.from(content.replace(/\s+/g, ''), 'base64').toString('utf8');
  else if (cte === 'quoted-printable') content = decodeQp(content);
  if (content.trim().startsWith('{')) return xarfJsonFields(content);
  const fields: Field[] = [];
  for (const line of content.replace(/\r\n/g, '\n').split('\n').slice(0, 200)) {
    const m = /^([A-Za-z][A-Za-z0-9-]{0,40}):\s*(.*)$/.exec(line);
    if (m) fields.push({ name: (m[1] ?? '').toLowerCase(), value: (m[2] ?? '').trim().replace(/^'(.*)'$/, '$1').replace(/^"(.*)"$/, '$1').slice(0, MAX_FIELD) });
  }
  return fields;
}

/**
 * An X-ARF report in JSON: v0.2/0.3's keys as in the YAML form ("Source",
 * "Source-Type", "Date"), or X-ARF 4's (source_identifier, source_port,
 * timestamp, category, type), as the same fields. Plain JSON.parse of a
 * bounded text; only top-level string and number values are read.
 */
function xarfJsonFields(text: string): Field[] {
  if (text.length > 256 * 1024) return [];
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch {
    return [];
  }
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) return [];
  const o = obj as Record<string, unknown>;
  const str = (v: unknown) => (typeof v === 'string' || typeof v === 'number' ? String(v).slice(0, MAX_FIELD) : null);
  const lower = new Map(Object.entries(o).map(([k, v]) => [k.toLowerCase().replace(/_/g, '-'), v]));
  const pick = (...names: string[]) => names.map((n) => str(lower.get(n))).find((v) => v !== null) ?? null;
  const isV4 = lower.has('xarf-version');
  if (!isV4 && !lower.has('source') && !lower.has('report-type')) return [];
  const fields: Field[] = [];
  const add = (name: string, value: string | null) => {
    if (value !== null) fields.push({ name, value });
  };
  add('source', pick('source-identifier', 'source'));
  add('source-type', isV4 ? 'ip-address' : pick('source-type'));
  add('source-port', isV4 ? pick('source-port') : null);
  add('date', pick('timestamp', 'date', 'report-date'));
  add('category', pick('category'));
  add('report-type', pick('type', 'report-type'));
  add('service', pick('service'));
  add('malware', pick('malware-family', 'malware-name', 'malware'));
  return fields;
}

function decodeQp(s: string): string {
  const bytes = Buffer.from(s.replace(/=\n/g, '').replace(/=([0-9A-Fa-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1');
  return bytes.toString('utf8');
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

// ── small pieces ─────────────────────────────────────────────────────────

/** An IP address in canonical text, or null; dotted quads only for IPv4 (no octal, hex or short forms). */
export function canonicalIp(value: string | null | undefined): string | null {
  if (!value) return null;
  const v = value.trim().replace(/^\[|\]$/g, '').replace(/^ipv6:/i, '');
  if (v.length > 45) return null;
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(v)) {
    const octets = v.split('.');
    if (octets.some((o) => (o.length > 1 && o.startsWith('0')) || Number(o) > 255)) return null;
    return octets.map(Number).join('.');
  }
  if (!v.includes(':') || !ipaddr.IPv6.isValid(v) || v.includes('%')) return null;
  const a = ipaddr.IPv6.parse(v);
  return a.isIPv4MappedAddress() ? a.toIPv4Address().toString() : a.toRFC5952String();
}

function portOf(value: string | null): number | null {
  if (!value || !/^\s*\d{1,5}\s*$/.test(value)) return null;
  const n = Number(value);
  return n > 0 && n < 65536 ? n : null;
}

function token(value: string | null): string | null {
  if (!value) return null;
  const m = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}/.exec(value.trim());
  return m ? m[0].toLowerCase() : null;
}

function text(value: string | null | undefined): string | null {
  return value ? value.slice(0, 20_000) : null;
}

/** Line breaks and tabs as spaces; every other unsafe character (C1 controls, bidi overrides) as obs/clean makes it (found by test/fuzz). */
function cleanLine(s: string): string {
  return cleanText(s.replace(/[\0-\x1f\x7f]/g, ' '), Number.MAX_SAFE_INTEGER).trim();
}

function clip(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

/**
 * Malware names a report states: "the virus NAME" (our own ARF wording and
 * many others), "Virus: NAME", "Malware: NAME", "infected with NAME". Names
 * are AV-style tokens only (letters, digits, . _ - / : !), at most 8.
 */
export function malwareNames(texts: readonly (string | null | undefined)[]): string[] {
  const names = new Set<string>();
  const re = /(?:\bthe virus|\bvirus(?: name)?:|\bmalware(?: name)?:|\binfected with)\s+["']?([A-Za-z][A-Za-z0-9._/:!-]{2,80})/gi;
  for (const t of texts) {
    if (!t) continue;
    for (const m of t.slice(0, 20_000).matchAll(re)) {
      const name = (m[1] ?? '').replace(/[.:]+$/, '');
      if (/^(was|is|has|the|a|an|found|detected|named)$/i.test(name)) continue;
      names.add(name);
      if (names.size >= 8) return [...names];
    }
  }
  return [...names];
}
