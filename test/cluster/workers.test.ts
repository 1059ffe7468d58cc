/*
 * One node of two workers (smtp.workers: 2, node:cluster) on PostgreSQL, as
 * real processes: mail from many 127.x sources is answered by both workers
 * (the records say node-1/w1 and node-1/w2); a worker SIGKILLed mid-wave is
 * started again by the primary and nothing that was answered 250 is lost
 * (the same counting as the many-node crash test: records, one notice per
 * name, one report per source); one scrape of /metrics carries both
 * workers' series; the per-client connection limit holds for the node, not
 * per worker; the milter answers in every worker on the one unix socket the
 * primary holds; SIGTERM to the primary stops every worker gracefully (exit 0).
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { decodeReply, encodeCommand, PacketReader, type MilterReply } from '../../src/milter/codec.ts';
import { openStore, type Store } from '../../src/store/store.ts';
import { createTestDatabase } from '../helpers/pg.ts';
import { planWave, sendOnce, sendWave, sleep, startCluster, verifyRun, waveRaw, type Cluster, type Node } from '../helpers/cluster.ts';

const SOURCES = 24;
const PER_SOURCE = 4;
const CONNECTIONS_PER_CLIENT = 3;
const MILTER_SOCKET = join(mkdtempSync(join(tmpdir(), 'bs-workers-milter-')), 'milter.sock');

let database: { url: string; drop(): Promise<void> };
let store: Store;
let cluster: Cluster;
let node: Node;
/** Everything the node has logged (stdout and stderr), kept whole: the output helper keeps only the tail. */
let log = '';

interface Ready {
  worker: string;
  pid: number;
}
const readies = (): Ready[] =>
  log
    .split('\n')
    .filter((l) => l.includes('"msg":"worker ready"'))
    .map((l) => JSON.parse(l) as Ready);

async function until(what: string, ok: () => boolean, ms = 90_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) assert.fail(`${what} did not happen in ${ms} ms:\n${log.slice(-4000)}`);
    await sleep(100);
  }
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

before(async () => {
  database = await createTestDatabase('bs_workers');
  store = await openStore(database.url); // migrates once; the workers find it done
  cluster = await startCluster(1, database.url, {
    reportDelay: '40s',
    digestMinutes: 0.1,
    configure: (c) => {
      c.smtp.workers = 2;
      c.smtp.limits = { connectionsPerClient: CONNECTIONS_PER_CLIENT, exempt: [] };
      c.log = { level: 'info' }; // the primary's "worker ready" and "worker died" lines
      c.milter = { listen: `unix:${MILTER_SOCKET}` };
    },
  });
  node = cluster.nodes[0]!;
  log = node.proc!.output();
  node.proc!.child.stdout!.on('data', (c: Buffer) => (log += c.toString()));
  node.proc!.child.stderr!.on('data', (c: Buffer) => (log += c.toString()));
  await until('both workers ready', () => new Set(readies().map((r) => r.worker)).size === 2);
});

after(async () => {
  await cluster?.stop();
  await store?.close();
  await database?.drop();
});

test('a wave over two workers, one SIGKILLed mid-wave: both answered, the primary starts it again, every 250 has its record, one notice per name, one report per source', async () => {
  const messages = planWave(SOURCES, PER_SOURCE, 1, '127.21.0', 'wk');
  const victim = readies().find((r) => r.worker === 'node-1/w2')!;
  let answered = 0;
  const killed = (async () => {
    while (answered < messages.length / 3) await sleep(20);
    process.kill(victim.pid, 'SIGKILL');
    await until('the killed worker started again', () => readies().filter((r) => r.worker === 'node-1/w2').length === 2);
  })();
  const outcomes = await sendWave(cluster.nodes, messages, 12, 150_000, () => answered++);
  await killed;

  assert.equal(outcomes.length, messages.length);
  const { records } = await verifyRun(cluster, store.db, outcomes, assert);
  assert.deepEqual([...new Set(records.map((r) => r.node))].sort(), ['node-1/w1', 'node-1/w2'], 'both workers answered, each under its own name');
  assert.match(log, /"worker":"node-1\/w2".*"signal":"SIGKILL".*worker died \(signal SIGKILL\): starting it again/, 'the primary says which worker died and why');
  const restarted = readies().filter((r) => r.worker === 'node-1/w2').at(-1)!;
  assert.notEqual(restarted.pid, victim.pid);

  // The restarted worker takes its share again: round-robin hands every other connection to it.
  const before = await store.db.selectFrom('messages').select('id').execute();
  for (let i = 0; i < 4; i++) {
    const r = await sendOnce(node.smtpPort, '127.21.1.1', waveRaw({ seq: 1000 + i, sourceIp: '127.21.1.1', node: 0, payload: 'clean', messageId: `<after-${i}@home.example>` }));
    assert.equal(r.code, 250, r.text);
  }
  const later = await store.db.selectFrom('messages').select(['node']).where('id', 'not in', before.map((b) => b.id)).execute();
  assert.deepEqual([...new Set(later.map((r) => r.node))].sort(), ['node-1/w1', 'node-1/w2']);
});

test('one scrape of /metrics carries every worker\'s series, labelled node and worker', async () => {
  for (let i = 0; i < 4; i++) {
    const res = await fetch(`http://127.0.0.1:${node.webPort}/metrics`);
    assert.equal(res.status, 200);
    const text = await res.text();
    for (const w of ['w1', 'w2']) assert.match(text, new RegExp(`backstop_messages_total\\{[^}]*node="node-1",worker="${w}"\\} \\d+`), `scrape ${i} has ${w}'s counters`);
    assert.equal(text.match(/^# TYPE backstop_messages_total /gm)?.length, 1, 'one metric family, not one per worker');
  }
});

/** Opens a connection from `localAddress` and resolves with its first reply line; the socket stays open. */
function greet(localAddress: string): Promise<{ line: string; socket: net.Socket }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port: node.smtpPort, localAddress });
    let buf = '';
    socket.on('data', (d) => {
      buf += d.toString();
      const end = buf.indexOf('\n');
      if (end >= 0) resolve({ line: buf.slice(0, end).trim(), socket });
    });
    socket.once('error', reject);
  });
}

test('the per-client connection limit is the node\'s: two workers together admit connectionsPerClient, not twice that', async () => {
  // Round-robin gives each worker half of these; counted per worker, each would admit all of its half.
  const first = await Promise.all(Array.from({ length: CONNECTIONS_PER_CLIENT * 2 }, () => greet('127.21.9.1')));
  const admitted = first.filter((c) => c.line.startsWith('220'));
  const refused = first.filter((c) => c.line.startsWith('421'));
  assert.equal(admitted.length, CONNECTIONS_PER_CLIENT, first.map((c) => c.line).join('\n'));
  assert.equal(refused.length, CONNECTIONS_PER_CLIENT);
  assert.match(refused[0]!.line, /^421 4\.7\.0 Error: too many connections from 127\.21\.9\.1/);
  // Another client is counted apart.
  const other = await greet('127.21.9.2');
  assert.match(other.line, /^220 /);
  for (const c of [...first, other]) c.socket.destroy();
  // The primary forgets what has closed: the client gets its whole limit again.
  await sleep(500);
  const again = await Promise.all(Array.from({ length: CONNECTIONS_PER_CLIENT }, () => greet('127.21.9.1')));
  assert.deepEqual(again.map((c) => c.line.slice(0, 3)), Array(CONNECTIONS_PER_CLIENT).fill('220'));
  for (const c of again) c.socket.destroy();
});

test('the milter answers in every worker on the one unix socket the primary holds (no worker removes it as stale)', async () => {
  // Round-robin: these go to both workers; a worker that had unlinked the socket would leave nothing to connect to.
  for (let i = 0; i < 4; i++) {
    const reply = await new Promise<MilterReply>((resolve, reject) => {
      const socket = net.connect(MILTER_SOCKET);
      const reader = new PacketReader(1 << 20);
      socket.on('data', (d) => {
        for (const p of reader.push(d)) {
          resolve(decodeReply(p));
          socket.destroy();
        }
      });
      socket.once('error', reject);
      socket.write(encodeCommand({ command: 'optneg', version: 6, actions: 0x1ff, protocol: 0x1fffff }));
    });
    assert.equal(reply.reply, 'optneg', `connection ${i}`);
  }
});

test('SIGTERM to the primary stops every worker gracefully and the node exits 0', async () => {
  const workers = [...new Map(readies().map((r) => [r.worker, r.pid])).values()];
  assert.equal(workers.length, 2);
  assert.ok(workers.every(alive));
  const child = node.proc!.child;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  assert.equal(await exited, 0, log.slice(-3000));
  assert.deepEqual(workers.filter(alive), [], 'no worker outlives its primary');
  assert.match(log, /every worker has stopped/);
});
