/*
 * BATV and stamp keys in the store (0201): generated once however many nodes
 * start at once, rotation keeps the previous key verifying, and which retired
 * keys still verify (pure rule, table test).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { signPrvs, verifyPrvs } from '../../src/backscatter/batv.ts';
import { ensureKeys, loadKeys, rotateKeys, usableKeys, type StoredKey } from '../../src/backscatter/keys.ts';
import { openTestStore, STORE_KINDS } from '../helpers/pg.ts';

const DAY = 86_400_000;
const key = (num: number, retiredDaysAgo: number | null): StoredKey => ({ num, secret: Buffer.from(`secret-${num}-${retiredDaysAgo}-xxxxxxxx`), createdAt: new Date(0), retiredAt: retiredDaysAgo === null ? null : new Date(Date.UTC(2024, 0, 31) - retiredDaysAgo * DAY) });

test('usableKeys: current, the last retired always, others within their window, one per key number', () => {
  const now = new Date(Date.UTC(2024, 0, 31));
  const cases: { rows: StoredKey[]; kind: 'batv' | 'stamp'; want: number[] | null }[] = [
    { rows: [], kind: 'batv', want: null },
    { rows: [key(0, null)], kind: 'batv', want: [0] },
    { rows: [key(1, null), key(0, 100)], kind: 'batv', want: [1, 0] }, // last retired: always
    { rows: [key(2, null), key(1, 3), key(0, 9)], kind: 'batv', want: [2, 1] }, // 9 days > 8
    { rows: [key(2, null), key(1, 3), key(0, 9)], kind: 'stamp', want: [2, 1, 0] }, // stamps: 30 days
    { rows: [key(0, null), key(9, 1), key(0, 2)], kind: 'batv', want: [0, 9] }, // K wrapped: the older 0 is gone
  ];
  for (const c of cases) {
    const got = usableKeys(c.kind, c.rows, now);
    assert.deepEqual(got && [got.current.num, ...got.previous.map((k) => k.num)], c.want, JSON.stringify(c.want));
  }
});

for (const kind of STORE_KINDS) {
  test(`keys in the store (${kind}): generated once by concurrent nodes, rotation keeps old tags valid`, async () => {
    const { store, close } = await openTestStore(kind, 'bs_keys');
    try {
      await Promise.all([ensureKeys(store.db), ensureKeys(store.db), loadKeys(store.db)]);
      const rows = await store.db.selectFrom('backscatter_keys').selectAll().execute();
      assert.equal(rows.length, 2, 'one batv and one stamp key');
      const before = await loadKeys(store.db);
      assert.equal(before.ring.current.num, 0);
      assert.equal(before.ring.current.secret.length, 32);
      const now = Date.now();
      const tagged = signPrvs('alice@example.net', before.ring, now);
      assert.deepEqual(await rotateKeys(store.db), { batv: 1, stamp: 1 });
      const after = await loadKeys(store.db);
      assert.equal(after.ring.current.num, 1);
      assert.notDeepEqual(after.ring.current.secret, before.ring.current.secret);
      assert.equal(verifyPrvs(tagged, after.ring, now).kind, 'valid', 'a tag of the previous key still verifies');
      assert.equal(after.stampKeys.length, 2);
      assert.match(signPrvs('alice@example.net', after.ring, now), /^prvs=1/);
      // The shape of the table refuses a second current key.
      await assert.rejects(store.db.insertInto('backscatter_keys').values({ kind: 'batv', num: 5, secret: Buffer.alloc(32, 1), retired_at: null }).execute());
    } finally {
      await close();
    }
  });
}
