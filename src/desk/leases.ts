/*
 * desk/leases — keeping the "who held an address" tables in step with the
 * ISP's own lease and assignment data, so nobody edits alias lists by hand.
 *
 * Parsers (desk/formats/<format>.ts) turn a file into LeaseRecords; this
 * module merges them into the store, idempotently and incrementally, so a
 * cron job can re-read a growing log every few minutes:
 *
 *   - a record identical to a stored lease (address, start, end, line) is
 *     "unchanged" — re-reading a file adds nothing;
 *   - a record with the start of a stored lease replaces its end and line
 *     (an open lease that has now ended is "closed");
 *   - a stored lease still running when a later lease for the same address
 *     starts is closed at that start ("closed"); within one batch the same
 *     rule shapes the records before they are stored;
 *   - a new record stops where a later stored lease of the address begins;
 *   - everything else is "added".
 * The leases table's exclusion constraint stays the final word: if the data
 * still contradicts itself the whole import rolls back and the lease_imports
 * row says why.
 *
 * A lease is tied to its customer by the line identifier it carries; when the
 * line is already known the customer id is stored, otherwise it stays null
 * and attribution resolves it through customer_lines later.
 *
 * Speed: the records go in with one `unnest` statement per 10,000 rows into
 * a temporary table; one statement then classifies every record at once
 * (unchanged, replaces, closes a running lease, added) from two probes of
 * the btree leases_ip_start per record, and at most three statements write
 * what changes — a re-read writes nothing. One import runs at a time (an
 * advisory lock). What bounds it is the exclusion constraint: every closed
 * or added lease is a GiST insertion plus a GiST search for overlaps, about
 * two thirds of the server's time per closing record (bench/README.md).
 *
 * Static assignments and CGNAT blocks (CSV, desk/formats/static-csv.ts and
 * cgnat-csv.ts) are few and change rarely; they are merged row by row with
 * the same idempotence and counted in the same lease_imports table.
 */
import { sql } from 'kysely';
import type { LineKind } from '../store/schema.ts';
import type { Db } from '../store/store.ts';
import { canonicalIp } from './attribute.ts';
import { normaliseLine } from './customers.ts';

export type { LineKind };

export interface LeaseRecord {
  ip: string;
  start: Date;
  /** null: still running (closed by the next lease of the address). */
  end: Date | null;
  line: { kind: LineKind; value: string } | null;
  customerId?: string;
}

export interface ImportCounts {
  read: number;
  added: number;
  unchanged: number;
  closed: number;
}

export interface ImportSource {
  format: string;
  file: string;
}

export class LeaseImportError extends Error {}

const CHUNK = 10_000;
/** pg_advisory_xact_lock key that serialises lease imports (migrations use 727274). */
const IMPORT_LOCK = 727301;

/** Runs `work` under a lease_imports row that records the counts, or the error. */
async function recorded(db: Db, source: ImportSource, read: number, work: () => Promise<ImportCounts>): Promise<ImportCounts> {
  const row = await db
    .insertInto('lease_imports')
    .values({ format: source.format.slice(0, 40), file: source.file.slice(0, 1000), rows_read: read })
    .returning('id')
    .executeTakeFirstOrThrow();
  try {
    const counts = await work();
    await db
      .updateTable('lease_imports')
      .set({ finished_at: new Date(), rows_read: counts.read, rows_added: counts.added, rows_unchanged: counts.unchanged, rows_closed: counts.closed })
      .where('id', '=', row.id)
      .execute();
    return counts;
  } catch (err) {
    await db
      .updateTable('lease_imports')
      .set({ finished_at: new Date(), error: (err as Error).message.slice(0, 2000) })
      .where('id', '=', row.id)
      .execute();
    throw err;
  }
}

interface Staged {
  ip: string;
  lo: number;
  hi: number | null;
  kind: string | null;
  value: string | null;
  customerId: string | null;
}

/** Checks and normalises the records, last record wins for the same address and start, and closes each open record at the next start of its address. */
export function shapeLeaseRecords(records: LeaseRecord[]): Staged[] {
  // Grouped by address (a Map keeps first-seen order): only an address's own records need sorting,
  // and a lease log rarely has more than a few per address in one batch.
  const byIp = new Map<string, Staged[]>();
  records.forEach((r, i) => {
    let ip: string;
    try {
      ip = canonicalIp(r.ip);
    } catch {
      throw new LeaseImportError(`record ${i + 1}: not an IP address: ${JSON.stringify(String(r.ip).slice(0, 60))}`);
    }
    const lo = r.start?.getTime();
    if (!Number.isFinite(lo)) throw new LeaseImportError(`record ${i + 1} (${ip}): no valid start time`);
    const hi = r.end === null ? null : r.end.getTime();
    if (hi !== null && !Number.isFinite(hi)) throw new LeaseImportError(`record ${i + 1} (${ip}): invalid end time`);
    let line: { kind: string; value: string } | null = null;
    if (r.line) {
      line = normaliseLine(r.line.kind, r.line.value);
      if (!line) throw new LeaseImportError(`record ${i + 1} (${ip}): bad line identifier ${JSON.stringify(`${r.line.kind}:${r.line.value}`.slice(0, 80))}`);
    }
    const staged: Staged = { ip, lo: lo!, hi, kind: line?.kind ?? null, value: line?.value ?? null, customerId: r.customerId ?? null };
    const group = byIp.get(ip);
    if (group) group.push(staged);
    else byIp.set(ip, [staged]);
  });
  const out: Staged[] = [];
  for (const group of byIp.values()) {
    // Stable sort: of records with the same start the last one read is the last of its run, and wins.
    const rows = group.length === 1 ? group : group.sort((a, b) => a.lo - b.lo).filter((r, i, all) => all[i + 1]?.lo !== r.lo);
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i]!;
      const next = rows[i + 1];
      if (next && (r.hi === null || r.hi > next.lo)) r.hi = next.lo;
      // A lease that ended when (or before) it began held nothing.
      if (r.hi !== null && r.hi <= r.lo) continue;
      out.push(r);
    }
  }
  return out;
}

/** Merges lease records into the store (see the header); records one lease_imports row. */
export async function importLeaseRecords(db: Db, records: LeaseRecord[], source: ImportSource): Promise<ImportCounts> {
  const shaped = shapeLeaseRecords(records);
  return recorded(db, source, records.length, () =>
    db.transaction().execute(async (tx) => {
      // One import at a time: the plan below names stored rows by id, found before they are written.
      await sql`select pg_advisory_xact_lock(${IMPORT_LOCK})`.execute(tx);
      // Every statement pairs a batch with a lease table of millions: hashing or merging would read
      // the whole table, probing its btree per staged row is what scales. The sorts fit in memory.
      await sql`set local enable_hashjoin = off`.execute(tx);
      await sql`set local enable_mergejoin = off`.execute(tx);
      await sql`set local work_mem = '64MB'`.execute(tx);
      await sql`create temp table lease_stage (ip inet not null, lo timestamptz not null, hi timestamptz, line_kind text, line_value text, customer_id text) on commit drop`.execute(tx);
      for (let i = 0; i < shaped.length; i += CHUNK) {
        const part = shaped.slice(i, i + CHUNK);
        // The customer a known line names now; unknown lines stay null and are resolved at attribution.
        // Times travel as epoch milliseconds (float8 holds them exactly to the microsecond): cheaper
        // to send and convert than ISO text.
        await sql`insert into lease_stage
          select u.ip, to_timestamp(u.lo / 1000), to_timestamp(u.hi / 1000), u.kind, u.value, coalesce(u.customer_id, cl.customer_id) from unnest(
            ${part.map((r) => r.ip)}::inet[], ${part.map((r) => r.lo)}::float8[], ${part.map((r) => r.hi)}::float8[],
            ${part.map((r) => r.kind)}::text[], ${part.map((r) => r.value)}::text[], ${part.map((r) => r.customerId)}::text[]
          ) u (ip, lo, hi, kind, value, customer_id)
          left join customer_lines cl on u.customer_id is null and cl.kind = u.kind and cl.value = u.value`.execute(tx);
      }
      // The plan, one row per staged record, from two btree probes (leases_ip_start) per record:
      //   prev — the stored lease of the address with the latest start at or before the record's;
      //          storage is overlap-free, so it is the only one that can hold the record's start;
      //   next — the first stored start after the record's, where a new record must stop (hi).
      // cls: U identical to prev (unchanged), R same start as prev (replaces its end and line),
      //      C prev still running at the record's start (prev ends there; the record is added),
      //      I nothing stored holds the start (added).
      // Records of one address are sorted and non-overlapping (shapeLeaseRecords), so the records that
      // touch one stored lease are neighbours: lag/lead tell the first record to close it (`closes`,
      // unless an R record of the same lease comes first and sets its end itself) and whether an R
      // record's lease is also closed by the record after it (`closed_next`).
      await sql`create temp table lease_plan on commit drop as
        with x as (
          select s.ip, s.lo, s.line_kind, s.line_value, s.customer_id,
              case when n.next_lo is not null and (s.hi is null or s.hi > n.next_lo) then n.next_lo else s.hi end as hi,
              p.id as prev_id, lower(p.valid) as prev_lo, upper(p.valid) as prev_hi,
              p.line_kind as prev_kind, p.line_value as prev_value, p.customer_id as prev_customer
            from (select * from lease_stage order by ip, lo) s
            left join lateral (select l.id, l.valid, l.line_kind, l.line_value, l.customer_id from leases l
                where l.ip = s.ip and lower(l.valid) <= s.lo order by lower(l.valid) desc limit 1) p on true
            -- No stored lease starts after an open prev, nor before the end of a prev that ends
            -- after the record: then there is nothing to probe for (a re-read, a lease log's renewals).
            left join lateral (select lower(l.valid) as next_lo from leases l
                where (p.id is null or (upper(p.valid) is not null and (s.hi is null or s.hi > upper(p.valid))))
                  and l.ip = s.ip and lower(l.valid) > s.lo order by lower(l.valid) limit 1) n on true),
        y as (
          select x.*, case
              when prev_lo = lo then
                case when prev_hi is not distinct from hi and prev_kind is not distinct from line_kind and prev_value is not distinct from line_value
                  then 'U' else 'R' end
              when prev_lo < lo and (prev_hi is null or prev_hi > lo) then 'C'
              else 'I' end as cls
            from x)
        select y.*,
            cls = 'C' and lag(prev_id) over w is distinct from prev_id as closes,
            cls = 'C' and (lag(prev_id) over w is distinct from prev_id or lag(cls) over w is not distinct from 'R') as counts_closed,
            cls = 'R' and lead(cls) over w is not distinct from 'C' and lead(prev_id) over w is not distinct from prev_id as closed_next,
            lead(lo) over w as next_lo
          from y window w as (partition by ip order by lo)`.execute(tx);
      const { rows } = await sql<{ unchanged: number; fill: number; replace: number; close: number; insert: number; added: number; closed: number }>`
        select count(*) filter (where cls = 'U')::int as unchanged,
          count(*) filter (where cls = 'U' and prev_customer is null and customer_id is not null)::int as fill,
          count(*) filter (where cls = 'R')::int as replace,
          count(*) filter (where closes)::int as close,
          count(*) filter (where cls in ('C', 'I'))::int as insert,
          -- As if applied one after the other: closes first, then replacements, then additions. A
          -- replacement is "closed" when it gives an open lease an end, else "added"; one that only
          -- repeats what closing its lease already did counts nothing.
          (count(*) filter (where cls in ('C', 'I'))
            + count(*) filter (where cls = 'R' and not closed_next and not (prev_hi is null and hi is not null))
            + count(*) filter (where cls = 'R' and closed_next and not (hi is not distinct from next_lo
                and prev_kind is not distinct from line_kind and prev_value is not distinct from line_value)))::int as added,
          (count(*) filter (where counts_closed)
            + count(*) filter (where cls = 'R' and not closed_next and prev_hi is null and hi is not null))::int as closed
        from lease_plan`.execute(tx);
      const plan = rows[0]!;
      // Stored leases still running at a new record's start end there (it shrinks: no overlap can arise).
      if (plan.close > 0) {
        await sql`update leases l set valid = tstzrange(p.prev_lo, p.lo) from lease_plan p
          where p.closes and l.id = p.prev_id`.execute(tx);
      }
      // Same start: the record's end and line replace the stored ones (its end is cut at the next
      // stored start, so it overlaps nothing); an unchanged lease gets a newly known customer.
      if (plan.replace + plan.fill > 0) {
        await sql`update leases l set valid = tstzrange(p.lo, p.hi), line_kind = p.line_kind, line_value = p.line_value,
            customer_id = coalesce(p.customer_id, l.customer_id), source = case when p.cls = 'R' then ${source.format} else l.source end
          from lease_plan p
          where (p.cls = 'R' or (p.cls = 'U' and p.prev_customer is null and p.customer_id is not null)) and l.id = p.prev_id`.execute(tx);
      }
      if (plan.insert > 0) {
        await sql`insert into leases (ip, customer_id, line_kind, line_value, valid, source)
          select ip, customer_id, line_kind, line_value, tstzrange(lo, hi), ${source.format} from lease_plan
          where cls in ('C', 'I') order by ip, lo`.execute(tx);
      }
      return { read: records.length, added: plan.added, unchanged: plan.unchanged, closed: plan.closed };
    }),
  );
}

/** A static assignment: a network (CIDR) assigned to a customer for a period. */
export interface StaticRecord {
  customerId: string;
  network: string;
  from: Date;
  to: Date | null;
  /** Where it came from, for error messages (CSV line). */
  line?: number;
}

/** A CGNAT port block: public address, ports low..high inclusive, customer, period. */
export interface CgnatRecord {
  customerId: string;
  publicIp: string;
  low: number;
  high: number;
  from: Date;
  to: Date | null;
  line?: number;
}

function where(r: { line?: number }, i: number): string {
  return r.line ? `line ${r.line}` : `record ${i + 1}`;
}

function explain(err: unknown, at: string): Error {
  const e = err as Error & { code?: string; constraint?: string };
  if (e.code === '23P01') return new LeaseImportError(`${at}: overlaps a stored assignment (${e.constraint ?? 'exclusion constraint'}); end the old one first`);
  if (e.code === '23503') return new LeaseImportError(`${at}: no customer with that id (import customers first)`);
  return new LeaseImportError(`${at}: ${e.message}`);
}

/**
 * A re-read row that matches a stored one by its key (network or address and
 * ports, and start): `unchanged` when customer and end agree; otherwise the
 * stored row takes the new customer and end, counted `closed` when an open
 * row gets an end and `added` for any other change.
 */
export function rereadChange(stored: { customer_id: string; upper: Date | null }, read: { customerId: string; to: Date | null }): 'unchanged' | 'closed' | 'added' {
  const storedTo = stored.upper === null ? null : new Date(stored.upper).getTime();
  if (stored.customer_id === read.customerId && storedTo === (read.to?.getTime() ?? null)) return 'unchanged';
  return storedTo === null && read.to !== null ? 'closed' : 'added';
}

/**
 * Merges static assignments: same network and start → unchanged, or its end
 * and customer replaced ("closed" when an open one gets an end); else added.
 * One transaction; an overlap names the record.
 */
export async function importStaticAssignments(db: Db, records: StaticRecord[], source: ImportSource): Promise<ImportCounts> {
  return recorded(db, source, records.length, () =>
    db.transaction().execute(async (tx) => {
      const counts: ImportCounts = { read: records.length, added: 0, unchanged: 0, closed: 0 };
      for (const [i, r] of records.entries()) {
        try {
          const { rows } = await sql<{ id: number; customer_id: string; upper: Date | null }>`
            select id, customer_id, upper(valid) as upper from static_assignments where network = ${r.network}::cidr and lower(valid) = ${r.from}::timestamptz`.execute(tx);
          const old = rows[0];
          if (old) {
            const change = rereadChange(old, r);
            if (change !== 'unchanged') await sql`update static_assignments set customer_id = ${r.customerId}, valid = tstzrange(${r.from}::timestamptz, ${r.to}::timestamptz), source = ${source.format} where id = ${old.id}`.execute(tx);
            counts[change]++;
          } else {
            await sql`insert into static_assignments (customer_id, network, valid, source) values (${r.customerId}, ${r.network}::cidr, tstzrange(${r.from}::timestamptz, ${r.to}::timestamptz), ${source.format})`.execute(tx);
            counts.added++;
          }
        } catch (err) {
          throw explain(err, `${where(r, i)} (${r.network})`);
        }
      }
      return counts;
    }),
  );
}

/** Merges CGNAT blocks: same address, ports and start → unchanged or end/customer replaced; else added. */
export async function importCgnatBlocks(db: Db, records: CgnatRecord[], source: ImportSource): Promise<ImportCounts> {
  return recorded(db, source, records.length, () =>
    db.transaction().execute(async (tx) => {
      const counts: ImportCounts = { read: records.length, added: 0, unchanged: 0, closed: 0 };
      for (const [i, r] of records.entries()) {
        const ip = canonicalIp(r.publicIp);
        try {
          const { rows } = await sql<{ id: number; customer_id: string; upper: Date | null }>`
            select id, customer_id, upper(valid) as upper from cgnat_blocks
            where public_ip = ${ip}::inet and ports = int4range(${r.low}, ${r.high}, '[]') and lower(valid) = ${r.from}::timestamptz`.execute(tx);
          const old = rows[0];
          if (old) {
            const change = rereadChange(old, r);
            if (change !== 'unchanged') await sql`update cgnat_blocks set customer_id = ${r.customerId}, valid = tstzrange(${r.from}::timestamptz, ${r.to}::timestamptz), source = ${source.format} where id = ${old.id}`.execute(tx);
            counts[change]++;
          } else {
            await sql`insert into cgnat_blocks (public_ip, ports, valid, customer_id, source)
              values (${ip}::inet, int4range(${r.low}, ${r.high}, '[]'), tstzrange(${r.from}::timestamptz, ${r.to}::timestamptz), ${r.customerId}, ${source.format})`.execute(tx);
            counts.added++;
          }
        } catch (err) {
          throw explain(err, `${where(r, i)} (${ip} ${r.low}-${r.high})`);
        }
      }
      return counts;
    }),
  );
}

export interface ImportStatus {
  id: number;
  format: string;
  file: string;
  startedAt: Date;
  finishedAt: Date | null;
  read: number;
  added: number;
  unchanged: number;
  closed: number;
  error: string | null;
}

/** The latest import runs, newest first (console, `backstop leases status`). */
export async function leaseImportStatus(db: Db, limit = 20): Promise<ImportStatus[]> {
  const rows = await db.selectFrom('lease_imports').selectAll().orderBy('started_at', 'desc').orderBy('id', 'desc').limit(limit).execute();
  return rows.map((r) => ({
    id: Number(r.id), format: r.format, file: r.file, startedAt: r.started_at, finishedAt: r.finished_at,
    read: r.rows_read, added: r.rows_added, unchanged: r.rows_unchanged, closed: r.rows_closed, error: r.error,
  }));
}
