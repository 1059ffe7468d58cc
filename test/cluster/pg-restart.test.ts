/*
 * PostgreSQL restarted mid-load under two nodes: while it is gone the nodes
 * answer 4xx (the record cannot be committed, so no 250 is given), they
 * recover by themselves when it is back, and nothing answered 250 is lost —
 * the restart is `immediate`, a crash with no checkpoint, so what survives is
 * exactly what was committed. Then the same outbox counts as for a node
 * crash. The database is a private cluster of this test's own (never the
 * machine's shared server).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { openStore, type Store } from '../../src/store/store.ts';
import { planWave, sendOnce, sendWave, sleep, startCluster, verifyRun, waveRaw, type Cluster } from '../helpers/cluster.ts';
import { startPrivatePostgres, type PrivatePostgres } from '../helpers/private-pg.ts';

let pgServer: PrivatePostgres;
let store: Store;
let cluster: Cluster;

before(async () => {
  pgServer = await startPrivatePostgres();
  store = await openStore(pgServer.url);
  cluster = await startCluster(2, pgServer.url, { reportDelay: '40s', digestMinutes: 0.1 });
});

after(async () => {
  // A node that died says why (it must not: a store outage is the nodes' 4xx, not their end).
  for (const n of cluster?.nodes ?? []) if (n.proc && n.proc.child.exitCode !== null) console.log(`# ${n.name} exited ${n.proc.child.exitCode}:\n${n.proc.output().slice(-3000)}`);
  await cluster?.stop();
  await store?.close();
  pgServer?.destroy();
});

test('PostgreSQL crash-restarted mid-wave: 4xx while it is gone, recovery without a restart of the nodes, every 250 kept, outbox once', async () => {
  const messages = planWave(30, 4, 2, '127.21.0', 'pgwave');
  let answered = 0;
  let down = false;
  const duringOutage: number[] = [];
  const outage = (async () => {
    while (answered < messages.length / 3) await sleep(20);
    pgServer.stop('immediate');
    down = true;
    // Probe while it is gone: a node must say 4xx, never 250, and never hang.
    const probe = await sendOnce(cluster.nodes[0]!.smtpPort, '127.21.1.1', waveRaw({ seq: 9999, sourceIp: '127.21.1.1', node: 0, payload: 'eicar', messageId: '<pg-probe@home.example>' }));
    duringOutage.push(probe.code);
    await sleep(3000);
    pgServer.start();
    down = false;
  })();
  const seen: number[] = [];
  const outcomes = await sendWave(cluster.nodes, messages, 12, 150_000, () => {
    answered++;
    if (down) seen.push(1);
  });
  await outage;
  assert.equal(duringOutage.length, 1);
  assert.ok(duringOutage[0]! >= 400 && duringOutage[0]! < 500, `with the store gone the node answered ${duringOutage[0]}`);
  // The probe's message got no 250, so it must not be counted as answered; it may have no record at all.
  const { twice, flagged } = await verifyRun(cluster, store.db, outcomes, assert);
  const retried = outcomes.filter((o) => o.attempts > 1).length;
  assert.ok(retried > 0, 'some messages were deferred while the store was gone and went through on a retry');
  console.log(`# ${messages.length} messages over 2 nodes, PostgreSQL down ~3 s mid-wave: ${retried} retried after a 4xx or a dropped session, ${twice.length} duplicates at the relay (${flagged} flagged)`);
});
