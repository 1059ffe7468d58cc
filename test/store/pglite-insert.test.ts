import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { textValue } from '../../src/store/pglite-insert.ts';
import { openStore } from '../../src/store/store.ts';

describe('textValue: PostgreSQL text input syntax', () => {
  const table: [unknown, string | null][] = [
    [null, null],
    [undefined, null],
    ['', ''],
    ["it's \\ \"x\"", "it's \\ \"x\""],
    [new Date('2026-12-04T04:05:06.789Z'), '2026-12-04T04:05:06.789Z'],
    [42, '42'],
    [1.5, '1.5'],
    [true, 'true'],
    [[], '{}'],
    [['a@example.net', 'b@example.net'], '{"a@example.net","b@example.net"}'],
    [['NULL', null, '', 'a,b', '{x}', ' sp ', 'q"\\'], '{"NULL",NULL,"","a,b","{x}"," sp ","q\\"\\\\"}'],
  ];
  for (const [value, text] of table) test(`${JSON.stringify(value) ?? 'undefined'} → ${JSON.stringify(text)}`, () => assert.equal(textValue(value), text));
  test('objects and nested arrays are refused, not guessed', () => {
    assert.throws(() => textValue({ a: 1 }), TypeError);
    assert.throws(() => textValue([['a']]), TypeError);
  });
});

describe('pgliteInsert on the embedded store', async () => {
  const store = await openStore('pglite-memory:');
  after(() => store.close());
  const insert = store.insertRows!('messages', ['id', 'received_at', 'node', 'client_ip', 'client_port', 'helo', 'mail_from', 'rcpt_to', 'message_id', 'subject', 'size', 'verdict', 'verdict_detail', 'action', 'reply', 'scan_ms', 'quarantine_id', 'findings']);
  const row = (over: Record<string, unknown> = {}) => ({
    id: randomUUID(), received_at: new Date('2026-12-04T04:05:06.789Z'), node: 'n', client_ip: '2001:db8::7', client_port: 25, helo: 'h',
    mail_from: '', rcpt_to: ['u@example.net'], message_id: null, subject: null, size: 1, verdict: 'clean', verdict_detail: null,
    action: 'deliver', reply: '250 2.0.0 Ok', scan_ms: 0.25, quarantine_id: null, findings: null, ...over,
  });

  test('hostile strings, arrays and JSON come back as they went in', async () => {
    const hostile = ["'); drop table messages; --", 'a,b', '{x}', 'NULL', '"quoted" \\ back', 'ünïcødé ✉', ' '];
    const r = row({ subject: hostile.join(' | '), rcpt_to: hostile, helo: "o'brien", findings: JSON.stringify([{ verdict: 'banned', detail: 'x"y', part: '1' }]) });
    await insert([r]);
    const got = await store.db.selectFrom('messages').selectAll().where('id', '=', r.id).executeTakeFirstOrThrow();
    assert.deepEqual(got.rcpt_to, hostile);
    assert.equal(got.subject, hostile.join(' | '));
    assert.equal(got.helo, "o'brien");
    assert.deepEqual(got.findings, [{ verdict: 'banned', detail: 'x"y', part: '1' }]);
    assert.equal(got.received_at.toISOString(), '2026-12-04T04:05:06.789Z');
    assert.equal(got.scan_ms, 0.25);
  });

  test('a group commits whole or not at all, and the statement works again after a failure', async () => {
    const [a, b] = [row(), row({ client_ip: 'not-an-ip' })];
    await assert.rejects(insert([a, b]), /inet/);
    assert.equal((await store.db.selectFrom('messages').select('id').where('id', '=', a.id).execute()).length, 0, 'the good row before the bad one is rolled back');
    const c = row();
    await insert([a, c]);
    assert.equal((await store.db.selectFrom('messages').select('id').where('id', 'in', [a.id, c.id]).execute()).length, 2);
    await assert.rejects(insert([row({ id: a.id })]), /duplicate key/);
  });

  test('between Kysely transactions, never inside one', async () => {
    const r = row();
    let seenInside = -1;
    await Promise.all([
      store.db.transaction().execute(async (tx) => {
        await new Promise((res) => setTimeout(res, 20));
        seenInside = (await tx.selectFrom('messages').select('id').where('id', '=', r.id).execute()).length;
      }),
      insert([r]),
    ]);
    assert.equal(seenInside, 0);
    assert.equal((await store.db.selectFrom('messages').select('id').where('id', '=', r.id).execute()).length, 1);
  });
});
