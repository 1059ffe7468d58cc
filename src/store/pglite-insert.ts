/*
 * store/pglite-insert — whole rows into one table of the embedded store as a
 * prepared statement: one call into PGlite for a group of rows.
 *
 * Why: the message log writes a group of records before the replies to DATA
 * (store/message-log), and on PGlite that work is this process's CPU.
 * PGlite's query() makes six calls into its WASM engine per statement
 * (Parse, Describe, Bind, Describe, Execute, Sync), and a multi-row INSERT of
 * N rows is a new statement text for every N, parsed and planned each time;
 * Kysely compiles it first. Here the single-row INSERT is parsed once per
 * database (a named statement), and a group is one protocol message: Bind
 * and Execute for each row, then Sync. In a micro-benchmark on this machine
 * (bench/README.md, issue 16) that took a record from ~0.6 to ~0.25 ms of CPU
 * alone and from ~0.3 to ~0.17 ms in groups of three.
 *
 * The same guarantees as one INSERT: everything up to Sync is one implicit
 * transaction (PostgreSQL's extended protocol), so a group commits whole or
 * not at all, and execProtocol rejects with the database's error. It runs
 * through the dialect's queue (PGliteDialect.exclusive), never inside
 * another caller's transaction. Values travel as text, in PostgreSQL's input
 * syntax (textValue); the server checks each against its column's type.
 */
import { protocol } from '@electric-sql/pglite';
import type { PGliteDialect } from './pglite-dialect.ts';

/** A value in PostgreSQL's text input syntax; null for SQL NULL. Arrays are one-dimensional arrays of strings, numbers or nulls. */
export function textValue(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'string') return v;
  if (v instanceof Date) return v.toISOString();
  if (Array.isArray(v)) return `{${v.map(arrayElement).join(',')}}`;
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  throw new TypeError(`no text form for a ${typeof v} value`);
}

/** An array element, always quoted (so NULL, braces, commas and white space are data), with `"` and `\` escaped. */
function arrayElement(v: unknown): string {
  if (v === null || v === undefined) return 'NULL';
  if (Array.isArray(v)) throw new TypeError('nested arrays are not supported');
  return `"${textValue(v)!.replace(/["\\]/g, '\\$&')}"`;
}

const S = protocol.serialize;

/**
 * A writer of whole rows into `table` (every row's values for `columns`, in
 * that order; a missing value is NULL). Resolves once the group committed.
 */
export function pgliteInsert(dialect: PGliteDialect, table: string, columns: readonly string[]): (rows: readonly Record<string, unknown>[]) => Promise<void> {
  const name = `backstop_insert_${table}`;
  const text = `insert into ${quote(table)} (${columns.map(quote).join(', ')}) values (${columns.map((_, i) => `$${i + 1}`).join(', ')})`;
  let prepared = false;
  return (rows) =>
    dialect.exclusive(async (pg) => {
      if (rows.length === 0) return;
      // After a failure the statement may or may not exist: close it (no error if absent) and parse again.
      const parts: Uint8Array[] = prepared ? [] : [S.close({ type: 'S', name }), S.parse({ name, text, types: [] })];
      for (const row of rows) {
        parts.push(S.bind({ statement: name, values: columns.map((c) => textValue(row[c])) }), S.execute({}));
      }
      parts.push(S.sync());
      prepared = false;
      await pg.execProtocol(concat(parts));
      prepared = true;
    });
}

function quote(identifier: string): string {
  return `"${identifier.replace(/"/g, '""')}"`;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
