/*
 * Durable before the reply (edge/judge + store/message-log): the end-of-DATA
 * reply for discard and quarantine, and the 550 for reject, comes only once
 * the message's record and the detection behind notices and reports are
 * committed; a store that is slow or refuses writes is answered 451 4.3.0 —
 * never a 250 whose record may be lost — and the gateway recovers by itself.
 *
 * Real parts: the in-process gateway in front of smtp-sink, nodemailer's SMTP
 * client bound to 127.x addresses, PGlite and a scratch PostgreSQL database.
 * "Slow" is a real lock held on the messages table by another connection;
 * "refusing" is the table renamed away under the running gateway.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { sql } from 'kysely';
import pg from 'pg';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { openStore, type Store } from '../../src/store/store.ts';
import { createTestDatabase, openTestStore } from '../helpers/pg.ts';
import { EICAR, startTestGateway, type TestGateway } from '../helpers/gateway.ts';

interface Answer {
  code: number;
  text: string;
  ms: number;
}

/** One message over SMTP from `localAddress`; the reply to the end of DATA, as the client saw it. */
function send(port: number, localAddress: string, subject: string, body: string): Promise<Answer> {
  const raw = [`From: pc@home.example`, 'To: user@example.net', `Subject: ${subject}`, `Message-ID: <${subject}@home.example>`, 'MIME-Version: 1.0', 'Content-Type: text/plain', '', body, ''].join('\r\n');
  const started = Date.now();
  return new Promise((resolve) => {
    const c = new SMTPConnection({ host: '127.0.0.1', port, localAddress, name: 'home.example', ignoreTLS: true, socketTimeout: 30_000 });
    c.on('error', (err) => resolve({ code: (err as { responseCode?: number }).responseCode ?? 0, text: err.message, ms: Date.now() - started }));
    c.connect(() =>
      c.send({ from: 'pc@home.example', to: ['user@example.net'] }, raw, (err, info) => {
        c.quit();
        if (err) resolve({ code: (err as { responseCode?: number }).responseCode ?? 0, text: (err as { response?: string }).response ?? err.message, ms: Date.now() - started });
        else resolve({ code: 250, text: info.response, ms: Date.now() - started });
      }),
    );
  });
}

const NOTIFY = { relay: 'smtp://127.0.0.1:1', from: 'backstop@example.net', postmaster: 'postmaster@example.net' };

async function recordOf(store: Store, subject: string) {
  return store.db.selectFrom('messages').select(['id', 'action', 'reply', 'verdict', 'client_ip']).where('subject', '=', subject).execute();
}

for (const kind of ['pglite', 'postgres'] as const) {
  describe(`durable replies on ${kind}`, async () => {
    const { store, close } = await openTestStore(kind, 'bs_durable');
    after(close);

    for (const action of ['discard', 'quarantine', 'reject'] as const) {
      test(`${action}: when the client has its reply, the record and the detection behind the notice and the report are committed`, async () => {
        const g = await startTestGateway({ actions: { infected: action }, notify: NOTIFY, abuse: {} }, { store });
        try {
          const ip = { discard: '127.0.3.1', quarantine: '127.0.3.2', reject: '127.0.3.3' }[action];
          const subject = `durable-${kind}-${action}`;
          const answer = await send(g.port, ip, subject, EICAR);
          assert.equal(answer.code, action === 'reject' ? 550 : 250, answer.text);
          // Read at once, no flush: what the client was told is already in the store.
          const [row] = await recordOf(store, subject);
          assert.ok(row, 'the record is committed before the reply');
          assert.equal(row.action, action);
          assert.match(row.reply, action === 'reject' ? /^550 / : /^250 /);
          // The postmaster hears of it: the name's first detection is a notice job, later ones digest items.
          const notice = await sql<{ n: number }>`select count(*)::int as n from jobs where kind = 'postmaster-notice' and payload->>'id' = ${row.id}`.execute(store.db);
          const digest = await store.db.selectFrom('notice_digest_items').select('id').where('client_ip', '=', ip).execute();
          assert.equal(notice.rows[0]!.n + digest.length, 1, 'the detection reached the postmaster policy in the same commit');
          const source = await store.db.selectFrom('abuse_sources').select(['detections']).where('client_ip', '=', ip).executeTakeFirst();
          assert.equal(source?.detections, 1, 'the detection is counted for its source IP');
          if (action === 'quarantine') assert.equal((await store.db.selectFrom('quarantine').select('id').where('message_log_id', '=', row.id).execute()).length, 1);
        } finally {
          await g.close();
        }
      });
    }

    test('forty clients at once: every 250 has its record, and they share far fewer transactions than messages', async () => {
      const g = await startTestGateway({ actions: { infected: 'discard' }, notify: NOTIFY, abuse: {}, records: { groupCommitMs: 10 } }, { store });
      try {
        const subjects = Array.from({ length: 40 }, (_, i) => `burst-${kind}-${i}`);
        const answers = await Promise.all(subjects.map((s, i) => send(g.port, `127.0.4.${i + 1}`, s, i % 2 ? EICAR : 'clean mail')));
        assert.deepEqual(answers.map((a) => a.code), subjects.map(() => 250));
        const rows = await store.db.selectFrom('messages').select('subject').where('subject', 'in', subjects).execute();
        assert.equal(rows.length, 40);
        assert.equal(g.messageLog.stats.records, 40);
        assert.ok(g.messageLog.stats.groups < 40, `${g.messageLog.stats.groups} transactions for 40 records`);
        const sources = await store.db.selectFrom('abuse_sources').select('client_ip').where('client_ip', 'in', subjects.flatMap((_, i) => (i % 2 ? [`127.0.4.${i + 1}`] : []))).execute();
        assert.equal(sources.length, 20, 'every refused source is counted');
      } finally {
        await g.close();
      }
    });
  });
}

describe('a PostgreSQL store in trouble', async () => {
  const database = await createTestDatabase('bs_durable_trouble');
  const store = await openStore(database.url);
  let g: TestGateway;
  after(async () => {
    await g?.close();
    await store.close();
    await database.drop();
  });

  test('slower than records.commitTimeoutMs: 451 4.3.0 within the bound, and the record the client was refused is not written behind its back', async () => {
    g = await startTestGateway({ actions: { infected: 'discard' }, records: { commitTimeoutMs: 800 } }, { store });
    const locker = new pg.Client({ connectionString: database.url });
    await locker.connect();
    try {
      await locker.query('begin');
      await locker.query('lock table messages in access exclusive mode');
      const slow = await send(g.port, '127.0.5.1', 'slow-store', EICAR);
      assert.equal(slow.code, 451, slow.text);
      assert.match(slow.text, /4\.3\.0/);
      assert.ok(slow.ms >= 700 && slow.ms < 4000, `answered after ${slow.ms} ms`);
      await locker.query('rollback');
      // The group's transaction gave up at the deadline (statement_timeout), so nothing commits late.
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(await recordOf(store, 'slow-store'), []);
      const again = await send(g.port, '127.0.5.1', 'slow-store-retry', EICAR);
      assert.equal(again.code, 250, again.text);
      assert.equal((await recordOf(store, 'slow-store-retry')).length, 1);
    } finally {
      await locker.end();
    }
  });

  test('refusing writes: discard and clean mail are 451 4.3.0, never 250; once the table is back, 250 again without a restart', async () => {
    await store.db.schema.alterTable('messages').renameTo('messages_away').execute();
    try {
      const discarded = await send(g.port, '127.0.5.2', 'down-discard', EICAR);
      assert.equal(discarded.code, 451, discarded.text);
      assert.match(discarded.text, /4\.3\.0/);
      // Clean mail: the next hop said 250, but its record cannot be written, so the sender must not hear 250 either.
      const clean = await send(g.port, '127.0.5.2', 'down-clean', 'clean mail');
      assert.equal(clean.code, 451, clean.text);
      assert.match(clean.text, /4\.3\.0/);
    } finally {
      await store.db.schema.alterTable('messages_away').renameTo('messages').execute();
    }
    const back = await send(g.port, '127.0.5.2', 'back-clean', 'clean mail');
    assert.equal(back.code, 250, back.text);
    const [row] = await recordOf(store, 'back-clean');
    assert.equal(row?.action, 'deliver');
    assert.deepEqual(await recordOf(store, 'down-discard'), []);
  });
});
