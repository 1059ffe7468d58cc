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
 * a temporary table and are merged with a handful of set-based statements,
 * all in one transaction, each a nested loop of GiST probes (hash joins are
 * switched off for the transaction: they would scan the whole lease table).
 * What bounds it is the GiST index itself — every added or closed lease is
 * an index insertion under the exclusion constraint (bench/attribution.ts).
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
  const byKey = new Map<string, Staged>();
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
    byKey.set(`${ip} ${lo}`, { ip, lo: lo!, hi, kind: line?.kind ?? null, value: line?.value ?? null, customerId: r.customerId ?? null });
  });
  const rows = [...byKey.values()].sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : a.lo - b.lo));
  const out: Staged[] = [];
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    const next = rows[i + 1];
    if (next && next.ip === r.ip && (r.hi === null || r.hi > next.lo)) r.hi = next.lo;
    // A lease that ended when (or before) it began held nothing.
    if (r.hi !== null && r.hi <= r.lo) continue;
    out.push(r);
  }
  return out;
}

/** Merges lease records into the store (see the header); records one lease_imports row. */
export async function importLeaseRecords(db: Db, records: LeaseRecord[], source: ImportSource): Promise<ImportCounts> {
  const shaped = shapeLeaseRecords(records);
  return recorded(db, source, records.length, () =>
    db.transaction().execute(async (tx) => {
      await sql`create temp table lease_stage (ip inet not null, lo timestamptz not null, hi timestamptz, line_kind text, line_value text, customer_id text) on commit drop`.execute(tx);
      for (let i = 0; i < shaped.length; i += CHUNK) {
        const part = shaped.slice(i, i + CHUNK);
        await sql`insert into lease_stage select * from unnest(
          ${part.map((r) => r.ip)}::inet[], ${part.map((r) => new Date(r.lo).toISOString())}::timestamptz[],
          ${part.map((r) => (r.hi === null ? null : new Date(r.hi).toISOString()))}::timestamptz[],
          ${part.map((r) => r.kind)}::text[], ${part.map((r) => r.value)}::text[], ${part.map((r) => r.customerId)}::text[])`.execute(tx);
      }
      await sql`analyze lease_stage`.execute(tx);
      // Every statement below pairs a few thousand staged rows with a lease table of millions: the
      // planner would hash the whole table; probing the GiST index per staged row is what scales.
      await sql`set local enable_hashjoin = off`.execute(tx);
      await sql`set local enable_mergejoin = off`.execute(tx);
      // The customer a known line names now; unknown lines stay null and are resolved at attribution.
      await sql`update lease_stage s set customer_id = cl.customer_id from customer_lines cl
        where s.customer_id is null and cl.kind = s.line_kind and cl.value = s.line_value`.execute(tx);
      // A new record stops where a later stored lease of its address begins.
      await sql`update lease_stage s set hi = n.next_lo from (
          select s2.ctid as sid, min(lower(l.valid)) as next_lo from lease_stage s2 join leases l
            on l.ip = s2.ip and l.valid && tstzrange(s2.lo, s2.hi) and lower(l.valid) > s2.lo
          group by s2.ctid) n
        where s.ctid = n.sid`.execute(tx);
      // Identical to what is stored: unchanged (a newly known customer is filled in on the way).
      await sql`update leases l set customer_id = s.customer_id from lease_stage s
        where l.ip = s.ip and lower(l.valid) = s.lo and l.valid = tstzrange(s.lo, s.hi)
          and l.line_kind is not distinct from s.line_kind and l.line_value is not distinct from s.line_value
          and l.customer_id is null and s.customer_id is not null`.execute(tx);
      const unchanged = await sql`delete from lease_stage s using leases l
        where l.ip = s.ip and lower(l.valid) = s.lo and l.valid = tstzrange(s.lo, s.hi)
          and l.line_kind is not distinct from s.line_kind and l.line_value is not distinct from s.line_value`.execute(tx);
      // Stored leases still running at a new record's start end there.
      const closedEarlier = await sql`update leases l set valid = tstzrange(lower(l.valid), c.cut) from (
          select l2.id, min(s.lo) as cut from lease_stage s join leases l2
            on l2.ip = s.ip and l2.valid && tstzrange(s.lo, s.lo, '[]') and lower(l2.valid) < s.lo
          group by l2.id) c
        where l.id = c.id`.execute(tx);
      // Records now identical to the lease just closed were counted as closed.
      await sql`delete from lease_stage s using leases l
        where l.ip = s.ip and lower(l.valid) = s.lo and l.valid = tstzrange(s.lo, s.hi)
          and l.line_kind is not distinct from s.line_kind and l.line_value is not distinct from s.line_value`.execute(tx);
      // Same address and start: the record's end and line replace the stored ones.
      const replaced = await sql<{ was_open: boolean }>`
        with m as (
          select l0.id, upper_inf(l0.valid) as open_before, s.lo, s.hi, s.line_kind, s.line_value, s.customer_id
            from lease_stage s join leases l0 on l0.ip = s.ip and lower(l0.valid) = s.lo)
        update leases l set valid = tstzrange(m.lo, m.hi), line_kind = m.line_kind, line_value = m.line_value,
            customer_id = coalesce(m.customer_id, l.customer_id), source = ${source.format}
          from m where l.id = m.id
        returning (m.open_before and m.hi is not null) as was_open`.execute(tx);
      await sql`delete from lease_stage s using leases l where l.ip = s.ip and lower(l.valid) = s.lo`.execute(tx);
      const added = await sql`insert into leases (ip, customer_id, line_kind, line_value, valid, source)
        select ip, customer_id, line_kind, line_value, tstzrange(lo, hi), ${source.format} from lease_stage`.execute(tx);
      const closedByReplace = replaced.rows.filter((r) => r.was_open).length;
      return {
        read: records.length,
        added: Number(added.numAffectedRows ?? 0) + (replaced.rows.length - closedByReplace),
        unchanged: Number(unchanged.numAffectedRows ?? 0),
        closed: Number(closedEarlier.numAffectedRows ?? 0) + closedByReplace,
      };
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
            const oldTo = old.upper === null ? null : new Date(old.upper).getTime();
            if (old.customer_id === r.customerId && oldTo === (r.to?.getTime() ?? null)) counts.unchanged++;
            else {
              await sql`update static_assignments set customer_id = ${r.customerId}, valid = tstzrange(${r.from}::timestamptz, ${r.to}::timestamptz), source = ${source.format} where id = ${old.id}`.execute(tx);
              if (oldTo === null && r.to !== null) counts.closed++;
              else counts.added++;
            }
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
            const oldTo = old.upper === null ? null : new Date(old.upper).getTime();
            if (old.customer_id === r.customerId && oldTo === (r.to?.getTime() ?? null)) counts.unchanged++;
            else {
              await sql`update cgnat_blocks set customer_id = ${r.customerId}, valid = tstzrange(${r.from}::timestamptz, ${r.to}::timestamptz), source = ${source.format} where id = ${old.id}`.execute(tx);
              if (oldTo === null && r.to !== null) counts.closed++;
              else counts.added++;
            }
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
