/*
 * The abuse desk on two nodes whose clocks are five minutes off (one ahead,
 * one behind), on one PostgreSQL: an infected customer's mail through the
 * smarthost opens an incident, the opening notice goes out, and the grace
 * timer is due exactly graceHours after the store's time of that notice —
 * not the node's — and fires once. A record's received_at is the store's
 * time too.
 *
 * Before incidents took their time from the store, the node behind set the
 * grace timer five minutes early by the store's clock, the node ahead five
 * minutes late; and a timer the store found due, run on the node behind,
 * was refused as early ("the grace period runs until…") and dropped, so the
 * line was never restricted.
 *
 * The skew is the process's wall clock (test/helpers/skewed-clock.mjs,
 * loaded with NODE_OPTIONS), as on a host whose NTP is off.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'kysely';
import { GRACE_JOB } from '../../src/desk/incidents.ts';
import { storeNow } from '../../src/store/clock.ts';
import { openStore, type Store } from '../../src/store/store.ts';
import { createTestDatabase } from '../helpers/pg.ts';
import { sendOnce, skewedClockEnv, sleep, startCluster, waveRaw, type Cluster } from '../helpers/cluster.ts';

const SKEW_MS = 5 * 60_000;
const OFFSETS = [SKEW_MS, -SKEW_MS]; // node-1 ahead, node-2 behind
const GRACE_HOURS = 1;
const GRACE_MS = GRACE_HOURS * 3_600_000;
/** One infected customer line per node, each sending through "its" node. */
const CUSTOMERS = [
  { id: 'c-ahead', ip: '127.31.0.1', email: 'ahead@customer.example' },
  { id: 'c-behind', ip: '127.31.0.2', email: 'behind@customer.example' },
];

let database: { url: string; drop(): Promise<void> };
let store: Store;
let cluster: Cluster;

before(async () => {
  database = await createTestDatabase('bs_cluster_skew_desk');
  store = await openStore(database.url);
  cluster = await startCluster(2, database.url, {
    reportDelay: '40s',
    digestMinutes: 0.1,
    env: (i) => skewedClockEnv(OFFSETS[i - 1]!),
    // The ISP's smarthost: the customers' lines relay through it, and the desk watches what they send.
    configure: (config) => Object.assign(config, { relayFrom: ['127.31.0.0/24'], desk: { graceHours: GRACE_HOURS, notice: { from: 'abuse-desk@example.net' } } }),
  });
  for (const c of CUSTOMERS) {
    await sql`insert into customers (id, name, email, language, time_zone) values (${c.id}, ${c.id}, ${c.email}, 'en', 'UTC')`.execute(store.db);
    await sql`insert into leases (ip, customer_id, valid, source) values (${c.ip}::inet, ${c.id}, tstzrange('2025-01-01T00:00:00Z', null), 'test')`.execute(store.db);
  }
});

after(async () => {
  await cluster?.stop();
  await store?.close();
  await database?.drop();
});

async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = await check();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}

const incidentOf = (customerId: string) => store.db.selectFrom('incidents').selectAll().where('customer_id', '=', customerId).executeTakeFirst();

test('nodes five minutes ahead and behind: received_at, the notice and the grace timer are the store\'s time; the timer fires once', async () => {
  const answeredAt = new Map<string, { sent: number }>();
  for (const [i, c] of CUSTOMERS.entries()) {
    const messageId = `<desk-skew-${i}@home.example>`;
    // Out through the smarthost (a domain not ours): the customer's line relays, the desk sees the worm.
    const raw = waveRaw({ seq: i, sourceIp: c.ip, node: i, payload: 'eicar', messageId }).replace('To: user@example.net', 'To: someone@elsewhere.example');
    const sent = (await storeNow(store.db)).getTime();
    const reply = await sendOnce(cluster.nodes[i]!.smtpPort, c.ip, raw, 'someone@elsewhere.example');
    const answered = (await storeNow(store.db)).getTime();
    assert.equal(reply.code, 250, `the worm from ${c.ip} is discarded (${reply.code} ${reply.text})`);
    answeredAt.set(c.id, { sent });
    const record = await store.db.selectFrom('messages').select(['node', 'received_at', 'verdict']).where('message_id', '=', messageId).executeTakeFirstOrThrow();
    assert.equal(record.node, cluster.nodes[i]!.name);
    assert.equal(record.verdict, 'infected');
    const at = new Date(record.received_at).getTime();
    assert.ok(at >= sent - 1000 && at <= answered + 1000, `${record.node} (clock ${OFFSETS[i]! / 60_000} min off): received_at ${new Date(at).toISOString()} by the store's clock (${new Date(sent).toISOString()}…${new Date(answered).toISOString()})`);
  }

  for (const c of CUSTOMERS) {
    const incident = await waitFor(`${c.id}'s notice`, async () => {
      const i = await incidentOf(c.id);
      return i?.state === 'notified' ? i : undefined;
    });
    const events = await store.db.selectFrom('incident_events').selectAll().where('incident_id', '=', incident.id).orderBy('id').execute();
    const sentEvent = events.find((e) => e.kind === 'notice-sent')!;
    const jobs = await store.db.selectFrom('jobs').selectAll().where('kind', '=', GRACE_JOB).where(sql<boolean>`payload->>'incidentId' = ${incident.id}`).execute();
    assert.equal(jobs.length, 1, 'one grace timer');
    const graceUntil = new Date(incident.grace_until!).getTime();
    // Exactly graceHours after the notice's time, and that time is the store's: it is within a second or two
    // of when the store wrote the timer (the notice's send lies between), not five minutes off.
    assert.equal(graceUntil - new Date(sentEvent.at).getTime(), GRACE_MS, 'grace runs graceHours from the notice');
    assert.equal(new Date(jobs[0]!.run_at).getTime(), graceUntil, 'the timer is due when grace ends');
    // The notice's time is the store's: after the worm was sent and the incident opened, before the store
    // wrote the timer (a node's own clock would put it five minutes before the one or after the other).
    const noticeAt = new Date(sentEvent.at).getTime();
    const openedAt = new Date(incident.opened_at).getTime();
    const written = new Date(jobs[0]!.created_at).getTime();
    const worm = answeredAt.get(c.id)!;
    assert.ok(openedAt >= worm.sent - 1000, `${c.id}: opened by the store's clock (${new Date(openedAt).toISOString()}, the worm sent ${new Date(worm.sent).toISOString()})`);
    assert.ok(noticeAt >= openedAt && noticeAt <= written, `${c.id}: the notice is dated by the store's clock (${new Date(noticeAt).toISOString()}, opened ${new Date(openedAt).toISOString()}, timer written ${new Date(written).toISOString()})`);
  }
  const notices = cluster.relay.envelopes().filter((m) => CUSTOMERS.some((c) => m.rcptTo.includes(c.email)));
  assert.equal(notices.length, CUSTOMERS.length, 'one opening notice per customer');

  // The grace period runs out: only the node behind is left to run the timers, and the hour has passed by the
  // store's clock (both the incident's end of grace and its timer moved back by it, a second ago).
  await cluster.nodes[0]!.proc!.stop();
  cluster.nodes[0]!.proc = null;
  await sql`update incidents set grace_until = grace_until - ${GRACE_MS} * interval '1 millisecond' - interval '1 second' where state = 'notified'`.execute(store.db);
  await sql`update jobs set run_at = run_at - ${GRACE_MS} * interval '1 millisecond' - interval '1 second' where kind = ${GRACE_JOB}`.execute(store.db);
  for (const c of CUSTOMERS) {
    const incident = await waitFor(`${c.id} restricted`, async () => {
      const i = await incidentOf(c.id);
      return i?.state === 'restricted' ? i : undefined;
    });
    const expired = await store.db.selectFrom('incident_events').select('kind').where('incident_id', '=', incident.id).where('kind', '=', 'grace-expired').execute();
    assert.equal(expired.length, 1, `${c.id}: grace expired once`);
  }
  const timers = await store.db.selectFrom('jobs').select(['state', 'attempts']).where('kind', '=', GRACE_JOB).execute();
  assert.deepEqual(timers, CUSTOMERS.map(() => ({ state: 'done', attempts: 1 })), 'each grace timer ran once, on the node five minutes behind, and was not refused as early');
  const restrictionNotices = await waitFor('the restriction notices', async () => {
    const n = cluster.relay.envelopes().filter((m) => CUSTOMERS.some((c) => m.rcptTo.includes(c.email)));
    return n.length === 2 * CUSTOMERS.length ? n : undefined;
  });
  assert.equal(restrictionNotices.length, 2 * CUSTOMERS.length, 'and one restriction notice each');
});
