/*
 * GroupCommit (store/batcher): the durable-before-reply queue. The write is a
 * function here, so what is asserted is the promise itself: nobody is released
 * before the transaction holding their item ends, nobody waits past the bound,
 * and an item whose caller gave up before its group started is never written.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GroupCommit, StoreTimeoutError } from '../../src/store/batcher.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('concurrent callers share a few transactions, and each is released only after its own committed', async () => {
  const committed = new Set<number>();
  const groups: number[][] = [];
  const gc = new GroupCommit<number>({
    windowMs: 5,
    maxGroup: 20,
    timeoutMs: 5000,
    write: async (group) => {
      groups.push(group);
      await sleep(10); // the transaction's own time: everyone arriving now waits for the next group
      for (const n of group) committed.add(n);
    },
  });
  const early: number[] = [];
  await Promise.all(
    Array.from({ length: 100 }, async (_, n) => {
      await sleep(n % 10); // arrivals over ~10 ms
      await gc.commit(n);
      if (!committed.has(n)) early.push(n);
    }),
  );
  assert.deepEqual(early, []);
  assert.equal(groups.flat().length, 100);
  assert.ok(groups.length >= 5 && groups.length <= 20, `100 items in ${groups.length} transactions`);
  assert.ok(groups.every((g) => g.length <= 20));
});

test('windowMs 0: an item alone commits in a transaction of its own, without a timer; those arriving during a commit share the next one', async () => {
  const groups: number[][] = [];
  let release!: () => void;
  const gc = new GroupCommit<number>({
    windowMs: 0,
    maxGroup: 100,
    timeoutMs: 5000,
    write: async (group) => {
      groups.push(group);
      if (groups.length === 1) await new Promise<void>((r) => (release = r));
    },
  });
  const first = gc.commit(1);
  // The first transaction starts after this turn's callbacks (setImmediate), not after a timer.
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(groups, [[1]]);
  const during = [2, 3, 4].map((n) => gc.commit(n));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(groups, [[1]], 'nothing else starts while a transaction is running');
  release();
  await Promise.all([first, ...during]);
  assert.deepEqual(groups, [[1], [2, 3, 4]]);
  // Idle again: the next item goes alone, at once.
  await gc.commit(5);
  assert.deepEqual(groups.at(-1), [5]);
  assert.equal(gc.groups, 3);
  assert.equal(gc.items, 5);
});

test('a store that never answers: every caller hears StoreTimeoutError after the bound, items not yet started are never written, one that commits late is reported', async () => {
  const written: number[] = [];
  const late: number[] = [];
  let release!: () => void;
  const hung = new Promise<void>((r) => (release = r));
  const gc = new GroupCommit<number>({
    windowMs: 1,
    maxGroup: 1,
    timeoutMs: 150,
    write: async (group) => {
      written.push(...group);
      await hung;
    },
    onLate: (items) => late.push(...items),
  });
  const started = Date.now();
  const results = await Promise.allSettled([gc.commit(1), gc.commit(2), gc.commit(3)]);
  const waited = Date.now() - started;
  assert.ok(results.every((r) => r.status === 'rejected' && r.reason instanceof StoreTimeoutError));
  assert.ok(waited >= 140 && waited < 1000, `waited ${waited} ms`);
  release();
  await gc.flush();
  // 1 was in the hung transaction, which committed after its caller gave up: reported so its record can be corrected; 2 and 3 were dropped.
  assert.deepEqual(written, [1]);
  assert.deepEqual(late, [1]);
});

test('a store that fails: every caller of the group is refused, each item tried alone once', async () => {
  const tries: number[][] = [];
  const gc = new GroupCommit<number>({
    windowMs: 5,
    maxGroup: 100,
    timeoutMs: 5000,
    write: async (group) => {
      tries.push(group);
      throw new Error('connection refused');
    },
  });
  const results = await Promise.allSettled([1, 2, 3].map((n) => gc.commit(n)));
  assert.ok(results.every((r) => r.status === 'rejected' && (r.reason as Error).message === 'connection refused'));
  assert.deepEqual(tries, [[1, 2, 3], [1], [2], [3]]);
});

test('one item the store refuses does not sink the others of its group', async () => {
  const committed: number[] = [];
  const gc = new GroupCommit<number>({
    windowMs: 5,
    maxGroup: 100,
    timeoutMs: 5000,
    write: async (group) => {
      if (group.includes(13)) throw new Error('bad row');
      committed.push(...group);
    },
  });
  const results = await Promise.allSettled([11, 12, 13, 14].map((n) => gc.commit(n)));
  assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
  assert.deepEqual(committed, [11, 12, 14]);
});
