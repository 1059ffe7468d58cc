/*
 * store/scratch — a fresh, throw-away PostgreSQL database: created under a
 * random name on a server that lets us create databases (the admin URL), and
 * dropped again by its owner. For the outbreak replay, the tests and the
 * benchmarks. Never drops a database it did not create; the name is ours
 * (prefix + random hex), so it is safe to put into the SQL text.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** The local server every Backstop development and CI machine runs (trust auth). */
export const DEFAULT_ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

export interface ScratchDatabase {
  url: string;
  drop(): Promise<void>;
}

export async function createScratchDatabase(prefix: string, adminUrl = DEFAULT_ADMIN_URL): Promise<ScratchDatabase> {
  if (!/^[a-z][a-z0-9_]{0,40}$/.test(prefix)) throw new Error(`a database name prefix is lower-case letters, digits and _: ${prefix}`);
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`create database ${name}`);
  } finally {
    await admin.end();
  }
  return {
    url: adminUrl.replace(/\/[^/]*$/, `/${name}`),
    async drop() {
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      try {
        await c.query(`drop database if exists ${name} with (force)`);
      } finally {
        await c.end();
      }
    },
  };
}
