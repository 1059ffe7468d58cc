/*
 * Three nodes on one PostgreSQL, two of them with clocks five minutes off
 * (one ahead, one behind), under a worm wave spread over all three: windows
 * and jobs still fire once. Digest windows, abuse-report windows and job
 * due times and leases are taken from the store's clock (store/clock), so
 * the node ahead neither claims a digest early nor takes a job whose lease
 * another node holds, and the node behind neither opens a report window
 * that is already due (which would send the report before the wave's
 * detections are counted). A record's received_at is the store's time too
 * (store/StoreClock), whichever node took the message.
 *
 * The skew is the process's wall clock (test/helpers/skewed-clock.mjs,
 * loaded with NODE_OPTIONS), as on a host whose NTP is off.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { storeNow } from '../../src/store/clock.ts';
import { openStore, type Store } from '../../src/store/store.ts';
import { createTestDatabase } from '../helpers/pg.ts';
import { planWave, sendWave, skewedClockEnv, startCluster, verifyRun, type Cluster } from '../helpers/cluster.ts';

const SKEW_MS = 5 * 60_000;
const OFFSETS = [0, SKEW_MS, -SKEW_MS]; // node-1 right, node-2 ahead, node-3 behind
const SOURCES = 30;
const PER_SOURCE = 4;

let database: { url: string; drop(): Promise<void> };
let store: Store;
let cluster: Cluster;

before(async () => {
  database = await createTestDatabase('bs_cluster_skew');
  store = await openStore(database.url);
  cluster = await startCluster(3, database.url, {
    reportDelay: '40s',
    digestMinutes: 0.1,
    env: (i) => skewedClockEnv(OFFSETS[i - 1]!),
  });
});

after(async () => {
  await cluster?.stop();
  await store?.close();
  await database?.drop();
});

test('two of three nodes five minutes off (ahead, behind): one notice per name, digests without double counting, one ARF per source IP per window, jobs once', async () => {
  const messages = planWave(SOURCES, PER_SOURCE, 3, '127.21.0', 'skew');
  const waveStart = (await storeNow(store.db)).getTime();
  const outcomes = await sendWave(cluster.nodes, messages, 12, 120_000);
  const waveEnd = (await storeNow(store.db)).getTime();
  const { twice } = await verifyRun(cluster, store.db, outcomes, assert);
  assert.deepEqual(twice, [], 'no node died: nothing reached the relay twice, even flagged');

  // A record's received_at is the store's time, not its node's: every one falls inside the wave by the
  // store's clock (a skewed node's own clock would put a third of them five minutes before or after it),
  // and none is dated after its message's final reply (this process's clock is the store machine's).
  const received = await store.db.selectFrom('messages').select(['node', 'received_at', 'message_id']).execute();
  for (const r of received) {
    const at = new Date(r.received_at).getTime();
    assert.ok(at >= waveStart - 1000 && at <= waveEnd + 1000, `${r.node}: received_at ${new Date(at).toISOString()} inside the wave by the store's clock`);
  }
  const answeredAt = new Map(outcomes.map((o) => [o.message.messageId, o.at]));
  for (const node of cluster.nodes) {
    const mine = received.filter((r) => r.node === node.name && r.message_id !== null && answeredAt.has(r.message_id));
    assert.ok(mine.length > 0, `${node.name} took part of the wave`);
    const late = mine.filter((r) => new Date(r.received_at).getTime() > answeredAt.get(r.message_id!)! + 1000);
    assert.deepEqual(late.map((r) => r.message_id), [], `${node.name}: no record dated after its reply`);
  }

  // Every window in the store was opened by the store's clock: no report window starts minutes off.
  const windows = await store.db.selectFrom('abuse_sources').select(['client_ip', 'window_start']).execute();
  const reports = await store.db.selectFrom('jobs').select(['run_at', 'created_at', 'payload']).where('kind', '=', 'abuse-report').execute();
  assert.equal(reports.length, windows.length, 'one report job per source window');
  for (const r of reports) {
    const delay = new Date(r.run_at).getTime() - new Date(r.created_at).getTime();
    assert.ok(delay > 30_000 && delay <= 40_000, `a report is due reportDelay after its window opened by the store's clock (${delay} ms)`);
  }
  const digests = await store.db.selectFrom('jobs').select(['run_at', 'created_at']).where('kind', '=', 'postmaster-digest').execute();
  for (const d of digests) {
    const ahead = new Date(d.run_at).getTime() - new Date(d.created_at).getTime();
    assert.ok(ahead >= 0 && ahead <= 6_000, `a digest is due at the end of the window it was opened in, by the store's clock (${ahead} ms)`);
  }
});
