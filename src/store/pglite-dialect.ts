/*
 * store/pglite-dialect — Kysely over embedded PGlite.
 *
 * Written here rather than taken from npm because the published
 * kysely-pglite-dialect declares peer versions this registry's PGlite 0.5 does
 * not satisfy. PGlite is one connection in one process, so connections are
 * handed out one at a time: a transaction holds the database until it ends,
 * which is exactly PostgreSQL's behaviour seen from a single client.
 */
import type { PGlite } from '@electric-sql/pglite';
import {
  CompiledQuery,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type DatabaseConnection,
  type Dialect,
  type Driver,
  type Kysely,
  type QueryResult,
} from 'kysely';

class PGliteConnection implements DatabaseConnection {
  constructor(private readonly db: PGlite) {}

  async executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    // Without parameters, use the simple protocol (as node-postgres does) so a
    // migration step may hold several statements; its last result is the answer.
    const result = query.parameters.length
      ? await this.db.query<R>(query.sql, query.parameters as unknown[])
      : ((await this.db.exec(query.sql)).at(-1) as { rows: R[]; affectedRows?: number } | undefined) ?? { rows: [] };
    return {
      rows: result.rows,
      ...(result.affectedRows !== undefined ? { numAffectedRows: BigInt(result.affectedRows) } : {}),
    };
  }

  // eslint-disable-next-line require-yield
  async *streamQuery<R>(): AsyncIterableIterator<QueryResult<R>> {
    throw new Error('streaming queries are not supported on PGlite; page with LIMIT/OFFSET instead');
  }
}

class PGliteDriver implements Driver {
  private readonly connection: PGliteConnection;
  private queue: Promise<void> = Promise.resolve();
  private release: (() => void) | null = null;

  constructor(private readonly db: PGlite) {
    this.connection = new PGliteConnection(db);
  }

  async init(): Promise<void> {
    await this.db.waitReady;
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    const previous = this.queue;
    let release!: () => void;
    this.queue = new Promise<void>((resolve) => (release = resolve));
    await previous;
    this.release = release;
    return this.connection;
  }

  async beginTransaction(conn: DatabaseConnection): Promise<void> {
    await conn.executeQuery(CompiledQuery.raw('begin'));
  }

  async commitTransaction(conn: DatabaseConnection): Promise<void> {
    await conn.executeQuery(CompiledQuery.raw('commit'));
  }

  async rollbackTransaction(conn: DatabaseConnection): Promise<void> {
    await conn.executeQuery(CompiledQuery.raw('rollback'));
  }

  /** Runs fn with the database to itself: after the queries and transactions before it, before those after it. */
  async exclusive<T>(fn: (db: PGlite) => Promise<T>): Promise<T> {
    await this.acquireConnection();
    try {
      return await fn(this.db);
    } finally {
      await this.releaseConnection();
    }
  }

  async releaseConnection(): Promise<void> {
    const release = this.release;
    this.release = null;
    release?.();
  }

  async destroy(): Promise<void> {
    await this.db.close();
  }
}

export class PGliteDialect implements Dialect {
  private readonly driver: PGliteDriver;
  constructor(db: PGlite) {
    this.driver = new PGliteDriver(db);
  }
  createAdapter() {
    return new PostgresAdapter();
  }
  createDriver() {
    return this.driver;
  }
  /** The database to fn alone, in turn with Kysely's queries (store/pglite-insert speaks PGlite's protocol itself). */
  exclusive<T>(fn: (db: PGlite) => Promise<T>): Promise<T> {
    return this.driver.exclusive(fn);
  }
  createQueryCompiler() {
    return new PostgresQueryCompiler();
  }
  createIntrospector(db: Kysely<unknown>) {
    return new PostgresIntrospector(db);
  }
}
