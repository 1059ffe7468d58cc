/*
 * BACKSTOP_EXTRA_MIGRATIONS_DIR (store/migrations): further files in the
 * 9000–9999 range join the shipped ones in order; a file outside that range
 * is refused, so the directory can never shadow or reorder a real migration.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { listMigrations } from '../../src/store/migrations.ts';

function dirWith(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'bs-extra-mig-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

test('extra migrations: 9000–9999 added after the shipped ones; anything else refused', () => {
  const shipped = listMigrations('');
  const added = listMigrations(dirWith({ '9002_b.sql': 'select 2', '9001_a.sql': 'select 1', 'notes.txt': 'ignored' }));
  assert.deepEqual(added.map((m) => m.version), [...shipped.map((m) => m.version), 9001, 9002]);
  assert.equal(added.at(-1)!.sql, 'select 2');
  for (const bad of ['0001_shadow.sql', '8999_early.sql']) {
    assert.throws(() => listMigrations(dirWith({ [bad]: 'drop table messages' })), /only versions 9000–9999/, bad);
  }
});
