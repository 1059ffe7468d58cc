/*
 * test/helpers/pg — a fresh PostgreSQL database per test file, dropped after,
 * on the server every machine of this kind runs at 127.0.0.1:5432 (trust auth).
 */
import { openStore, type Store } from '../../src/store/store.ts';
import { createScratchDatabase, DEFAULT_ADMIN_URL } from '../../src/store/scratch.ts';

const ADMIN_URL = process.env.BACKSTOP_TEST_PG ?? DEFAULT_ADMIN_URL;

export async function createTestDatabase(prefix = 'bs_test'): Promise<{ url: string; drop(): Promise<void> }> {
  return createScratchDatabase(prefix, ADMIN_URL);
}

/** The two stores every store test runs against. */
export const STORE_KINDS = ['pglite', 'postgres'] as const;

/** An in-memory PGlite, or a fresh PostgreSQL database; close() also drops the database. */
export async function openTestStore(kind: (typeof STORE_KINDS)[number], prefix: string): Promise<{ store: Store; close(): Promise<void> }> {
  if (kind === 'pglite') {
    const store = await openStore('pglite-memory:');
    return { store, close: () => store.close() };
  }
  const database = await createTestDatabase(prefix);
  const store = await openStore(database.url);
  return {
    store,
    async close() {
      await store.close();
      await database.drop();
    },
  };
}
