/*
 * bench/commit — what one commit of the message log costs, alone: the price
 * every reply to DATA pays since it waits for its record (issue 15).
 *
 *   node --import tsx bench/commit.ts [--records 500]
 *
 * Through the same MessageLog the gateway uses (as `backstop serve` sets it
 * up: a statement_timeout per transaction on PostgreSQL only, PGlite's
 * prepared INSERT on PGlite), on PGlite in a
 * temporary directory (the embedded default, on disk) and on PostgreSQL at
 * 127.0.0.1:5432 (a scratch database, skipped with a note when it does not
 * answer): one record at a time (one session: a transaction each), then 20
 * callers at once (group commit: records per transaction shown). Prints wall
 * p50/p99 per commit() and this process's CPU per record (/proc via
 * process.cpuUsage: PGlite runs in this process, PostgreSQL's own CPU is not
 * in it), with the load average. Durability is the store's own: nothing here
 * changes fsync or synchronous_commit.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { MessageLog, type MessageRecord } from '../src/store/message-log.ts';
import { openStore, type Store } from '../src/store/store.ts';
import { createTestDatabase } from '../test/helpers/pg.ts';
import { percentile } from './lib/load.ts';

const { values } = parseArgs({ options: { records: { type: 'string', default: '500' } } });
const N = Number(values.records);

const row = (): MessageRecord => ({
  id: randomUUID(), received_at: new Date(), node: 'bench', client_ip: '192.0.2.7', client_port: 25000, helo: 'client.example',
  mail_from: 'sender@example.org', rcpt_to: ['user@example.net'], message_id: '<bench@example.org>', subject: 'figures', size: 20_000,
  verdict: 'clean', verdict_detail: null, action: 'delivered', reply: '250 2.0.0 Ok: queued', scan_ms: 5, quarantine_id: null, findings: null,
});

async function measure(store: Store): Promise<string> {
  const log = new MessageLog(store.db, { transactionDeadline: store.kind === 'postgres', ...(store.insertRows ? { insertRows: store.insertRows } : {}) });
  for (let i = 0; i < 50; i++) await log.commit(row()); // warm up (JIT, the statement's parameter types)
  const wall: number[] = [];
  let cpu = process.cpuUsage();
  for (let i = 0; i < N; i++) {
    const t0 = process.hrtime.bigint();
    await log.commit(row());
    wall.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  const alone = process.cpuUsage(cpu);
  const before = log.stats;
  cpu = process.cpuUsage();
  const concurrent: number[] = [];
  await Promise.all(
    Array.from({ length: 20 }, async () => {
      for (let i = 0; i < N / 20; i++) {
        const t0 = process.hrtime.bigint();
        await log.commit(row());
        concurrent.push(Number(process.hrtime.bigint() - t0) / 1e6);
      }
    }),
  );
  const shared = process.cpuUsage(cpu);
  const groups = log.stats.groups - before.groups;
  const ms = (u: NodeJS.CpuUsage, n: number) => ((u.user + u.system) / 1000 / n).toFixed(3);
  return (
    `one at a time: commit p50 ${percentile(wall, 50).toFixed(3)} p99 ${percentile(wall, 99).toFixed(3)} ms, CPU ${ms(alone, N)} ms per record\n` +
    `    20 at once:    commit p50 ${percentile(concurrent, 50).toFixed(3)} p99 ${percentile(concurrent, 99).toFixed(3)} ms, CPU ${ms(shared, concurrent.length)} ms per record, ${(concurrent.length / groups).toFixed(1)} records per transaction`
  );
}

const dir = mkdtempSync(join(tmpdir(), 'backstop-commit-'));
try {
  const pglite = await openStore(`pglite:${join(dir, 'db')}`);
  try {
    console.log(`PGlite (on disk, ${dir}):\n    ${await measure(pglite)}`);
  } finally {
    await pglite.close();
  }
  const database = await createTestDatabase('bs_bench_commit').catch((err: Error) => {
    console.log(`PostgreSQL: not measured (${err.message.split('\n')[0]})`);
    return null;
  });
  if (database) {
    const pg = await openStore(database.url);
    try {
      console.log(`PostgreSQL (127.0.0.1:5432):\n    ${await measure(pg)}`);
    } finally {
      await pg.close();
      await database.drop();
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.log(`load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
