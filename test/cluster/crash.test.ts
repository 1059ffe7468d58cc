/*
 * Many nodes, one PostgreSQL, one node SIGKILLed mid-wave and restarted:
 * nothing a client was told is forgotten, and every notice and report goes
 * out once — or, where a node died between the relay's 250 and its `done`
 * mark, twice under one Message-ID and flagged a possible duplicate.
 *
 * Three real `backstop serve` processes on a fresh database; a worm wave from
 * 45 sources (each bound to its own 127.20.0.x address, spread over the
 * nodes), worms discarded and banned files quarantined — the actions where a
 * lost record is worst, since the sender was told 250. Counted at the capture
 * relay (smtp-sink) and in the store.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { openStore, type Store } from '../../src/store/store.ts';
import { createTestDatabase } from '../helpers/pg.ts';
import { planWave, sendWave, sleep, startCluster, verifyRun, type Cluster, type Outcome } from '../helpers/cluster.ts';

const SOURCES = 45;
const PER_SOURCE = 4;
const DIGEST_MINUTES = 0.1; // 6 s windows: several digests during the wave
const REPORT_DELAY_S = 75; // every source's report after the whole wave (which took over 40 s at load 30), so it counts every detection

let database: { url: string; drop(): Promise<void> };
let store: Store;
let cluster: Cluster;

before(async () => {
  database = await createTestDatabase('bs_cluster_crash');
  store = await openStore(database.url); // migrates once; the nodes find it done
  cluster = await startCluster(3, database.url, { reportDelay: `${REPORT_DELAY_S}s`, digestMinutes: DIGEST_MINUTES });
});

after(async () => {
  await cluster?.stop();
  await store?.close();
  await database?.drop();
});

test('SIGKILL of one of three nodes mid-wave: every reply has its record, one notice per name, one report per source, nothing sent twice unflagged', async () => {
  const messages = planWave(SOURCES, PER_SOURCE, 3, '127.20.0', 'wave');
  const victim = cluster.nodes[1]!;
  let answered = 0;
  let killedAt = 0;
  const answeredByVictimBeforeKill: Outcome[] = [];
  const killed = (async () => {
    while (answered < messages.length / 3) await sleep(20);
    killedAt = Date.now();
    victim.proc!.child.kill('SIGKILL');
    await new Promise((r) => victim.proc!.child.once('exit', r));
    await sleep(1500);
    await cluster.start(victim);
  })();
  const started = Date.now();
  const outcomes = await sendWave(cluster.nodes, messages, 15, 120_000, (o) => {
    answered++;
    if (o.code === 250 && o.answeredBy === 1 && killedAt === 0) answeredByVictimBeforeKill.push(o);
  });
  await killed;
  const waveSeconds = (Date.now() - started) / 1000;

  assert.equal(outcomes.length, messages.length);
  assert.ok(answeredByVictimBeforeKill.length > 0, 'the killed node had answered messages before it died');
  const { twice, flagged } = await verifyRun(cluster, store.db, outcomes, assert);

  // 5. Each node's /metrics says which node it is.
  for (const n of cluster.nodes) {
    const res = await fetch(`http://127.0.0.1:${n.webPort}/metrics`);
    assert.equal(res.status, 200);
    assert.match(await res.text(), new RegExp(`backstop_messages_total\\{[^}]*node="${n.name}"`));
  }
  console.log(`# wave: ${messages.length} messages in ${waveSeconds.toFixed(1)} s over 3 nodes, ${answeredByVictimBeforeKill.length} answered by the victim before its SIGKILL, ${twice.length} possible duplicates at the relay (${flagged} flagged)`);
});
