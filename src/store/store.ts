/*
 * store/store — opens the database named by the `store:` setting.
 *
 * `pglite:DIR` (embedded, one process — the default), `pglite-memory:` (tests),
 * or `postgres://…` (any number of Backstop nodes share it). Same schema, same
 * SQL; the rest of Backstop only ever sees a Kysely<Database>.
 *
 * The embedded store's memory (issue 16; measured by `npm run bench:memory`,
 * figures in bench/README.md). PGlite runs PostgreSQL compiled to WASM in
 * this process, and WASM linear memory never shrinks: every page PostgreSQL
 * touches once stays resident for the life of the node. Two things set it:
 *   - Its settings (PGLITE_SETTINGS, passed on PostgreSQL's command line on
 *     every start, so databases created before they existed get them too, and
 *     to initdb so a new postgresql.conf says the same). shared_buffers is the
 *     big one: PGlite's own 128MB is allocated and zeroed at start (its mmap
 *     is malloc + memset), so all of it is resident from the first second.
 *     16MB holds the embedded store's working set (one node's message log,
 *     jobs and desk tables); reads past it come from the kernel's page cache,
 *     which NODEFS reads through anyway. maintenance_work_mem 16MB (from 64MB):
 *     an index build or VACUUM that used 64MB would keep it resident forever.
 *     work_mem, temp_buffers and wal_buffers (1/32 of shared_buffers) stay at
 *     PostgreSQL's values. Durability is untouched: commits are PGlite's.
 *   - Creating the database. PGlite's initdb runs in a second PGlite instance
 *     (its own 128MB heap, plus a copy of that heap it restores before each of
 *     initdb's PostgreSQL runs, plus a tar of the result): ~450 MB above a
 *     running node, and garbage V8 keeps until some later GC. So a fresh
 *     directory is filled from pglite-template/pgdata.tar.gz instead — the
 *     output of that same initdb, with the same settings, made at install
 *     (`npm ci` → scripts/build.mjs → scripts/pglite-template.ts), streamed into
 *     the directory before PGlite opens it (store/pglite-template.ts; PGlite's
 *     own `loadDataDir` holds the whole gunzipped tar and peaked ~70 MB
 *     higher, so only the in-memory test store uses it). The template is used
 *     only when its stamp names the installed PGlite version and these
 *     settings; otherwise PGlite runs initdb as before (correct, only
 *     bigger), and test/store/pglite-memory.test.ts fails until
 *     `npm run pglite:template` makes it again. Every database made from it shares its system identifier
 *     (pg_control), which only replication would care about; PGlite has none.
 * (V8's share — the young generation, and Liftoff-only compilation of PGlite's
 * WebAssembly, which keeps TurboFan's freed scratch memory out — is set in bin/backstop.js.)
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { Database } from './schema.ts';
import { migrate } from './migrations.ts';
import { PGliteDialect } from './pglite-dialect.ts';
import { pgliteInsert } from './pglite-insert.ts';
import { extractTemplate, PGLITE_TEMPLATE, templateFits } from './pglite-template.ts';

export type Db = Kysely<Database>;

export interface Store {
  db: Db;
  kind: 'pglite' | 'postgres';
  url: string;
  /** The embedded store only: a prepared INSERT of whole rows, one call into PGlite per group (store/pglite-insert). */
  insertRows?: RowInserter;
  close(): Promise<void>;
}

/** Makes a writer of whole rows into `table`, every row's values for `columns`. */
export type RowInserter = (table: string, columns: readonly string[]) => (rows: readonly Record<string, unknown>[]) => Promise<void>;

// PostgreSQL returns bigint and numeric as strings by default; the counts we
// keep fit in a double, and one representation across both drivers is simpler.
pg.types.setTypeParser(20, (v) => Number(v));
pg.types.setTypeParser(1700, (v) => Number(v));

export async function openStore(url: string, options: { migrate?: boolean; poolSize?: number } = {}): Promise<Store> {
  let db: Db;
  let kind: Store['kind'];
  let insertRows: RowInserter | undefined;
  if (url.startsWith('pglite')) {
    const dir = url === 'pglite-memory:' ? undefined : url.slice('pglite:'.length);
    const pglite = await openPGlite(dir);
    const dialect = new PGliteDialect(pglite);
    db = new Kysely<Database>({ dialect });
    kind = 'pglite';
    insertRows = (table, columns) => pgliteInsert(dialect, table, columns);
  } else {
    // connectionTimeoutMillis: a server that accepts but does not answer (restarting, overloaded) fails the
    // query — the gateway's 451 — instead of leaving it waiting without end.
    const pool = new pg.Pool({ connectionString: url, max: options.poolSize ?? 10, connectionTimeoutMillis: 10_000 });
    // A pooled client that loses its server emits 'error'; without a listener that kills the process. The
    // pool listens only while a client is idle: one checked out (mid-query, mid-transaction) when the server
    // goes away needs its own listener, or a PostgreSQL restart takes every node down with it. Its query
    // fails on its own, and the pool discards the client.
    pool.on('error', () => {});
    pool.on('connect', (client) => client.on('error', () => {}));
    db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
    kind = 'postgres';
  }
  if (options.migrate !== false) await migrate(db);
  return { db, kind, url, ...(insertRows ? { insertRows } : {}), close: () => db.destroy() };
}

/** PostgreSQL settings of the embedded store; why each, in the header. */
export const PGLITE_SETTINGS: Readonly<Record<string, string>> = {
  shared_buffers: '16MB',
  maintenance_work_mem: '16MB',
};

/** `-c name=value` (PostgreSQL) or `--set name=value` (initdb) for each setting. */
export function pgliteParams(flag: '-c' | '--set'): string[] {
  return Object.entries(PGLITE_SETTINGS).flatMap(([name, value]) => [flag, `${name}=${value}`]);
}

async function openPGlite(dir: string | undefined) {
  const { PGlite } = await import('@electric-sql/pglite');
  const { btree_gist } = await import('@electric-sql/pglite/contrib/btree_gist');
  if (dir) mkdirSync(dir, { recursive: true });
  const fits = templateFits(PGLITE_SETTINGS).ok;
  // A directory is streamed full from the template before PGlite sees it; memory (tests) gets it via loadDataDir.
  if (dir && fits && !existsSync(join(dir, 'PG_VERSION'))) await extractTemplate(dir);
  const template = !dir && fits ? new Blob([readFileSync(PGLITE_TEMPLATE.tarball)]) : undefined;
  const options = {
    extensions: { btree_gist },
    startParams: [...PGlite.defaultStartParams, ...pgliteParams('-c')],
    initDbStartParams: pgliteParams('--set'),
    ...(template ? { loadDataDir: template } : {}),
  };
  // new PGlite(undefined, options) ignores the options (and so the extension): pass them alone.
  return dir ? new PGlite(dir, options) : new PGlite(options);
}
