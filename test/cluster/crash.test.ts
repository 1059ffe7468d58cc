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
import { sql } from 'kysely';
import { openStore, type Store } from '../../src/store/store.ts';
import { createTestDatabase } from '../helpers/pg.ts';
import { ABUSE_DESK, header, POSTMASTER, sendWave, sleep, startCluster, type Cluster, type Outcome, type Payload, type WaveMessage } from '../helpers/cluster.ts';

const SOURCES = 45;
const PER_SOURCE = 4;
const PAYLOADS: Payload[] = ['eicar', 'pif', 'clean', 'scr'];
const DIGEST_MINUTES = 0.1; // 6 s windows: several digests during the wave
const REPORT_DELAY_S = 40; // every source's report after the whole wave, so it counts every detection

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
  const messages: WaveMessage[] = [];
  for (let i = 0; i < SOURCES * PER_SOURCE; i++) {
    const source = i % SOURCES;
    messages.push({ seq: i, sourceIp: `127.20.0.${source + 1}`, node: source % 3, payload: PAYLOADS[Math.floor(i / SOURCES) % PAYLOADS.length]!, messageId: `<wave-${i}@home.example>` });
  }
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

  // 1. Every message got its final answer (the client retried through the crash), and every 250 has its record.
  assert.equal(outcomes.length, messages.length);
  const unanswered = outcomes.filter((o) => o.code !== 250);
  assert.deepEqual(unanswered.map((o) => `${o.message.seq}: ${o.code} ${o.text}`), []);
  assert.ok(answeredByVictimBeforeKill.length > 0, 'the killed node had answered messages before it died');
  const records = await store.db.selectFrom('messages').select(['message_id', 'reply', 'node', 'verdict', 'action', 'client_ip']).execute();
  const with250 = new Set(records.filter((r) => r.reply.startsWith('250')).map((r) => r.message_id));
  const missing = outcomes.filter((o) => !with250.has(o.message.messageId)).map((o) => o.message.seq);
  assert.deepEqual(missing, [], 'every 250 a client saw has its committed record');
  // Node identity: each record names the node that answered it.
  const byMessage = new Map(records.filter((r) => r.reply.startsWith('250')).map((r) => [r.message_id, r.node]));
  assert.deepEqual(outcomes.filter((o) => byMessage.get(o.message.messageId) !== cluster.nodes[o.answeredBy]!.name).map((o) => o.message.seq), []);

  // 2. Wait for the outbox: both names' notices, every source's report, the digests of every window.
  const detections = records.filter((r) => r.verdict === 'infected' || r.verdict === 'banned');
  const names = new Set(detections.map((r) => (r.verdict === 'infected' ? 'infected' : 'banned')));
  const sources = new Set(detections.map((r) => r.client_ip));
  const captured = () => cluster.relay.messages().map((text) => ({ text, messageId: header(text, 'Message-ID') ?? '', subject: header(text, 'Subject') ?? '' }));
  const unique = <T extends { messageId: string }>(list: T[]) => [...new Map(list.map((m) => [m.messageId, m])).values()];
  const digestTotal = (list: { text: string }[]) => list.reduce((n, m) => n + Number(/(\d+) message\(s\) in all/.exec(m.text.replace(/=\r?\n/g, ''))?.[1] ?? NaN), 0);
  const kinds = () => {
    const all = captured();
    return {
      all,
      notices: unique(all.filter((m) => m.messageId.startsWith('<postmaster-notice.'))),
      digests: unique(all.filter((m) => m.messageId.startsWith('<digest-'))),
      reports: unique(all.filter((m) => m.messageId.startsWith('<arf-'))),
    };
  };
  const deadline = Date.now() + 120_000;
  for (;;) {
    const k = kinds();
    if (k.notices.length >= names.size && k.reports.length >= sources.size && k.notices.length + digestTotal(k.digests) >= detections.length) break;
    if (Date.now() > deadline) assert.fail(`outbox not drained: ${k.notices.length} notices, ${k.reports.length}/${sources.size} reports, ${digestTotal(k.digests)} in digests of ${detections.length}`);
    await sleep(500);
  }
  await sleep(2000); // anything that would go out twice has had its chance
  const k = kinds();

  // 3. One notice per name, one report per source IP, no detection in two digests, every detection in a report's count.
  assert.equal(k.notices.length, names.size, 'one immediate postmaster notice per name');
  assert.ok(k.all.every((m) => m.text.includes(`X-Rcpt-Args: <${POSTMASTER}>`) || m.text.includes(`X-Rcpt-Args: <${ABUSE_DESK}>`)));
  const reportIps = k.reports.map((m) => /^Source-IP:\s*(\S+)/m.exec(m.text)?.[1]);
  assert.deepEqual([...reportIps].sort(), [...sources].sort(), 'exactly one ARF report per source IP');
  assert.equal(k.notices.length + digestTotal(k.digests), detections.length, 'every detection is in the first notice or exactly one digest');
  const perSource = new Map<string, number>();
  for (const d of detections) perSource.set(d.client_ip, (perSource.get(d.client_ip) ?? 0) + 1);
  for (const m of k.reports) {
    const ip = /^Source-IP:\s*(\S+)/m.exec(m.text)![1]!;
    assert.equal(Number(/^Incidents:\s*(\d+)/m.exec(m.text)?.[1]), perSource.get(ip), `the report for ${ip} counts every detection`);
  }

  // 4. Nothing reached the relay twice, except a job whose sender died after the hand-off — and that is flagged.
  const copies = new Map<string, number>();
  for (const m of k.all) copies.set(m.messageId, (copies.get(m.messageId) ?? 0) + 1);
  const twice = [...copies].filter(([, n]) => n > 1).map(([id]) => id);
  const flagged = await sql<{ id: string; kind: string }>`select id, kind from jobs where possible_duplicate`.execute(store.db);
  for (const id of twice) assert.ok(flagged.rows.some((j) => id.includes(j.id)), `${id} went out twice and its job is flagged a possible duplicate`);
  const jobs = await store.db.selectFrom('jobs').select(['kind', 'state', 'sent_by']).where('kind', 'in', ['postmaster-notice', 'postmaster-digest', 'abuse-report']).execute();
  assert.ok(jobs.every((j) => j.state === 'done' || j.state === 'queued'), `jobs: ${JSON.stringify(jobs.filter((j) => j.state !== 'done'))}`);
  // Which node sent each: the worker name starts with the node's.
  assert.ok(jobs.filter((j) => j.state === 'done' && j.kind !== 'postmaster-digest').every((j) => /^node-[123]:\d+$/.test(j.sent_by ?? '')), JSON.stringify(jobs.map((j) => j.sent_by)));

  // 5. Each node's /metrics says which node it is.
  for (const n of cluster.nodes) {
    const res = await fetch(`http://127.0.0.1:${n.webPort}/metrics`);
    assert.equal(res.status, 200);
    assert.match(await res.text(), new RegExp(`backstop_messages_total\\{[^}]*node="${n.name}"`));
  }
  console.log(`# wave: ${messages.length} messages in ${waveSeconds.toFixed(1)} s over 3 nodes, ${answeredByVictimBeforeKill.length} answered by the victim before its SIGKILL, ${twice.length} possible duplicates at the relay (${flagged.rows.length} flagged)`);
});
