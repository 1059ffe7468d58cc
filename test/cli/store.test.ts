import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { stringify } from 'yaml';
import { commandConfig, withStore } from '../../src/cli/store.ts';
import { ConfigError } from '../../src/config/load.ts';
import type { Store } from '../../src/store/store.ts';

function configFile(domain: string): { file: string; store: string } {
  const dir = mkdtempSync(join(tmpdir(), 'bs-cli-store-'));
  const store = `pglite:${join(dir, 'db')}`;
  const file = join(dir, 'backstop.yaml');
  writeFileSync(file, stringify({ domains: [domain], store, dataDir: join(dir, 'data') }));
  return { file, store };
}

function withEnv<T>(value: string | undefined, fn: () => T): T {
  const before = process.env.BACKSTOP_CONFIG;
  if (value === undefined) delete process.env.BACKSTOP_CONFIG;
  else process.env.BACKSTOP_CONFIG = value;
  try {
    return fn();
  } finally {
    if (before === undefined) delete process.env.BACKSTOP_CONFIG;
    else process.env.BACKSTOP_CONFIG = before;
  }
}

test('commandConfig: --config first, then $BACKSTOP_CONFIG, then the embedded defaults', () => {
  const flag = configFile('flag.example');
  const env = configFile('env.example');
  withEnv(env.file, () => {
    assert.deepEqual(commandConfig(flag.file).domains, ['flag.example']);
    assert.deepEqual(commandConfig(undefined).domains, ['env.example']);
  });
  withEnv(undefined, () => assert.deepEqual(commandConfig(undefined).domains, ['localhost']));
  withEnv(undefined, () => assert.throws(() => commandConfig(join(tmpdir(), 'no-such-backstop.yaml')), ConfigError));
});

test('withStore: runs on the configured store, returns what the work returns, and closes the store', async () => {
  const { file, store: url } = configFile('example.net');
  let seen: Store | undefined;
  const n = await withStore(file, async (store, config) => {
    seen = store;
    assert.equal(config.store, url);
    // Migrated: the jobs table is there.
    const rows = await store.db.selectFrom('jobs').select('id').execute();
    return rows.length + 41;
  });
  assert.equal(n, 41);
  await assert.rejects(seen!.db.selectFrom('jobs').select('id').execute());
});

test('withStore: when the work throws, the error reaches the caller and the store is closed anyway', async () => {
  const { file } = configFile('example.net');
  let seen: Store | undefined;
  await assert.rejects(
    withStore(file, async (store) => {
      seen = store;
      throw new Error('refused by the work');
    }),
    /refused by the work/,
  );
  await assert.rejects(seen!.db.selectFrom('jobs').select('id').execute());
  // Closed means released: the same PGlite directory opens again.
  assert.equal(await withStore(file, async () => 7), 7);
});

test('withStore: a bad configuration is a ConfigError before any store is opened', async () => {
  let ran = false;
  await assert.rejects(
    withStore(join(tmpdir(), 'no-such-backstop.yaml'), async () => {
      ran = true;
    }),
    ConfigError,
  );
  assert.equal(ran, false);
});
