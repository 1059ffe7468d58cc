/*
 * store/pglite-dialect — Kysely over embedded PGlite.
 *
 * Written here rather than taken from npm because the published
 * kysely-pglite-dialect declares peer versions this registry's PGlite 0.5 does
 * not satisfy. PGlite is one connection in one process, so connections are
 * handed out one at a time: a transaction holds the database until it ends,
 * which is exactly PostgreSQL's behaviour seen from a single client.
 */
import { parse, protocol, type PGlite } from '@electric-sql/pglite';
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

/** Statements whose parameter types are remembered; past it the memory starts over (Kysely's SQL texts are few). */
const KNOWN_STATEMENTS = 1000;

class PGliteConnection implements DatabaseConnection {
  /** Parameter type OIDs by SQL text, as PostgreSQL described them: what picks each value's serializer. */
  private readonly paramTypes = new Map<string, number[]>();

  constructor(private readonly db: PGlite) {}

  async executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    // Without parameters, use the simple protocol (as node-postgres does) so a
    // migration step may hold several statements; its last result is the answer.
    // A migration may change a column's type: the remembered parameter types start over.
    if (!query.parameters.length) this.paramTypes.clear();
    const result = query.parameters.length
      ? await this.extended<R>(query.sql, query.parameters)
      : ((await this.db.exec(query.sql)).at(-1) as { rows: R[]; affectedRows?: number } | undefined) ?? { rows: [] };
    return {
      rows: result.rows,
      ...(result.affectedRows !== undefined ? { numAffectedRows: BigInt(result.affectedRows) } : {}),
    };
  }

  /**
   * A parameterised statement in one call into PGlite. PGlite's own query() makes six (Parse, Describe,
   * then Bind, Describe, Execute, Sync), describing the statement every time to learn its parameter types;
   * here they are learnt once per SQL text (describeQuery) and the five messages go together, with every
   * value serialised exactly as query() would for its type. Measured on the message log's one-row INSERT:
   * about half the CPU and the wall time (bench/README.md, "The durable reply's cost").
   */
  private async extended<R>(text: string, parameters: readonly unknown[]): Promise<{ rows: R[]; affectedRows?: number }> {
    let types = this.paramTypes.get(text);
    if (!types) {
      types = (await this.db.describeQuery(text)).queryParams.map((p) => p.dataTypeID);
      if (this.paramTypes.size >= KNOWN_STATEMENTS) this.paramTypes.clear();
      this.paramTypes.set(text, types);
    }
    const values = parameters.map((v, i) => {
      if (v === null || v === undefined) return null;
      const serialize = this.db.serializers[types[i]!];
      return serialize ? serialize(v) : String(v);
    });
    const { serialize } = protocol;
    const parts = [serialize.parse({ text, types }), serialize.bind({ values }), serialize.describe({ type: 'P' }), serialize.execute({}), serialize.sync()];
    const message = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    parts.reduce((at, p) => (message.set(p, at), at + p.length), 0);
    const { messages } = await this.db.runExclusive(() => this.db.execProtocol(message));
    return (parse.parseResults(messages, this.db.parsers)[0] as { rows: R[]; affectedRows?: number } | undefined) ?? { rows: [] };
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
