/*
 * store/migrations — the schema, as ordered SQL files in ./migrations.
 *
 * File names are `NNNN_name.sql`; each role owns a range (0001–0099 gateway,
 * 0100 notify, 0200 backscatter, 0300 desk, 0400 web) so work on different
 * roles never collides. Runs at start-up inside one transaction under an
 * advisory lock, so any number of nodes starting at once against one
 * PostgreSQL apply each file exactly once. Files are append-only: never edit
 * one that has shipped, add the next.
 *
 * BACKSTOP_EXTRA_MIGRATIONS_DIR names a directory of further files, only in
 * the range 9000–9999 kept for them: how a test (test/cluster/rolling) plays
 * a rolling upgrade's "new version with a new migration" without shipping a
 * migration. Any other file in it is refused, so it can never shadow a real one.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { sql, type Kysely } from 'kysely';

const DIR = new URL('./migrations/', import.meta.url);

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** The range BACKSTOP_EXTRA_MIGRATIONS_DIR may use, and nothing shipped does. */
export const EXTRA_MIGRATIONS = { from: 9000, to: 9999 } as const;

function readDir(dir: URL): Migration[] {
  return readdirSync(dir)
    .filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f))
    .map((file) => ({
      version: Number(file.slice(0, 4)),
      name: file.slice(5, -4),
      sql: readFileSync(new URL(file, dir), 'utf8'),
    }));
}

export function listMigrations(extraDir = process.env.BACKSTOP_EXTRA_MIGRATIONS_DIR): Migration[] {
  const shipped = readDir(DIR);
  const extra = extraDir ? readDir(pathToFileURL(extraDir.endsWith('/') ? extraDir : `${extraDir}/`)) : [];
  const outside = extra.filter((m) => m.version < EXTRA_MIGRATIONS.from || m.version > EXTRA_MIGRATIONS.to);
  if (outside.length > 0) throw new Error(`BACKSTOP_EXTRA_MIGRATIONS_DIR: only versions ${EXTRA_MIGRATIONS.from}–${EXTRA_MIGRATIONS.to} may be added there, not ${outside.map((m) => m.version).join(', ')}`);
  return [...shipped, ...extra].sort((a, b) => a.version - b.version);
}

/** Applies the missing migrations; returns the versions it ran. */
export async function migrate(db: Kysely<any>): Promise<number[]> {
  const steps = listMigrations();
  return db.transaction().execute(async (tx) => {
    await sql`select pg_advisory_xact_lock(727274)`.execute(tx);
    await sql`create table if not exists schema_migrations (version integer primary key, name text not null, applied_at timestamptz not null default now())`.execute(tx);
    const done = await sql<{ version: number }>`select version from schema_migrations`.execute(tx);
    const applied = new Set(done.rows.map((r) => Number(r.version)));
    const ran: number[] = [];
    for (const step of steps) {
      if (applied.has(step.version)) continue;
      await sql.raw(step.sql).execute(tx);
      await sql`insert into schema_migrations (version, name) values (${step.version}, ${step.name})`.execute(tx);
      ran.push(step.version);
    }
    return ran;
  });
}
