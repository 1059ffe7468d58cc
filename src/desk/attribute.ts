/*
 * desk/attribute — who held an address at a time (R8).
 *
 * An address is held through one of three kinds of record: a static
 * assignment (a CIDR network for a period), a dynamic lease (one address, a
 * period, the line identifier it was handed to), or a CGNAT port block (a
 * public address, a port range, a period). attribute() reads the records of
 * the address around the time and decide() — pure, table-tested — says what
 * they mean:
 *
 *   - the customer who held it then (via static, lease or cgnat), or
 *   - unknown: nobody we know held it (or its lease's line maps to nobody), or
 *   - ambiguous, with the reason, when an honest answer needs more:
 *       a dynamic (leased) address and no time;
 *       a CGNAT address and no source port;
 *       a time without a zone (read as UTC) within 14 h — the widest UTC
 *       offset — of a change of holder, so the real instant might belong to
 *       someone else.
 *
 * A wrong answer sends a stranger's abuse report to an innocent customer, so
 * every doubt is "ambiguous" and lands in the desk's queue for a human.
 *
 * Leases store the customer id when the line was known at import time;
 * otherwise they are resolved here through customer_lines, so importing
 * customers after the leases needs no rewrite of the lease table.
 */
import ipaddr from 'ipaddr.js';
import { sql } from 'kysely';
import type { Db } from '../store/store.ts';

export { getCustomer, type Customer } from './customers.ts';

export type Attribution =
  | { kind: 'customer'; customerId: string; via: 'static' | 'lease' | 'cgnat'; validFrom: Date | null; validTo: Date | null }
  | { kind: 'unknown' }
  | { kind: 'ambiguous'; reason: string };

export interface AttributionQuery {
  ip: string;
  at: Date | null;
  port?: number;
  zoneless?: boolean;
}

/** The widest offset from UTC any zone has (+14:00, Line Islands); −12:00 is inside it. */
export const MAX_UTC_OFFSET_MS = 14 * 3600_000;

/** One record found for the address: who (null = a lease's line that maps to no customer), from when, until when (null = open). */
export interface Holding {
  via: 'static' | 'lease' | 'cgnat';
  customerId: string | null;
  from: Date | null;
  to: Date | null;
  /** CGNAT only: the block's ports, inclusive. */
  ports?: { low: number; high: number };
}

const covers = (h: Holding, t: number) => (h.from === null || h.from.getTime() <= t) && (h.to === null || t < h.to.getTime());
const overlaps = (h: Holding, lo: number, hi: number) => (h.from === null || h.from.getTime() <= hi) && (h.to === null || lo < h.to.getTime());

/**
 * The decision. `holdings` are the records of the address that overlap
 * [at − 14 h, at + 14 h] (or cover `now` when at is null — plus any lease of
 * the address at all, whose mere existence makes a timeless question
 * ambiguous).
 */
export function decide(q: { at: Date | null; port?: number; zoneless?: boolean; now: Date }, holdings: Holding[]): Attribution {
  let rows = holdings;
  const cgnat = rows.filter((h) => h.via === 'cgnat');
  if (cgnat.length > 0) {
    if (q.port === undefined) return { kind: 'ambiguous', reason: 'a CGNAT address and no source port: the address alone names many customers' };
    rows = rows.filter((h) => h.via !== 'cgnat' || (h.ports !== undefined && h.ports.low <= q.port! && q.port! <= h.ports.high));
  }
  if (q.at === null && rows.some((h) => h.via === 'lease')) return { kind: 'ambiguous', reason: 'a dynamic address and no time: it is leased to different customers over time' };
  const t = (q.at ?? q.now).getTime();
  const zoneless = q.at !== null && q.zoneless === true;

  const atT = rows.filter((h) => covers(h, t));
  const holdersAtT = new Set(atT.map((h) => h.customerId));
  if (holdersAtT.size > 1) return { kind: 'ambiguous', reason: `more than one record holds the address then (${atT.map((h) => h.via).join(', ')})` };

  if (zoneless) {
    const lo = t - MAX_UTC_OFFSET_MS;
    const hi = t + MAX_UTC_OFFSET_MS;
    const near = rows.filter((h) => overlaps(h, lo, hi));
    const holders = new Set(near.map((h) => h.customerId));
    if (holders.size > 1 || (holders.size === 1 && atT.length === 0)) {
      return { kind: 'ambiguous', reason: 'a time without a zone within 14 h of a change of who held the address: the real instant may belong to another holder' };
    }
  }
  const h = atT[0];
  if (!h || h.customerId === null) return { kind: 'unknown' };
  return { kind: 'customer', customerId: h.customerId, via: h.via, validFrom: h.from, validTo: h.to };
}

const ISO = /^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?))?(Z|[+-]\d{2}(?::?\d{2})?)?$/i;

/**
 * A time as the desk types it (CLI, console): ISO 8601 and whether it had a
 * zone; null when it is not one. Without a zone it is read as UTC and flagged
 * zoneless, which attribution answers with care (see decide()).
 */
export function parseTime(text: string): { at: Date; zoneless: boolean } | null {
  const m = ISO.exec(text.trim());
  if (!m) return null;
  const [, date, time = '00:00', zone] = m;
  let z = zone ?? 'Z';
  if (/^[+-]\d{2}$/.test(z)) z += ':00';
  else if (/^[+-]\d{4}$/.test(z)) z = `${z.slice(0, 3)}:${z.slice(3)}`;
  const at = new Date(`${date}T${time}${z.toUpperCase()}`);
  if (Number.isNaN(at.getTime())) return null;
  // Date accepts 2026-02-30; insist the calendar date exists.
  if (!zone && at.toISOString().slice(0, 10) !== date) return null;
  return { at, zoneless: !zone };
}

const CANONICAL_V4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/** An address as PostgreSQL's inet text (IPv4-mapped IPv6 as IPv4); throws on anything else. */
export function canonicalIp(ip: string): string {
  // Already canonical IPv4 (no leading zeros, each part ≤ 255) is by far the common case — every
  // record of a lease import passes here — and is its own answer.
  if (CANONICAL_V4.test(ip)) return ip;
  const trimmed = ip.trim();
  if (!ipaddr.isValid(trimmed) || trimmed.includes('/')) throw new TypeError(`not an IP address: ${JSON.stringify(ip.slice(0, 60))}`);
  let addr = ipaddr.parse(trimmed);
  if (addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress()) addr = (addr as ipaddr.IPv6).toIPv4Address();
  // ipaddr.isValid accepts classful shorthands ("10.1"); insist on the four-part form.
  if (addr.kind() === 'ipv4' && !ipaddr.IPv4.isValidFourPartDecimal(trimmed.replace(/^::ffff:/i, ''))) throw new TypeError(`not an IP address: ${JSON.stringify(ip.slice(0, 60))}`);
  return addr.toString();
}

interface Row {
  via: 'static' | 'lease' | 'cgnat';
  customer_id: string | null;
  lo: Date | null;
  hi: Date | null;
  plo: number | null;
  phi: number | null;
}

/** The records of one address around a time, for decide() (the SQL function desk_holdings, migration 0303). */
export async function findHoldings(db: Db, q: AttributionQuery, now: Date): Promise<Holding[]> {
  const ip = canonicalIp(q.ip);
  const t = q.at ?? now;
  const slack = q.at !== null && q.zoneless ? MAX_UTC_OFFSET_MS : 0;
  const lo = new Date(t.getTime() - slack);
  const hi = new Date(t.getTime() + slack);
  const { rows } = await sql<Row>`
    select via, customer_id, lo, hi, plo, phi from desk_holdings(${ip}::inet, ${lo}::timestamptz, ${hi}::timestamptz, ${q.at === null})`.execute(db);
  return rows.map((r) => ({
    via: r.via,
    customerId: r.customer_id,
    from: r.lo === null ? null : new Date(r.lo),
    to: r.hi === null ? null : new Date(r.hi),
    ...(r.via === 'cgnat' ? { ports: { low: Number(r.plo), high: Number(r.phi) } } : {}),
  }));
}

/** Who held `ip` at `at` (port for CGNAT; zoneless when the time came without a zone and was read as UTC). */
export async function attribute(db: Db, q: AttributionQuery): Promise<Attribution> {
  const now = new Date();
  const holdings = await findHoldings(db, q, now);
  return decide({ at: q.at, port: q.port, zoneless: q.zoneless, now }, holdings);
}

/**
 * The customer's addresses at `at` (default now) as CIDR strings: static
 * networks as assigned, leased addresses as /32 or /128. CGNAT blocks are
 * not addresses of their own: see currentCgnatBlocks.
 */
export async function currentAddresses(db: Db, customerId: string, at: Date = new Date()): Promise<string[]> {
  const { rows } = await sql<{ cidr: string }>`
    select s.network::text as cidr from static_assignments s where s.customer_id = ${customerId} and s.valid @> ${at}::timestamptz
    union
    select host(l.ip) || case when family(l.ip) = 4 then '/32' else '/128' end from leases l
      where l.customer_id = ${customerId} and l.valid @> ${at}::timestamptz
    union
    select host(l.ip) || case when family(l.ip) = 4 then '/32' else '/128' end from leases l
      join customer_lines cl on cl.kind = l.line_kind and cl.value = l.line_value
      where l.customer_id is null and cl.customer_id = ${customerId} and l.valid @> ${at}::timestamptz
    order by 1`.execute(db);
  return rows.map((r) => r.cidr);
}

/** The customer's CGNAT port blocks at `at` (default now); ports inclusive. */
export async function currentCgnatBlocks(db: Db, customerId: string, at: Date = new Date()): Promise<{ ip: string; low: number; high: number }[]> {
  const { rows } = await sql<{ ip: string; low: number; high: number }>`
    select host(public_ip) as ip, lower(ports) as low, upper(ports) - 1 as high from cgnat_blocks
      where customer_id = ${customerId} and valid @> ${at}::timestamptz order by 1, 2`.execute(db);
  return rows.map((r) => ({ ip: r.ip, low: Number(r.low), high: Number(r.high) }));
}

/** True when the address is, or ever was, ours to hand out: in a static network, leased, or a CGNAT public address. */
export async function isCustomerSpace(db: Db, ip: string): Promise<boolean> {
  let addr: string;
  try {
    addr = canonicalIp(ip);
  } catch {
    return false;
  }
  const { rows } = await sql<{ yes: boolean }>`
    select (exists (select 1 from static_assignments where network >>= ${addr}::inet)
         or exists (select 1 from leases where ip = ${addr}::inet)
         or exists (select 1 from cgnat_blocks where public_ip = ${addr}::inet)) as yes`.execute(db);
  return rows[0]?.yes === true;
}
