/*
 * desk/customers — the ISP's customers and the line identifiers its network
 * knows them by (RADIUS User-Name, DHCP client MAC, relay-agent circuit-id,
 * subscriber id), imported from the ISP's own CSV export:
 *
 *   id,name,email,phone,language,time_zone,lines
 *   c-1001,Alice Example,alice@example.net,,de,Europe/Berlin,radius-user:alice;mac:00:11:22:33:44:55
 *
 * Only id and name are required columns. The file is the truth for the
 * customers it names: each is inserted or updated, and its lines become
 * exactly those listed (a line listed for another customer moves to this
 * one). Customers the file does not name are left alone, so exports can be
 * partial and re-importing the same file changes nothing.
 *
 * Every row is checked (zod) before anything is written: one bad row refuses
 * the whole file, with each problem's line number, column, value and what was
 * expected. Parsing is csv-parse's (RFC 4180 quoting, embedded newlines, BOM).
 *
 * Leases carry line identifiers, not customer ids; a lease whose line was not
 * known when it was imported is resolved at attribution time through
 * customer_lines, so importing customers after leases works.
 */
import { parse as parseCsv } from 'csv-parse/sync';
import { sql } from 'kysely';
import { z } from 'zod';
import type { LineKind } from '../store/schema.ts';
import type { Db } from '../store/store.ts';
import { unixLines } from './formats/csv-table.ts';

export type { LineKind };
export const LINE_KINDS: readonly LineKind[] = ['radius-user', 'mac', 'circuit-id', 'subscriber-id'];

export interface CustomerLine {
  kind: LineKind;
  value: string;
}

export interface Customer {
  id: string;
  name: string;
  email: string | null;
  phone: string | null;
  language: string;
  timeZone: string;
  lines: CustomerLine[];
}

/** A MAC in any common spelling (colons, dashes, Cisco dots, bare hex) as lower-case colon form; null if not a MAC. */
export function normaliseMac(value: string): string | null {
  const hex = value.trim().toLowerCase().replace(/[:.-]/g, '');
  if (!/^[0-9a-f]{12}$/.test(hex)) return null;
  // Accept only the separators' usual placements, not arbitrary punctuation.
  if (!/^([0-9a-f]{2}([:-]?)){5}[0-9a-f]{2}$/i.test(value.trim()) && !/^[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}$/i.test(value.trim())) return null;
  return hex.match(/../g)!.join(':');
}

/** A line identifier as stored: MACs normalised, others trimmed; null when invalid. */
export function normaliseLine(kind: string, value: string): CustomerLine | null {
  if (!(LINE_KINDS as readonly string[]).includes(kind)) return null;
  const v = kind === 'mac' ? normaliseMac(value) : value.trim();
  if (!v || v.length > 253 || /[\u0000-\u001f\u007f]/.test(v)) return null;
  return { kind: kind as LineKind, value: v };
}

function validTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

const optionalText = (max: number) =>
  z
    .string()
    .trim()
    .max(max)
    .transform((v) => (v === '' ? null : v));

const linesField = z.string().transform((text, ctx) => {
  const out: CustomerLine[] = [];
  for (const part of text.split(';').map((p) => p.trim()).filter(Boolean)) {
    const colon = part.indexOf(':');
    const line = colon > 0 ? normaliseLine(part.slice(0, colon).trim(), part.slice(colon + 1)) : null;
    if (!line) {
      ctx.addIssue({ code: 'custom', message: `"${part}" is not KIND:VALUE with KIND one of ${LINE_KINDS.join(', ')} (MACs as 00:11:22:33:44:55)` });
      return z.NEVER;
    }
    out.push(line);
  }
  return out;
});

export const customerRow = z.object({
  id: z.string().trim().regex(/^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$/, 'an id of letters, digits and ._:@+- (up to 128)'),
  name: z.string().trim().min(1, 'a non-empty name').max(300),
  email: z
    .string()
    .trim()
    .max(254)
    .refine((v) => v === '' || z.email().safeParse(v).success, 'an e-mail address or nothing')
    .transform((v) => (v === '' ? null : v)),
  phone: optionalText(64),
  language: z
    .string()
    .trim()
    .transform((v) => (v === '' ? 'en' : v.toLowerCase()))
    .pipe(z.string().regex(/^[a-z]{2,3}(-[a-z0-9]{2,8})*$/, 'a language tag such as en, de or pt-br')),
  time_zone: z
    .string()
    .trim()
    .transform((v) => (v === '' ? 'UTC' : v))
    .refine(validTimeZone, 'an IANA time zone such as Europe/Berlin'),
  lines: linesField,
});

export interface ImportProblem {
  line: number;
  column: string;
  value: string;
  expected: string;
}

export class CustomerImportError extends Error {
  constructor(readonly problems: ImportProblem[]) {
    super(
      `${problems.length} problem(s) in the customer file, nothing imported:\n` +
        problems
          .slice(0, 20)
          .map((p) => `  line ${p.line}, column ${p.column}: ${JSON.stringify(p.value.slice(0, 80))} — expected ${p.expected}`)
          .join('\n'),
    );
  }
}

const COLUMNS = ['id', 'name', 'email', 'phone', 'language', 'time_zone', 'lines'] as const;

/** Parses and checks the whole file; throws CustomerImportError listing every bad field. */
export function parseCustomersCsv(text: string): Customer[] {
  let records: { record: Record<string, string>; info: { lines: number } }[];
  try {
    records = parseCsv(unixLines(text), { columns: (h: string[]) => h.map((c) => c.trim().toLowerCase()), info: true, bom: true, skip_empty_lines: true, relax_column_count: false, trim: false });
  } catch (err) {
    const e = err as Error & { lines?: number };
    throw new CustomerImportError([{ line: e.lines ?? 0, column: '-', value: '', expected: `well-formed CSV (${e.message})` }]);
  }
  const header = records.length > 0 ? Object.keys(records[0]!.record) : (text.split(/\r?\n/, 1)[0] ?? '').split(',').map((c) => c.trim().toLowerCase());
  const problems: ImportProblem[] = [];
  for (const required of ['id', 'name']) if (!header.includes(required)) problems.push({ line: 1, column: required, value: '', expected: `a header row with the columns ${COLUMNS.join(',')} (id and name required)` });
  for (const col of header) if (!(COLUMNS as readonly string[]).includes(col)) problems.push({ line: 1, column: col, value: col, expected: `only the columns ${COLUMNS.join(',')}` });
  if (problems.length) throw new CustomerImportError(problems);

  const out: Customer[] = [];
  const seen = new Map<string, number>();
  const lineOwner = new Map<string, { id: string; line: number }>();
  for (const { record, info } of records) {
    const raw = Object.fromEntries(COLUMNS.map((c) => [c, record[c] ?? '']));
    const rawId = raw.id!.trim();
    const prev = seen.get(rawId);
    if (rawId && prev !== undefined) problems.push({ line: info.lines, column: 'id', value: rawId, expected: `an id not already used on line ${prev}` });
    else if (rawId) seen.set(rawId, info.lines);
    const parsed = customerRow.safeParse(raw);
    if (!parsed.success) {
      for (const issue of parsed.error.issues) {
        const column = String(issue.path[0] ?? '-');
        problems.push({ line: info.lines, column, value: raw[column] ?? '', expected: issue.message });
      }
      continue;
    }
    const r = parsed.data;
    if (prev !== undefined) continue;
    for (const l of r.lines) {
      const key = `${l.kind}:${l.value}`;
      const owner = lineOwner.get(key);
      if (owner && owner.id !== r.id) problems.push({ line: info.lines, column: 'lines', value: key, expected: `a line not already given to ${owner.id} on line ${owner.line}` });
      lineOwner.set(key, { id: r.id, line: info.lines });
    }
    const lines = [...new Map(r.lines.map((l) => [`${l.kind}:${l.value}`, l])).values()];
    out.push({ id: r.id, name: r.name, email: r.email, phone: r.phone, language: r.language, timeZone: r.time_zone, lines });
  }
  if (problems.length) throw new CustomerImportError(problems);
  return out;
}

export interface CustomerImportResult {
  read: number;
  added: number;
  updated: number;
  unchanged: number;
  linesAdded: number;
  linesRemoved: number;
}

/** Upserts every customer of the file and sets their lines; idempotent. Throws CustomerImportError on a bad file. */
export async function importCustomers(db: Db, csvText: string): Promise<CustomerImportResult> {
  const customers = parseCustomersCsv(csvText);
  const result: CustomerImportResult = { read: customers.length, added: 0, updated: 0, unchanged: 0, linesAdded: 0, linesRemoved: 0 };
  await db.transaction().execute(async (tx) => {
    for (let i = 0; i < customers.length; i += 1000) {
      const batch = customers.slice(i, i + 1000);
      const ids = batch.map((c) => c.id);
      const rows = await sql<{ inserted: boolean }>`
        insert into customers (id, name, email, phone, language, time_zone)
        select * from unnest(${ids}::text[], ${batch.map((c) => c.name)}::text[], ${batch.map((c) => c.email)}::text[],
                             ${batch.map((c) => c.phone)}::text[], ${batch.map((c) => c.language)}::text[], ${batch.map((c) => c.timeZone)}::text[])
        on conflict (id) do update set name = excluded.name, email = excluded.email, phone = excluded.phone,
          language = excluded.language, time_zone = excluded.time_zone, updated_at = now()
        where (customers.name, customers.email, customers.phone, customers.language, customers.time_zone)
              is distinct from (excluded.name, excluded.email, excluded.phone, excluded.language, excluded.time_zone)
        returning (xmax = 0) as inserted`.execute(tx);
      const added = rows.rows.filter((r) => r.inserted).length;
      result.added += added;
      result.updated += rows.rows.length - added;
      result.unchanged += batch.length - rows.rows.length;

      const kinds = batch.flatMap((c) => c.lines.map((l) => l.kind));
      const values = batch.flatMap((c) => c.lines.map((l) => l.value));
      const owners = batch.flatMap((c) => c.lines.map(() => c.id));
      // Lines these customers no longer have go; lines listed for them come (or move) to them.
      const removed = await sql`
        delete from customer_lines cl where cl.customer_id = any(${ids}::text[])
          and not exists (select 1 from unnest(${kinds}::text[], ${values}::text[]) as n(kind, value) where n.kind = cl.kind and n.value = cl.value)`.execute(tx);
      result.linesRemoved += Number(removed.numAffectedRows ?? 0);
      const upserted = await sql`
        insert into customer_lines (customer_id, kind, value)
        select * from unnest(${owners}::text[], ${kinds}::text[], ${values}::text[])
        on conflict (kind, value) do update set customer_id = excluded.customer_id
        where customer_lines.customer_id is distinct from excluded.customer_id`.execute(tx);
      result.linesAdded += Number(upserted.numAffectedRows ?? 0);
    }
  });
  return result;
}

/** One customer with its lines, or null. */
export async function getCustomer(db: Db, id: string): Promise<Customer | null> {
  const row = await db.selectFrom('customers').selectAll().where('id', '=', id).executeTakeFirst();
  if (!row) return null;
  const lines = await db.selectFrom('customer_lines').select(['kind', 'value']).where('customer_id', '=', id).orderBy('kind').orderBy('value').execute();
  return { id: row.id, name: row.name, email: row.email, phone: row.phone, language: row.language, timeZone: row.time_zone, lines };
}

/** Customers in id order (for `backstop customers list`). */
export async function listCustomers(db: Db, opts: { limit?: number; after?: string } = {}): Promise<Customer[]> {
  let q = db.selectFrom('customers').selectAll().orderBy('id').limit(opts.limit ?? 100);
  if (opts.after) q = q.where('id', '>', opts.after);
  const rows = await q.execute();
  if (!rows.length) return [];
  const lines = await db.selectFrom('customer_lines').select(['customer_id', 'kind', 'value']).where('customer_id', 'in', rows.map((r) => r.id)).orderBy('kind').orderBy('value').execute();
  return rows.map((r) => ({
    id: r.id, name: r.name, email: r.email, phone: r.phone, language: r.language, timeZone: r.time_zone,
    lines: lines.filter((l) => l.customer_id === r.id).map((l) => ({ kind: l.kind, value: l.value })),
  }));
}
