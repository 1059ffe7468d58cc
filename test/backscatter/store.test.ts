import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sql } from 'kysely';
import { openStore } from '../../src/store/store.ts';

test('0200_backscatter: the classification record and complaint counts (PGlite)', async () => {
  const store = await openStore('pglite-memory:');
  try {
    await sql`insert into backscatter_events (client_ip, helo, class, format, verdict, action, reasons) values ('192.0.2.1', 'mx.far.example', 'dsn', 'qmail', 'backscatter', 'refuse', ${['bounce subject (qmail)']})`.execute(store.db);
    const rows = await sql<{ class: string; reasons: string[] }>`select class, reasons from backscatter_events`.execute(store.db);
    assert.deepEqual(rows.rows, [{ class: 'dsn', reasons: ['bounce subject (qmail)'] }]);
    // Closed sets: a class or verdict the code does not know is refused by the schema.
    await assert.rejects(sql`insert into backscatter_events (client_ip, helo, class, verdict, action) values ('192.0.2.1', 'x', 'spam', 'ours', 'pass')`.execute(store.db));
    await assert.rejects(sql`insert into backscatter_events (client_ip, helo, class, verdict, action) values ('192.0.2.1', 'x', 'dsn', 'maybe', 'pass')`.execute(store.db));
    await sql`insert into backscatter_complaints (organisation, bounces_seen) values ('far.example', 1) on conflict (organisation) do update set bounces_seen = backscatter_complaints.bounces_seen + 1`.execute(store.db);
    await sql`insert into backscatter_complaints (organisation, bounces_seen) values ('far.example', 1) on conflict (organisation) do update set bounces_seen = backscatter_complaints.bounces_seen + 1`.execute(store.db);
    const c = await sql<{ bounces_seen: number }>`select bounces_seen from backscatter_complaints`.execute(store.db);
    assert.equal(c.rows[0]?.bounces_seen, 2);
  } finally {
    await store.close();
  }
});
