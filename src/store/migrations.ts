/*
 * store/migrations — the schema, as ordered SQL files in ./migrations.
 *
 * File names are `NNNN_name.sql`; each role owns a range (0001–0099 gateway,
 * 0100 notify, 0200 backscatter, 0300 desk, 0400 web) so work on different
 * roles never collides. Runs at start-up inside one transaction under an
 * advisory lock, so any number of nodes starting at once against one
 * PostgreSQL apply each file exactly once. Files are append-only: never edit
 * one that has shipped, add the next.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { sql, type Kysely } from 'kysely';

const DIR = new URL('./migrations/', import.meta.url);

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export function listMigrations(): Migration[] {
  return readdirSync(DIR)
    .filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f))
    .sort()
    .map((file) => ({
      version: Number(file.slice(0, 4)),
      name: file.slice(5, -4),
      sql: readFileSync(new URL(file, DIR), 'utf8'),
    }));
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
