/*
 * The embedded store's memory settings and its initdb template (issue 16;
 * src/store/store.ts says why). The figures themselves are a benchmark
 * (`npm run bench:memory`); these tests hold what the figures rest on: the
 * template made at install fits the installed PGlite, a new directory is filled
 * from it, and every database — new, or made before these settings — runs
 * with them, keeps what it committed, and is never overwritten.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { sql } from 'kysely';
import { PGlite } from '@electric-sql/pglite';
import { listMigrations } from '../../src/store/migrations.ts';
import { extractTemplate, parseTarHeader, PGLITE_TEMPLATE, pgliteVersion, templateFits, type TemplateStamp } from '../../src/store/pglite-template.ts';
import { openStore, PGLITE_SETTINGS, pgliteParams, type Store } from '../../src/store/store.ts';

const dir = mkdtempSync(join(tmpdir(), 'bs-pglite-memory-'));
after(() => rmSync(dir, { recursive: true, force: true }));

async function facts(store: Store) {
  const r = await sql<{ sb: string; mwm: string; id: string; migrations: number }>`
    select current_setting('shared_buffers') as sb, current_setting('maintenance_work_mem') as mwm,
           (select system_identifier::text from pg_control_system()) as id,
           (select count(*)::int from schema_migrations) as migrations`.execute(store.db);
  return r.rows[0]!;
}

describe('embedded store: settings and template', () => {
  const stamp = JSON.parse(readFileSync(PGLITE_TEMPLATE.stamp, 'utf8')) as TemplateStamp;

  test('the template (made at install) was made by the installed PGlite with the current settings (else: npm run pglite:template)', () => {
    assert.equal(stamp.pglite, pgliteVersion());
    assert.deepEqual(stamp.settings, PGLITE_SETTINGS);
    assert.deepEqual(templateFits(PGLITE_SETTINGS), { ok: true, stamp });
    assert.deepEqual(templateFits({ ...PGLITE_SETTINGS, shared_buffers: '128MB' }), { ok: false, why: 'template made with other settings' });
  });

  test('the settings are PostgreSQL command-line options, and initdb writes the same', () => {
    assert.deepEqual(pgliteParams('-c'), ['-c', 'shared_buffers=16MB', '-c', 'maintenance_work_mem=16MB']);
    assert.deepEqual(pgliteParams('--set'), ['--set', 'shared_buffers=16MB', '--set', 'maintenance_work_mem=16MB']);
  });

  test('a new directory is filled from the template, migrated, runs with the settings, and keeps a commit across a restart', async () => {
    const url = `pglite:${join(dir, 'fresh')}`;
    const store = await openStore(url);
    try {
      assert.deepEqual(await facts(store), { sb: '16MB', mwm: '16MB', id: stamp.systemIdentifier, migrations: listMigrations().length });
      await sql`insert into audit (actor, action, target) values ('test', 'kept', 'memory')`.execute(store.db);
    } finally {
      await store.close();
    }
    const again = await openStore(url);
    try {
      // The second open must not load the template over the existing database.
      const kept = await sql<{ n: number }>`select count(*)::int as n from audit where action = 'kept'`.execute(again.db);
      assert.equal(kept.rows[0]!.n, 1);
      assert.equal((await facts(again)).id, stamp.systemIdentifier);
    } finally {
      await again.close();
    }
  });

  test('a database PGlite made with its own defaults (128MB shared_buffers in its postgresql.conf) runs with the settings, untouched', async () => {
    const old = join(dir, 'old');
    const made = new PGlite(old);
    await made.waitReady;
    const before = (await made.query<{ sb: string; id: string }>("select current_setting('shared_buffers') as sb, (select system_identifier::text from pg_control_system()) as id")).rows[0]!;
    await made.close();
    assert.equal(before.sb, '128MB');
    assert.ok(existsSync(join(old, 'PG_VERSION')));
    const store = await openStore(`pglite:${old}`);
    try {
      const f = await facts(store);
      assert.equal(f.sb, '16MB');
      assert.equal(f.mwm, '16MB');
      assert.equal(f.id, before.id, 'the existing cluster, not the template');
      assert.notEqual(f.id, stamp.systemIdentifier);
    } finally {
      await store.close();
    }
  });

  test('pglite-memory: (the tests\' store) is made from the template too', async () => {
    const store = await openStore('pglite-memory:');
    try {
      assert.deepEqual(await facts(store), { sb: '16MB', mwm: '16MB', id: stamp.systemIdentifier, migrations: listMigrations().length });
    } finally {
      await store.close();
    }
  });
});

/** A ustar header as tar(1) writes it, with a right checksum unless told otherwise. */
function header(name: string, opts: { type?: string; size?: number; mode?: number; prefix?: string; badSum?: boolean } = {}): Buffer {
  const b = Buffer.alloc(512);
  b.write(name, 0, 100, 'utf8');
  b.write((opts.mode ?? 0o600).toString(8).padStart(7, '0') + '\0', 100, 'latin1');
  b.write((opts.size ?? 0).toString(8).padStart(11, '0') + '\0', 124, 'latin1');
  b.write(opts.type ?? '0', 156, 'latin1');
  b.write('ustar\0' + '00', 257, 'latin1');
  if (opts.prefix) b.write(opts.prefix, 345, 155, 'utf8');
  b.fill(32, 148, 156);
  let sum = 0;
  for (const byte of b) sum += byte;
  b.write((opts.badSum ? sum + 1 : sum).toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return b;
}

describe('template archive: the ustar reader', () => {
  const table: [string, Buffer, ReturnType<typeof parseTarHeader> | RegExp][] = [
    ['a file with a leading slash (PGlite dumps so)', header('/base/1/1259', { size: 8192 }), { path: 'base/1/1259', type: 'file', mode: 0o600, size: 8192 }],
    ['a directory, trailing slash dropped', header('/pg_wal/', { type: '5', mode: 0o700 }), { path: 'pg_wal', type: 'directory', mode: 0o700, size: 0 }],
    ['the ustar prefix field joins the name', header('1259', { prefix: 'base/1', size: 1 }), { path: 'base/1/1259', type: 'file', mode: 0o600, size: 1 }],
    ['the end of the archive (a zero block)', Buffer.alloc(512), null],
    ['path traversal', header('../../etc/passwd', { size: 1 }), /leaves the directory/],
    ['path traversal inside the name', header('/base/../../x', { size: 1 }), /leaves the directory/],
    ['a symlink', header('/evil', { type: '2' }), /neither a file nor a directory/],
    ['a hard link', header('/evil', { type: '1' }), /neither a file nor a directory/],
    ['a corrupt header', header('/base/1/1259', { badSum: true }), /checksum/],
  ];
  for (const [name, block, expected] of table) {
    test(name, () => {
      if (expected instanceof RegExp) assert.throws(() => parseTarHeader(block), expected);
      else assert.deepEqual(parseTarHeader(block), expected);
    });
  }

  test('the installed template extracts to a cluster with PG_VERSION and every file the archive lists', async () => {
    const target = join(dir, 'extracted');
    await extractTemplate(target);
    assert.match(readFileSync(join(target, 'PG_VERSION'), 'utf8'), /^\d+\n$/);
    assert.ok(existsSync(join(target, 'global', 'pg_control')));
    assert.ok(existsSync(join(target, 'pg_wal')));
  });

  test('an archive cut short is an error and leaves no PG_VERSION (the next start copies again)', async () => {
    const { gzipSync, gunzipSync } = await import('node:zlib');
    const { writeFileSync } = await import('node:fs');
    const whole = gunzipSync(readFileSync(PGLITE_TEMPLATE.tarball));
    const cut = join(dir, 'cut.tar.gz');
    writeFileSync(cut, gzipSync(whole.subarray(0, Math.floor(whole.length / 2))));
    const target = join(dir, 'cut');
    await assert.rejects(extractTemplate(target, new URL(`file://${cut}`)), /ends in the middle/);
    assert.equal(existsSync(join(target, 'PG_VERSION')), false);
  });
});
