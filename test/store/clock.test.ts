/*
 * store/clock: the store's time by a sample and the monotonic clock since
 * (table tests), and a StoreClock on both stores that keeps to the store's
 * now() while this process's wall clock (Date.now) is five minutes off.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { betterSample, MAX_SAMPLE_RTT_MS, storeNow, storeTimeAt, StoreClock, type ClockSample } from '../../src/store/clock.ts';
import { openTestStore, STORE_KINDS } from '../helpers/pg.ts';

const T = Date.UTC(2026, 11, 4, 4, 0, 0);
const sample = (sentAt: number, answeredAt: number, storeMs = T): ClockSample => ({ sentAt, answeredAt, storeMs });

test('the store answered halfway through the round trip; the monotonic clock runs on from there', () => {
  const rows: [string, ClockSample, number, number][] = [
    ['instant answer, read at once', sample(100, 100), 100, T],
    ['instant answer, read 2.5 s later', sample(100, 100), 2600, T + 2500],
    ['a 40 ms round trip: the answer is dated 20 ms in', sample(100, 140), 140, T + 20],
    ['read 10 s after a 40 ms round trip', sample(100, 140), 10_140, T + 10_020],
    ['a monotonic clock near zero (just started)', sample(0, 2), 1, T],
  ];
  for (const [name, s, at, want] of rows) assert.equal(storeTimeAt(s, at), want, name);
});

test('a fresh sample replaces the kept one unless its round trip was too slow to trust', () => {
  const kept = sample(0, 5, T);
  const rows: [string, ClockSample | null, ClockSample, ClockSample][] = [
    ['nothing kept: any sample, however slow', null, sample(0, 5000), sample(0, 5000)],
    ['a fast fresh one', kept, sample(10_000, 10_003, T + 10_000), sample(10_000, 10_003, T + 10_000)],
    ['a round trip at the bound still counts', kept, sample(10_000, 10_000 + MAX_SAMPLE_RTT_MS), sample(10_000, 10_000 + MAX_SAMPLE_RTT_MS)],
    ['a slower one is dropped (the store was busy)', kept, sample(10_000, 10_001 + MAX_SAMPLE_RTT_MS), kept],
  ];
  for (const [name, k, fresh, want] of rows) assert.deepEqual(betterSample(k, fresh), want, name);
});

for (const kind of STORE_KINDS) {
  describe(`StoreClock on ${kind}`, async () => {
    const { store, close } = await openTestStore(kind, 'bs_clock');
    after(close);

    test('this process five minutes ahead: the clock still reads the store\'s time, not the wall clock', async () => {
      const realNow = Date.now;
      Date.now = () => realNow() + 5 * 60_000;
      try {
        const clock = await StoreClock.start(store.db, { refreshMs: 60_000 });
        try {
          const before = (await storeNow(store.db)).getTime();
          const read = clock.now().getTime();
          const afterwards = (await storeNow(store.db)).getTime();
          // Within the round trips around it (a second is far more than they take), and nowhere near five minutes off.
          assert.ok(read >= before - 1000 && read <= afterwards + 1000, `store clock ${read} between ${before} and ${afterwards}`);
          // PGlite runs in this process, so its now() moves with the wall clock; PostgreSQL's does not.
          if (kind === 'postgres') assert.ok(Math.abs(Date.now() - read) > 4 * 60_000, 'the wall clock was really off');
          await clock.sync();
          assert.ok(Math.abs(clock.now().getTime() - (await storeNow(store.db)).getTime()) < 1000, 'and after another sample');
        } finally {
          clock.stop();
        }
      } finally {
        Date.now = realNow;
      }
    });
  });
}
