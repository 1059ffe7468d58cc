/*
 * scripts/pglite-template — `npm run pglite:template`: makes
 * src/store/pglite-template/pgdata.tar.gz, the freshly initialised PostgreSQL
 * cluster a new embedded store is filled from (see src/store/store.ts for why:
 * PGlite's initdb runs in a second instance and costs ~450 MB at a node's
 * first start), and stamp.json beside it (PGlite version, settings, the
 * cluster's system identifier).
 *
 * `npm ci` runs it (scripts/build.mjs, with --if-stale: only when the
 * template is missing or its stamp does not fit the installed PGlite and
 * PGLITE_SETTINGS), so the template is never committed and always fits;
 * `npm test` makes it too when it is missing. It runs PGlite's own
 * initdb, in memory, with the store's settings, exactly as openStore would
 * without a template; nothing else goes into the template (the schema comes
 * from the migrations at start-up, as on PostgreSQL).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';
import { PGLITE_TEMPLATE, pgliteVersion, templateFits, type TemplateStamp } from '../src/store/pglite-template.ts';
import { PGLITE_SETTINGS, pgliteParams } from '../src/store/store.ts';

if (process.argv.includes('--if-stale')) {
  const fits = templateFits(PGLITE_SETTINGS);
  if (fits.ok) process.exit(0);
  console.log(`backstop build: making the PGlite template (${fits.why})`);
}

const pg = new PGlite({ initDbStartParams: pgliteParams('--set') });
await pg.waitReady;
const systemIdentifier = String((await pg.query<{ id: string }>('select system_identifier::text as id from pg_control_system()')).rows[0]!.id);
// A checkpoint first, so the copy starts from a clean checkpoint rather than replaying initdb's WAL.
await pg.exec('checkpoint');
const tarball = Buffer.from(await (await pg.dumpDataDir('gzip')).arrayBuffer());
await pg.close();

mkdirSync(new URL('.', PGLITE_TEMPLATE.tarball), { recursive: true });
writeFileSync(PGLITE_TEMPLATE.tarball, tarball);
const stamp: TemplateStamp = { pglite: pgliteVersion(), settings: { ...PGLITE_SETTINGS }, systemIdentifier };
writeFileSync(PGLITE_TEMPLATE.stamp, JSON.stringify(stamp, null, 2) + '\n');
console.log(`${fileURLToPath(PGLITE_TEMPLATE.tarball)}: ${(tarball.length / 1e6).toFixed(1)} MB, PGlite ${stamp.pglite}, system identifier ${systemIdentifier}`);
