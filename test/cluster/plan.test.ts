/*
 * smtp.workers (cluster/plan): how many workers a node runs on which store,
 * what each one is called, how long a dead one waits before it starts again
 * (table tests), and `backstop config check` refusing workers above 1 on
 * PGlite with what to do instead (the real command).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { effectiveWorkers, RESTART_POLICY, restartDelay, workerIdentity } from '../../src/cluster/plan.ts';
import { ConfigError, parseConfig } from '../../src/config/load.ts';

test('effectiveWorkers: every core on PostgreSQL unless configured; always 1 on PGlite', () => {
  const cases: [number | undefined, string, number, number][] = [
    [undefined, 'postgres://db/backstop', 16, 16],
    [undefined, 'postgresql://db/backstop', 2, 2],
    [undefined, 'postgres://db/backstop', 0, 1], // a machine that reports no cores still runs one
    [1, 'postgres://db/backstop', 16, 1],
    [4, 'postgres://db/backstop', 2, 4], // more than the cores if asked: the operator's call
    [undefined, 'pglite:./data/db', 16, 1],
    [undefined, 'pglite-memory:', 16, 1],
    [1, 'pglite:./data/db', 16, 1],
  ];
  for (const [configured, store, cores, want] of cases) assert.equal(effectiveWorkers(configured, store, cores), want, `${configured} on ${store} with ${cores} cores`);
});

test('workerIdentity: the node name alone for one process, NAME/wK for worker K', () => {
  assert.equal(workerIdentity('mx1', null), 'mx1');
  assert.equal(workerIdentity('mx1', 1), 'mx1/w1');
  assert.equal(workerIdentity('mx-1.example', 12), 'mx-1.example/w12');
});

test('restartDelay: doubles while a worker keeps dying young, capped; a stable run starts again at the base', () => {
  const p = { baseMs: 500, maxMs: 30_000, stableMs: 60_000 };
  const cases: [number, number, number, number][] = [
    // quick deaths before, ran ms → wait, quick deaths after
    [0, 100, 500, 1],
    [1, 100, 1000, 2],
    [2, 5_000, 2000, 3],
    [6, 100, 30_000, 7], // 500 × 2^6 = 32 s → the cap
    [40, 100, 30_000, 41], // no overflow past the cap
    [5, 60_000, 500, 0], // it ran stableMs: a new trouble, the base wait
    [0, 3_600_000, 500, 0],
  ];
  for (const [before, ran, wait, after] of cases) assert.deepEqual(restartDelay(p, before, ran), { waitMs: wait, quickDeaths: after }, `${before} deaths, ran ${ran} ms`);
  assert.ok(RESTART_POLICY.baseMs > 0 && RESTART_POLICY.maxMs >= RESTART_POLICY.baseMs);
});

test('config: workers above 1 need PostgreSQL; 1 on PGlite and any number on PostgreSQL are accepted', () => {
  assert.equal(parseConfig({ smtp: { workers: 1 } }).smtp.workers, 1);
  assert.equal(parseConfig({ smtp: { workers: 8 }, store: 'postgres://db/backstop' }).smtp.workers, 8);
  assert.equal(parseConfig({}).smtp.workers, undefined);
  assert.throws(() => parseConfig({ smtp: { workers: 2 } }), (err: ConfigError) => err.problems.some((p) => p.startsWith('smtp.workers: got 2: workers above 1 need a PostgreSQL store')));
  assert.throws(() => parseConfig({ smtp: { workers: 0 }, store: 'postgres://db/backstop' }), /smtp\.workers: got 0: workers must be greater than 0/);
  assert.throws(() => parseConfig({ smtp: { workers: 1.5 }, store: 'postgres://db/backstop' }), /workers must be a whole number/);
});

/** Runs `backstop ARGS` to its end: exit code and stderr. */
function backstop(args: string[]): Promise<{ code: number; stderr: string }> {
  const bin = new URL('../../bin/backstop.js', import.meta.url).pathname;
  return new Promise((resolve) => execFile(process.execPath, [bin, ...args], { timeout: 120_000 }, (err, _stdout, stderr) => resolve({ code: err ? (err.code as number) : 0, stderr })));
}

test('backstop config check: workers 2 on PGlite exits 2 and says to use a postgres:// store', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bs-workers-cfg-'));
  const file = join(dir, 'backstop.yaml');
  writeFileSync(file, 'store: "pglite:./data/db"\nsmtp: { workers: 2 }\ndomains: [example.net]\n');
  const r = await backstop(['config', 'check', '--config', file]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /smtp\.workers: got 2: workers above 1 need a PostgreSQL store: PGlite is one in-process database with one owner; set store: "postgres:\/\/user@host\/db"/);
});

test('serve with workers 2 whose store cannot be reached fails as a one-process node does (exit 2), not a restart loop', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bs-workers-start-'));
  const file = join(dir, 'backstop.yaml');
  // Port 1 on loopback: nothing listens, the connection is refused at once.
  writeFileSync(file, `store: "postgres://backstop@127.0.0.1:1/none"\nsmtp: { workers: 2, listen: "127.0.0.1:0" }\nweb: { listen: "127.0.0.1:0" }\ndataDir: ${JSON.stringify(join(dir, 'data'))}\ndomains: [example.net]\n`);
  const r = await backstop(['serve', '--config', file]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /ECONNREFUSED/, 'the worker\'s own error is printed');
});
