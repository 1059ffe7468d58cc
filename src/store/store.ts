/*
 * store/store — opens the database named by the `store:` setting.
 *
 * `pglite:DIR` (embedded, one process — the default), `pglite-memory:` (tests),
 * or `postgres://…` (any number of Backstop nodes share it). Same schema, same
 * SQL; the rest of Backstop only ever sees a Kysely<Database>.
 */
import { mkdirSync } from 'node:fs';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { Database } from './schema.ts';
import { migrate } from './migrations.ts';
import { PGliteDialect } from './pglite-dialect.ts';

export type Db = Kysely<Database>;

export interface Store {
  db: Db;
  kind: 'pglite' | 'postgres';
  url: string;
  close(): Promise<void>;
}

// PostgreSQL returns bigint and numeric as strings by default; the counts we
// keep fit in a double, and one representation across both drivers is simpler.
pg.types.setTypeParser(20, (v) => Number(v));
pg.types.setTypeParser(1700, (v) => Number(v));

export async function openStore(url: string, options: { migrate?: boolean; poolSize?: number } = {}): Promise<Store> {
  let db: Db;
  let kind: Store['kind'];
  if (url.startsWith('pglite')) {
    const { PGlite } = await import('@electric-sql/pglite');
    const { btree_gist } = await import('@electric-sql/pglite/contrib/btree_gist');
    const dir = url === 'pglite-memory:' ? undefined : url.slice('pglite:'.length);
    if (dir) mkdirSync(dir, { recursive: true });
    // new PGlite(undefined, options) ignores the options (and so the extension): pass them alone.
    const pglite = dir ? new PGlite(dir, { extensions: { btree_gist } }) : new PGlite({ extensions: { btree_gist } });
    db = new Kysely<Database>({ dialect: new PGliteDialect(pglite) });
    kind = 'pglite';
  } else {
    const pool = new pg.Pool({ connectionString: url, max: options.poolSize ?? 10 });
    // A pooled client that loses its server emits 'error'; without a listener that kills the process.
    pool.on('error', () => {});
    db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
    kind = 'postgres';
  }
  if (options.migrate !== false) await migrate(db);
  return { db, kind, url, close: () => db.destroy() };
}
