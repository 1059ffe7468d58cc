import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { sql } from 'kysely';
import { audit } from '../../src/store/audit.ts';
import { MessageLog, type MessageRecord } from '../../src/store/message-log.ts';
import { listMigrations, migrate } from '../../src/store/migrations.ts';
import { getQuarantined, listQuarantine, markDeleted, markReleased, quarantineMessage } from '../../src/store/quarantine.ts';
import { openStore } from '../../src/store/store.ts';
import { createTestDatabase, openTestStore } from '../helpers/pg.ts';

function record(overrides: Partial<MessageRecord> = {}): MessageRecord {
  return {
    id: randomUUID(),
    received_at: new Date(),
    node: 'test',
    client_ip: '192.0.2.7',
    client_port: 40000,
    helo: 'pc.example',
    mail_from: 'someone@example.org',
    rcpt_to: ['user@example.net'],
    message_id: '<x@y>',
    subject: 'hi',
    size: 100,
    verdict: 'clean',
    verdict_detail: null,
    action: 'deliver',
    reply: '250 2.0.0 Ok',
    scan_ms: 1.5,
    quarantine_id: null,
    ...overrides,
  };
}

for (const kind of ['pglite', 'postgres'] as const) {
  describe(`store on ${kind}`, async () => {
    const { store, close } = await openTestStore(kind, 'bs_store');
    after(close);

    test('migrations are recorded and a second run applies nothing', async () => {
      const versions = await sql<{ version: number }>`select version from schema_migrations order by version`.execute(store.db);
      assert.deepEqual(versions.rows.map((r) => Number(r.version)), listMigrations().map((m) => m.version));
      assert.deepEqual(await migrate(store.db), []);
    });

    for (const transactionDeadline of [true, false]) test(`message log${transactionDeadline ? '' : ' (no deadline: one INSERT a group)'}: every commit() resolves only once its record is readable, in few transactions`, async () => {
      const log = new MessageLog(store.db, { maxGroup: 7, groupCommitMs: 5, transactionDeadline, ...(store.insertRows ? { insertRows: store.insertRows } : {}) });
      const ids = Array.from({ length: 30 }, () => randomUUID());
      const seen = await Promise.all(
        ids.map(async (id) => {
          await log.commit(record({ id, rcpt_to: ['a@example.net', 'b@example.net'] }));
          return (await store.db.selectFrom('messages').select('id').where('id', '=', id).execute()).length;
        }),
      );
      assert.deepEqual(seen, ids.map(() => 1));
      const rows = await store.db.selectFrom('messages').select(['id', 'rcpt_to', 'client_ip']).where('id', 'in', ids).execute();
      assert.equal(rows.length, 30);
      assert.deepEqual(rows[0]!.rcpt_to, ['a@example.net', 'b@example.net']);
      assert.equal(rows[0]!.client_ip, '192.0.2.7');
      // 30 records in groups of at most 7: at least 5 transactions, and far fewer than 30.
      assert.ok(log.stats.groups >= 5 && log.stats.groups <= 10, `groups: ${log.stats.groups}`);
    });

    for (const prepared of store.insertRows ? [false, true] : [false]) test(`message log${prepared ? ' (prepared INSERT)' : ''}: a record the store refuses rejects its own commit only, and record() reports what it lost`, async () => {
      const errors: [Error, number][] = [];
      const log = new MessageLog(store.db, { groupCommitMs: 20, onError: (e, n) => errors.push([e, n]), transactionDeadline: !prepared, ...(prepared ? { insertRows: store.insertRows! } : {}) });
      const [good, before] = [randomUUID(), randomUUID()];
      const results = await Promise.allSettled([log.commit(record({ id: before })), log.commit(record({ client_ip: 'not-an-ip' })), log.commit(record({ id: good }))]);
      assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
      assert.equal((await store.db.selectFrom('messages').select('id').where('id', 'in', [good, before]).execute()).length, 2);
      assert.ok(log.stats.groups >= 2, 'the group failed and was retried one record at a time');
      log.record(record({ client_ip: 'not-an-ip' }));
      await log.flush();
      await new Promise((r) => setImmediate(r));
      assert.equal(errors.length, 1);
      assert.equal(errors[0]![1], 1);
    });

    test('message log: the extras of a group commit in the same transaction as the records, or not at all', async () => {
      const log = new MessageLog<string>(store.db, {
        groupCommitMs: 20,
        writeExtra: async (tx, extras) => {
          await tx.insertInto('notice_names').values(extras.map((name) => ({ name }))).execute();
          if (extras.includes('poison')) throw new Error('extra refused');
        },
      });
      const [a, b] = [randomUUID(), randomUUID()];
      const results = await Promise.allSettled([log.commit(record({ id: a }), `name-${a}`), log.commit(record({ id: b }), 'poison')]);
      assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected']);
      const messages = await store.db.selectFrom('messages').select('id').where('id', 'in', [a, b]).execute();
      const names = await store.db.selectFrom('notice_names').select('name').where('name', 'in', [`name-${a}`, 'poison']).execute();
      assert.deepEqual(messages.map((m) => m.id), [a]);
      assert.deepEqual(names.map((n) => n.name), [`name-${a}`]);
    });

    test('quarantine keeps the whole raw message byte for byte, once released it cannot be released again', async () => {
      const raw = Buffer.concat([Buffer.from('Subject: x\r\n\r\n'), Buffer.from([0, 1, 2, 255, 254]), Buffer.from('\r\n')]);
      const id = await quarantineMessage(store.db, {
        messageLogId: randomUUID(), clientIp: '2001:db8::7', helo: 'h', mailFrom: '', rcptTo: ['u@example.net'],
        messageId: null, subject: 'x', verdict: 'infected', verdictDetail: 'Eicar-Test-Signature', raw,
      });
      const row = await getQuarantined(store.db, id);
      assert.ok(row);
      assert.ok(Buffer.from(row.raw).equals(raw));
      assert.equal(row.size, raw.length);
      assert.equal(row.client_ip, '2001:db8::7');
      assert.equal((await listQuarantine(store.db)).some((q) => q.id === id), true);
      assert.equal(await markReleased(store.db, id, 'tester'), true);
      assert.equal(await markReleased(store.db, id, 'tester'), false);
      assert.equal((await listQuarantine(store.db)).some((q) => q.id === id), false);
      assert.equal(await markDeleted(store.db, id), true);
      assert.equal((await getQuarantined(store.db, id))!.raw.length, 0);
    });

    test('an id that is not a uuid finds nothing rather than erroring', async () => {
      assert.equal(await getQuarantined(store.db, "1' or '1'='1"), undefined);
    });

    test('audit entries keep their structured detail', async () => {
      await audit(store.db, 'admin', 'quarantine.release', 'q1', { note: '<script>' });
      const row = await store.db.selectFrom('audit').selectAll().where('target', '=', 'q1').executeTakeFirstOrThrow();
      assert.deepEqual(row.detail, { note: '<script>' });
    });
  });
}

test('concurrent nodes migrating one PostgreSQL apply each step once', async () => {
  const database = await createTestDatabase('bs_migrate');
  try {
    const stores = await Promise.all([1, 2, 3, 4].map(() => openStore(database.url, { poolSize: 2 })));
    const rows = await sql<{ n: number }>`select count(*)::int as n from schema_migrations`.execute(stores[0]!.db);
    assert.equal(rows.rows[0]!.n, listMigrations().length);
    await Promise.all(stores.map((s) => s.close()));
  } finally {
    await database.drop();
  }
});
