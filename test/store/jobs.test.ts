import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { backoffMs, claim, complete, enqueue, fail, jobHandoff, jobMessageId, markSending, runWorker, setState } from '../../src/store/jobs.ts';
import { openStore } from '../../src/store/store.ts';
import { createTestDatabase, openTestStore } from '../helpers/pg.ts';

test('back-off doubles from 30 s and stops at 6 h', () => {
  assert.deepEqual([1, 2, 3, 4].map(backoffMs), [30_000, 60_000, 120_000, 240_000]);
  assert.equal(backoffMs(30), 6 * 3600_000);
});

for (const kind of ['pglite', 'postgres'] as const) {
  describe(`jobs on ${kind}`, async () => {
    const { store, close } = await openTestStore(kind, 'bs_jobs');
    after(close);

    test('a dedupe key makes enqueueing idempotent', async () => {
      const first = await enqueue(store.db, { kind: 'k-dedupe', payload: { n: 1 }, dedupeKey: 'notice:Worm.Mydoom' });
      const second = await enqueue(store.db, { kind: 'k-dedupe', payload: { n: 2 }, dedupeKey: 'notice:Worm.Mydoom' });
      assert.ok(first);
      assert.equal(second, null);
    });

    test('only due jobs of the asked kinds are claimed; payload comes back as data', async () => {
      await enqueue(store.db, { kind: 'k-due', payload: { to: 'postmaster@example.net' } });
      await enqueue(store.db, { kind: 'k-due', payload: {}, runAt: new Date(Date.now() + 3600_000) });
      await enqueue(store.db, { kind: 'k-other', payload: {} });
      const jobs = await claim(store.db, 'w1', ['k-due']);
      assert.equal(jobs.length, 1);
      assert.deepEqual(jobs[0]!.payload, { to: 'postmaster@example.net' });
      assert.equal(jobs[0]!.attempts, 1);
      assert.equal(await complete(store.db, jobs[0]!.id, 'w1'), true);
      assert.deepEqual(await claim(store.db, 'w1', ['k-due']), []);
    });

    test('a failure is retried with back-off, and after max attempts it is failed', async () => {
      const id = (await enqueue(store.db, { kind: 'k-fail', payload: {}, maxAttempts: 2 }))!;
      const now = new Date();
      const [first] = await claim(store.db, 'w1', ['k-fail'], 10, 60_000, now);
      assert.equal(await fail(store.db, first!, 'w1', 'relay refused', now), 'retry');
      assert.deepEqual(await claim(store.db, 'w1', ['k-fail'], 10, 60_000, now), [], 'not due during back-off');
      const later = new Date(now.getTime() + backoffMs(1) + 1000);
      const [second] = await claim(store.db, 'w1', ['k-fail'], 10, 60_000, later);
      assert.equal(second!.id, id);
      assert.equal(await fail(store.db, second!, 'w1', 'relay refused again', later), 'failed');
      const row = await store.db.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
      assert.equal(row.state, 'failed');
      assert.equal(row.last_error, 'relay refused again');
      assert.equal(await setState(store.db, id, 'retry'), true);
      assert.equal((await claim(store.db, 'w2', ['k-fail'])).length, 1);
    });

    test('a job whose worker died is taken again when its lease runs out; the dead worker cannot complete it', async () => {
      const id = (await enqueue(store.db, { kind: 'k-lease', payload: {} }))!;
      const now = new Date();
      await claim(store.db, 'dead', ['k-lease'], 10, 1000, now);
      assert.deepEqual(await claim(store.db, 'alive', ['k-lease'], 10, 1000, now), []);
      const [again] = await claim(store.db, 'alive', ['k-lease'], 10, 1000, new Date(now.getTime() + 2000));
      assert.equal(again!.id, id);
      assert.equal(await complete(store.db, id, 'dead'), false);
      assert.equal(await complete(store.db, id, 'alive'), true);
    });

    test('a job its worker handed to the relay before dying comes back flagged a possible duplicate, with the same Message-ID; one that died before the hand-off does not', async () => {
      const handed = (await enqueue(store.db, { kind: 'k-handoff', payload: {} }))!;
      const before = (await enqueue(store.db, { kind: 'k-handoff', payload: {} }))!;
      const now = new Date();
      const first = await claim(store.db, 'node-a:1', ['k-handoff'], 10, 1000, now);
      assert.equal(first.length, 2);
      const idFirst = jobMessageId(first.find((j) => j.id === handed)!, 'mx.example.net');
      assert.equal(await markSending(store.db, handed, 'node-a:1'), true); // … and node-a dies with the relay's 250 on the wire
      const later = new Date(now.getTime() + 2000);
      const again = await claim(store.db, 'node-b:1', ['k-handoff'], 10, 1000, later);
      const byId = new Map(again.map((j) => [j.id, j]));
      assert.equal(byId.get(handed)!.possible_duplicate, true);
      assert.equal(byId.get(before)!.possible_duplicate, false);
      assert.equal(jobMessageId(byId.get(handed)!, 'mx.example.net'), idFirst);
      assert.equal(idFirst, `<k-handoff.${handed}@mx.example.net>`);
      // The dead worker, were it only slow, may not hand it over a second time now that node-b holds it.
      await assert.rejects(jobHandoff(store.db, first[0]!, 'node-a:1', 'mx.example.net').sending(), /taken by another worker/);
      const handoff = jobHandoff(store.db, byId.get(handed)!, 'node-b:1', 'mx.example.net');
      await handoff.sending();
      await handoff.sent();
      const row = await store.db.selectFrom('jobs').select(['state', 'sent_by', 'handoffs', 'possible_duplicate', 'locked_by']).where('id', '=', handed).executeTakeFirstOrThrow();
      assert.deepEqual(row, { state: 'done', sent_by: 'node-b:1', handoffs: 2, possible_duplicate: true, locked_by: null });
    });

    test('the worker gives every handler a handoff: the job is done the moment the mail is, with the node that sent it', async () => {
      const id = (await enqueue(store.db, { kind: 'k-worker-handoff', payload: {} }))!;
      const stop = new AbortController();
      const seen: { state: string; messageId: string }[] = [];
      const worker = runWorker({
        db: store.db,
        worker: 'node-c:7',
        hostname: 'mx.example.net',
        pollMs: 20,
        signal: stop.signal,
        handlers: {
          'k-worker-handoff': async (_payload, _job, ctx) => {
            await ctx!.handoff.sending();
            const during = await store.db.selectFrom('jobs').select('state').where('id', '=', id).executeTakeFirstOrThrow();
            await ctx!.handoff.sent();
            seen.push({ state: during.state, messageId: ctx!.handoff.messageId });
            stop.abort();
          },
        },
      });
      await worker;
      assert.deepEqual(seen, [{ state: 'sending', messageId: `<k-worker-handoff.${id}@mx.example.net>` }]);
      const row = await store.db.selectFrom('jobs').select(['state', 'sent_by', 'handoffs', 'possible_duplicate']).where('id', '=', id).executeTakeFirstOrThrow();
      assert.deepEqual(row, { state: 'done', sent_by: 'node-c:7', handoffs: 1, possible_duplicate: false });
    });

    test('review jobs wait for approval; cancel stops a job', async () => {
      const held = (await enqueue(store.db, { kind: 'k-review', payload: {}, state: 'review' }))!;
      assert.deepEqual(await claim(store.db, 'w', ['k-review']), []);
      assert.equal(await setState(store.db, held, 'approve'), true);
      assert.equal((await claim(store.db, 'w', ['k-review'])).length, 1);
      const doomed = (await enqueue(store.db, { kind: 'k-cancel', payload: {} }))!;
      assert.equal(await setState(store.db, doomed, 'cancel'), true);
      assert.deepEqual(await claim(store.db, 'w', ['k-cancel']), []);
    });
  });
}

test('four nodes sharing one PostgreSQL run each of 300 jobs exactly once', async () => {
  const database = await createTestDatabase('bs_jobs_nodes');
  const nodes = await Promise.all([1, 2, 3, 4].map(() => openStore(database.url, { poolSize: 3 })));
  try {
    for (let i = 0; i < 300; i++) await enqueue(nodes[0]!.db, { kind: 'k-many', payload: { i } });
    const seen = new Map<number, string[]>();
    const controller = new AbortController();
    const workers = nodes.map((node, n) =>
      runWorker({
        db: node.db,
        worker: `node-${n}`,
        pollMs: 20,
        signal: controller.signal,
        handlers: {
          'k-many': async (payload) => {
            const i = (payload as { i: number }).i;
            seen.set(i, [...(seen.get(i) ?? []), `node-${n}`]);
            await new Promise((r) => setTimeout(r, 1));
          },
        },
      }),
    );
    const deadline = Date.now() + 60_000;
    while (seen.size < 300 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    controller.abort();
    await Promise.all(workers);
    assert.equal(seen.size, 300);
    assert.deepEqual([...seen.values()].filter((runs) => runs.length !== 1), []);
    assert.ok(new Set([...seen.values()].flat()).size >= 2, 'the work was shared between nodes');
    const left = await nodes[0]!.db.selectFrom('jobs').select('state').where('kind', '=', 'k-many').where('state', '!=', 'done').execute();
    assert.deepEqual(left, []);
  } finally {
    await Promise.all(nodes.map((n) => n.close()));
    await database.drop();
  }
});
