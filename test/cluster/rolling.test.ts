/*
 * A rolling upgrade of two nodes on one PostgreSQL with traffic flowing:
 * node 1 is stopped gracefully (SIGTERM), started again as the "new
 * version" — the same code plus a new migration (9001, supplied through
 * BACKSTOP_EXTRA_MIGRATIONS_DIR), which it applies under the migration lock
 * while node 2 goes on answering and writing — then node 2 the same way
 * (it finds the migration applied). The migration alters the messages table
 * the other node is writing to, as a real one would.
 *
 * Counted as in the crash test: every reply a client saw was 250, a 4xx or a
 * dropped/refused connection (the client tries again), never a 5xx for
 * clean-or-discardable mail; every 250 has its record; one notice per name,
 * one ARF per source; nothing at the relay twice.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { sql } from 'kysely';
import { openStore, type Store } from '../../src/store/store.ts';
import { createTestDatabase } from '../helpers/pg.ts';
import { planWave, sendWave, sleep, startCluster, verifyRun, type Cluster, type Node } from '../helpers/cluster.ts';

const SOURCES = 30;
const PER_SOURCE = 6;

let database: { url: string; drop(): Promise<void> };
let store: Store;
let cluster: Cluster;

before(async () => {
  database = await createTestDatabase('bs_cluster_rolling');
  store = await openStore(database.url);
  // Reports after the whole wave (and two drains of up to 30 s each), so each counts every detection.
  cluster = await startCluster(2, database.url, { reportDelay: '100s', digestMinutes: 0.1 });
});

after(async () => {
  await cluster?.stop();
  await store?.close();
  await database?.drop();
});

test('rolling upgrade of two nodes with a new migration, traffic flowing: no reply but 250/4xx/dropped, every 250 recorded, nothing lost or doubled, jobs once', async () => {
  const upgrade = join(cluster.dir, 'new-version-migrations');
  mkdirSync(upgrade);
  writeFileSync(join(upgrade, '9001_rolling_probe.sql'), "alter table messages add column upgrade_probe text not null default 'v2';\n");

  const messages = planWave(SOURCES, PER_SOURCE, 2, '127.22.0', 'rolling');
  let answered = 0;
  const replies = new Map<number, number>();
  const during: { node: string; answeredBefore: number; answeredAfter: number; downMs: number }[] = [];
  const restart = async (node: Node, when: number) => {
    while (answered < when) await sleep(20);
    const before = answered;
    const t0 = Date.now();
    // A graceful stop may wait out the SMTP server's 30 s close timeout for open sessions (README "Several nodes").
    await node.proc!.stop('SIGTERM', 45_000);
    assert.equal(node.proc!.child.exitCode, 0, `${node.name} stopped gracefully on SIGTERM:\n${node.proc!.output().slice(-2000)}`);
    node.env = { BACKSTOP_EXTRA_MIGRATIONS_DIR: upgrade };
    await cluster.start(node);
    during.push({ node: node.name, answeredBefore: before, answeredAfter: answered, downMs: Date.now() - t0 });
  };
  const upgraded = (async () => {
    await restart(cluster.nodes[0]!, messages.length * 0.15);
    await restart(cluster.nodes[1]!, answered + messages.length * 0.2);
  })();
  const outcomes = await sendWave(
    cluster.nodes,
    messages,
    8,
    150_000,
    () => answered++,
    (_m, reply) => replies.set(reply.code, (replies.get(reply.code) ?? 0) + 1),
  );
  await upgraded;

  assert.equal(during.length, 2);
  for (const d of during) assert.ok(d.answeredAfter < messages.length, `${d.node} was upgraded while traffic was flowing (${JSON.stringify(d)})`);
  const seen = [...replies.keys()];
  assert.ok(
    seen.every((c) => c === 250 || c === 0 || (c >= 400 && c < 500)),
    `every reply was 250, a 4xx or a dropped connection: ${JSON.stringify(Object.fromEntries(replies))}`,
  );
  const { twice, records } = await verifyRun(cluster, store.db, outcomes, assert);
  assert.deepEqual(twice, [], 'graceful stops: nothing reached the relay twice, even flagged');

  const applied = await sql<{ version: number; n: number }>`select version, count(*)::int as n from schema_migrations where version >= 9000 group by version`.execute(store.db);
  assert.deepEqual(applied.rows.map((r) => [Number(r.version), r.n]), [[9001, 1]], 'the new migration ran once');
  const probe = await sql<{ v: string; n: number }>`select upgrade_probe as v, count(*)::int as n from messages group by 1`.execute(store.db);
  assert.deepEqual(probe.rows, [{ v: 'v2', n: records.length }], 'every record, older or newer than the migration, is in the migrated table');
  const byNode = new Map<string, number>();
  for (const r of records) byNode.set(r.node, (byNode.get(r.node) ?? 0) + 1);
  console.log(`# rolling: ${messages.length} messages, replies ${JSON.stringify(Object.fromEntries(replies))}, records by node ${JSON.stringify(Object.fromEntries(byNode))}, restarts ${JSON.stringify(during)}`);
});
