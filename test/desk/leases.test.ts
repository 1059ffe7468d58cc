/*
 * Lease merging on PGlite and PostgreSQL: idempotent re-reads, open leases
 * closed by the next start (within a batch and across imports), same start
 * replaced, unknown lines stored and resolved by a later customer import,
 * lease_imports rows (counts and errors); static and CGNAT CSV with their
 * zod errors and the exclusion constraints' refusals named by line.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { attribute } from '../../src/desk/attribute.ts';
import { importCustomers } from '../../src/desk/customers.ts';
import * as cgnatCsv from '../../src/desk/formats/cgnat-csv.ts';
import { CsvFormatError } from '../../src/desk/formats/csv-table.ts';
import * as staticCsv from '../../src/desk/formats/static-csv.ts';
import { importLeaseRecords, leaseImportStatus, shapeLeaseRecords, type LeaseRecord } from '../../src/desk/leases.ts';
import type { Store } from '../../src/store/store.ts';
import { openTestStore, STORE_KINDS } from '../helpers/pg.ts';

const T = (s: string) => new Date(s);
const L = (ip: string, start: string, end: string | null, user: string | null): LeaseRecord => ({ ip, start: T(start), end: end ? T(end) : null, line: user ? { kind: 'radius-user', value: user } : null });
const SRC = { format: 'radius-detail', file: '/var/log/radacct/detail' };

test('shape: last record for the same start wins, open records close at the next start, empty ones go', () => {
  const out = shapeLeaseRecords([
    L('192.0.2.1', '2026-11-01T10:00:00Z', null, 'a'),
    L('192.0.2.1', '2026-11-01T12:00:00Z', null, 'b'),
    L('192.0.2.1', '2026-11-01T10:00:00Z', null, 'a2'),
    L('::ffff:192.0.2.2', '2026-11-01T10:00:00Z', '2026-11-01T10:00:00Z', 'c'),
    { ip: '192.0.2.3', start: T('2026-11-01T10:00:00Z'), end: null, line: { kind: 'mac', value: '00-11-22-33-44-AA' } },
  ]);
  assert.deepEqual(out.map((r) => [r.ip, new Date(r.lo).toISOString(), r.hi && new Date(r.hi).toISOString(), r.value]), [
    ['192.0.2.1', '2026-11-01T10:00:00.000Z', '2026-11-01T12:00:00.000Z', 'a2'],
    ['192.0.2.1', '2026-11-01T12:00:00.000Z', null, 'b'],
    ['192.0.2.3', '2026-11-01T10:00:00.000Z', null, '00:11:22:33:44:aa'],
  ]);
  assert.throws(() => shapeLeaseRecords([L('192.0.2', '2026-11-01T10:00:00Z', null, null)]), /record 1: not an IP/);
  assert.throws(() => shapeLeaseRecords([{ ip: '192.0.2.1', start: T('x'), end: null, line: null }]), /no valid start/);
  assert.throws(() => shapeLeaseRecords([{ ip: '192.0.2.1', start: T('2026-11-01T10:00:00Z'), end: null, line: { kind: 'mac', value: 'zz' } }]), /bad line identifier/);
});

test('static and CGNAT CSV: zod problems with line, column, value', () => {
  const bad = `customer_id,network,valid_from,valid_to
c-1,198.51.100.1/29,2025-01-01,
c-2,198.51.100.8/29,2025-01-01 10:00,
c-3,10.1/8,2025-01-01,
c-4,10.0.0.0/8,2025-01-01,2024-01-01
`;
  assert.throws(() => staticCsv.parse(bad), (e: CsvFormatError) => {
    assert.deepEqual(e.problems.map((p) => `${p.line}:${p.column}:${p.value}`), ['2:network:198.51.100.1/29', '3:valid_from:2025-01-01 10:00', '4:network:10.1/8', '5:valid_to:2024-01-01']);
    assert.match(e.problems[0]!.expected, /host bits zero/);
    assert.match(e.problems[1]!.expected, /with a zone/);
    return true;
  });
  assert.deepEqual(staticCsv.parse('customer_id,network,valid_from,valid_to\nc-1,2001:DB8::/48,2025-01-01T00:00:00+01:00,\nc-1,192.0.2.9,2025-01-01,\n').map((r) => [r.network, r.from.toISOString(), r.to]), [
    ['2001:db8::/48', '2024-12-31T23:00:00.000Z', null],
    ['192.0.2.9/32', '2025-01-01T00:00:00.000Z', null],
  ]);
  assert.throws(() => cgnatCsv.parse('public_ip,port_low,port_high,customer_id,valid_from,valid_to\n100.64.1.1,2048,1024,c-1,2026-01-01,\n100.64.1.x,1,70000,c-1,2026-01-01,\n'), (e: CsvFormatError) => {
    assert.deepEqual(e.problems.map((p) => `${p.line}:${p.column}`), ['2:port_high', '3:public_ip', '3:port_high']);
    return true;
  });
  assert.throws(() => cgnatCsv.parse('public_ip,port_low\n1.2.3.4,1\n'), (e: CsvFormatError) => e.problems.some((p) => p.column === 'customer_id' && p.line === 1));
});

for (const kind of STORE_KINDS) {
  describe(`lease import (${kind})`, () => {
    let store: Store;
    let close: () => Promise<void>;
    before(async () => {
      ({ store, close } = await openTestStore(kind, 'bs_lease'));
      await importCustomers(store.db, 'id,name,lines\nc-a,Alice,radius-user:alice\nc-b,Bob,radius-user:bob\nc-s,Static,\n');
    });
    after(() => close());
    const leases = async () =>
      (await sql<{ ip: string; lo: Date; hi: Date | null; customer_id: string | null; line_value: string | null }>`
        select host(ip) as ip, lower(valid) as lo, upper(valid) as hi, customer_id, line_value from leases order by ip, lo`.execute(store.db)).rows.map(
        (r) => `${r.ip} ${new Date(r.lo).toISOString().slice(5, 16)}..${r.hi ? new Date(r.hi).toISOString().slice(5, 16) : ''} ${r.customer_id ?? '-'} ${r.line_value ?? '-'}`,
      );

    test('first read, re-read of the same records adds nothing', async () => {
      const file = [L('192.0.2.1', '2026-11-01T10:00:00Z', null, 'alice'), L('192.0.2.2', '2026-11-01T10:00:00Z', '2026-11-01T11:00:00Z', 'bob'), L('192.0.2.3', '2026-11-01T10:00:00Z', null, 'carol')];
      assert.deepEqual(await importLeaseRecords(store.db, file, SRC), { read: 3, added: 3, unchanged: 0, closed: 0 });
      assert.deepEqual(await importLeaseRecords(store.db, file, SRC), { read: 3, added: 0, unchanged: 3, closed: 0 });
      assert.deepEqual(await leases(), ['192.0.2.1 11-01T10:00.. c-a alice', '192.0.2.2 11-01T10:00..11-01T11:00 c-b bob', '192.0.2.3 11-01T10:00.. - carol']);
    });

    test('a later start closes the open lease; the grown file re-read changes only the new part', async () => {
      const grown = [
        L('192.0.2.1', '2026-11-01T10:00:00Z', null, 'alice'), L('192.0.2.2', '2026-11-01T10:00:00Z', '2026-11-01T11:00:00Z', 'bob'), L('192.0.2.3', '2026-11-01T10:00:00Z', null, 'carol'),
        L('192.0.2.1', '2026-11-02T08:00:00Z', null, 'bob'),
      ];
      assert.deepEqual(await importLeaseRecords(store.db, grown, SRC), { read: 4, added: 1, unchanged: 2, closed: 1 });
      assert.deepEqual(await importLeaseRecords(store.db, grown, SRC), { read: 4, added: 0, unchanged: 4, closed: 0 });
      // Only the new record (incremental read of the file's tail): the same result.
      assert.deepEqual(await importLeaseRecords(store.db, [L('192.0.2.1', '2026-11-02T08:00:00Z', null, 'bob')], SRC), { read: 1, added: 0, unchanged: 1, closed: 0 });
      const a = await attribute(store.db, { ip: '192.0.2.1', at: T('2026-11-01T20:00:00Z') });
      assert.equal(a.kind === 'customer' && a.customerId, 'c-a');
      const b = await attribute(store.db, { ip: '192.0.2.1', at: T('2026-11-02T20:00:00Z') });
      assert.equal(b.kind === 'customer' && b.customerId, 'c-b');
    });

    test('a Stop for an open lease closes it; a record before a stored lease stops at its start', async () => {
      assert.deepEqual(await importLeaseRecords(store.db, [L('192.0.2.3', '2026-11-01T10:00:00Z', '2026-11-01T18:00:00Z', 'carol')], SRC), { read: 1, added: 0, unchanged: 0, closed: 1 });
      assert.deepEqual(await importLeaseRecords(store.db, [L('192.0.2.2', '2026-11-01T09:00:00Z', null, 'alice')], SRC), { read: 1, added: 1, unchanged: 0, closed: 0 });
      assert.deepEqual((await leases()).filter((l) => l.startsWith('192.0.2.2') || l.startsWith('192.0.2.3')), [
        '192.0.2.2 11-01T09:00..11-01T10:00 c-a alice', '192.0.2.2 11-01T10:00..11-01T11:00 c-b bob', '192.0.2.3 11-01T10:00..11-01T18:00 - carol',
      ]);
    });

    test('an unknown line is stored without customer and resolved by a later customer import', async () => {
      assert.deepEqual(await attribute(store.db, { ip: '192.0.2.3', at: T('2026-11-01T12:00:00Z') }), { kind: 'unknown' });
      await importCustomers(store.db, 'id,name,lines\nc-c,Carol,radius-user:carol\n');
      const c = await attribute(store.db, { ip: '192.0.2.3', at: T('2026-11-01T12:00:00Z') });
      assert.equal(c.kind === 'customer' && c.customerId, 'c-c');
      // Re-reading fills the customer in and still counts it unchanged.
      assert.deepEqual(await importLeaseRecords(store.db, [L('192.0.2.3', '2026-11-01T10:00:00Z', '2026-11-01T18:00:00Z', 'carol')], SRC), { read: 1, added: 0, unchanged: 1, closed: 0 });
      assert.ok((await leases()).includes('192.0.2.3 11-01T10:00..11-01T18:00 c-c carol'));
    });

    test('random batches: the same stored leases and counts as the merge rules applied one after the other', async () => {
      // A model of the header's rules as the statements used to run them, in order: cut at the next
      // stored start; identical → unchanged; close running leases at the first later start; records now
      // identical to a just-closed lease count nothing; same start → replaced ("closed" if it gives an
      // open lease an end); the rest added. Small grid (3 addresses, 12 hours, 3 lines) so batches
      // collide: replacements and closings of one lease in one batch, records before stored leases.
      type M = { lo: number; hi: number | null; v: string | null };
      const stored = new Map<string, M[]>();
      let seed = 7;
      const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
      const H = 3600_000;
      const base = Date.parse('2027-03-01T00:00:00Z');
      const same = (a: M, lo: number, hi: number | null, v: string | null) => a.lo === lo && a.hi === hi && a.v === v;
      for (let round = 0; round < 60; round++) {
        const recs: LeaseRecord[] = [];
        for (let i = 0, n = 1 + rnd(5); i < n; i++) {
          const lo = base + rnd(12) * H;
          const end = rnd(3) === 0 ? null : new Date(lo + (1 + rnd(4)) * H);
          recs.push({ ip: `198.18.0.${1 + rnd(3)}`, start: new Date(lo), end, line: rnd(4) === 0 ? null : { kind: 'radius-user', value: `m${rnd(3)}` } });
        }
        const staged = shapeLeaseRecords(recs).map((s) => ({ ip: s.ip, lo: s.lo, hi: s.hi, v: s.value }));
        const c = { read: recs.length, added: 0, unchanged: 0, closed: 0 };
        const of = (ip: string) => stored.get(ip) ?? (stored.set(ip, []), stored.get(ip)!);
        for (const s of staged) {
          const next = of(s.ip).filter((l) => l.lo > s.lo && (s.hi === null || l.lo < s.hi)).map((l) => l.lo);
          if (next.length) s.hi = Math.min(...next);
        }
        let rest = staged.filter((s) => !of(s.ip).some((l) => same(l, s.lo, s.hi, s.v)) || (c.unchanged++, false));
        for (const [ip, ls] of stored) {
          for (const l of ls) {
            const cuts = rest.filter((s) => s.ip === ip && l.lo < s.lo && (l.hi === null || s.lo < l.hi)).map((s) => s.lo);
            if (cuts.length) (l.hi = Math.min(...cuts)), c.closed++;
          }
        }
        rest = rest.filter((s) => !of(s.ip).some((l) => same(l, s.lo, s.hi, s.v)));
        for (const s of rest) {
          const l = of(s.ip).find((x) => x.lo === s.lo);
          if (l) {
            if (l.hi === null && s.hi !== null) c.closed++;
            else c.added++;
            Object.assign(l, { hi: s.hi, v: s.v });
          } else {
            of(s.ip).push({ lo: s.lo, hi: s.hi, v: s.v });
            c.added++;
          }
        }
        assert.deepEqual(await importLeaseRecords(store.db, recs, SRC), c, `round ${round}`);
        const want = [...stored].flatMap(([ip, ls]) => ls.map((l) => `${ip} ${l.lo} ${l.hi} ${l.v}`)).sort();
        const got = (await sql<{ r: string }>`select host(ip) || ' ' || (extract(epoch from lower(valid)) * 1000)::bigint || ' ' || coalesce(((extract(epoch from upper(valid)) * 1000)::bigint)::text, 'null') || ' ' || coalesce(line_value, 'null') as r
          from leases where ip << '198.18.0.0/24'::inet`.execute(store.db)).rows.map((r) => r.r).sort();
        assert.deepEqual(got, want, `round ${round}`);
      }
    });

    test('lease_imports keeps every run, with the error of a failed one', async () => {
      await assert.rejects(importLeaseRecords(store.db, [L('nope', '2026-11-01T10:00:00Z', null, null)], { format: 'kea-csv', file: 'bad.csv' }), /not an IP/);
      // shape errors happen before a run starts; a store error is recorded:
      await assert.rejects(importLeaseRecords(store.db, [{ ip: '192.0.2.9', start: T('2026-11-01T10:00:00Z'), end: null, line: null, customerId: 'x'.repeat(10) }], { format: 'kea-csv', file: 'ok.csv' }).then(async () => {
        await sql`alter table leases add constraint test_only_no_ipv4_9 check (ip <> '192.0.2.10'::inet)`.execute(store.db);
        return importLeaseRecords(store.db, [L('192.0.2.10', '2026-11-01T10:00:00Z', null, null)], { format: 'kea-csv', file: 'broken.csv' });
      }), /test_only_no_ipv4_9/);
      await sql`alter table leases drop constraint test_only_no_ipv4_9`.execute(store.db);
      const status = await leaseImportStatus(store.db, 3);
      assert.equal(status[0]!.file, 'broken.csv');
      assert.match(status[0]!.error!, /test_only_no_ipv4_9/);
      assert.ok(status[0]!.finishedAt);
      assert.equal(status[1]!.file, 'ok.csv');
      assert.deepEqual([status[1]!.read, status[1]!.added, status[1]!.error], [1, 1, null]);
      assert.equal((await sql<{ n: number }>`select count(*)::int as n from leases where ip = '192.0.2.10'`.execute(store.db)).rows[0]!.n, 0, 'rolled back');
    });

    test('static CSV: import, idempotent, closed, overlap refused with its line', async () => {
      const file = 'customer_id,network,valid_from,valid_to\nc-s,198.51.100.0/29,2025-01-01,\nc-a,198.51.100.8/30,2025-01-01,2025-06-01\n';
      assert.deepEqual(await staticCsv.importText(store.db, file, { format: 'static-csv', file: 's.csv' }), { read: 2, added: 2, unchanged: 0, closed: 0 });
      assert.deepEqual(await staticCsv.importText(store.db, file, { format: 'static-csv', file: 's.csv' }), { read: 2, added: 0, unchanged: 2, closed: 0 });
      const closing = file.replace('198.51.100.0/29,2025-01-01,', '198.51.100.0/29,2025-01-01,2026-12-01');
      assert.deepEqual(await staticCsv.importText(store.db, closing, { format: 'static-csv', file: 's.csv' }), { read: 2, added: 0, unchanged: 1, closed: 1 });
      await assert.rejects(
        staticCsv.importText(store.db, 'customer_id,network,valid_from,valid_to\nc-b,198.51.100.12/30,2025-01-01,\nc-b,198.51.100.4/30,2026-01-01,\n', { format: 'static-csv', file: 'o.csv' }),
        /line 3 \(198\.51\.100\.4\/30\): overlaps a stored assignment/,
      );
      assert.equal((await sql<{ n: number }>`select count(*)::int as n from static_assignments where customer_id = 'c-b'`.execute(store.db)).rows[0]!.n, 0, 'rolled back');
      await assert.rejects(staticCsv.importText(store.db, 'customer_id,network,valid_from,valid_to\nc-nobody,203.0.113.0/24,2025-01-01,\n', { format: 'static-csv', file: 'n.csv' }), /line 2 .*no customer/);
      const s = await attribute(store.db, { ip: '198.51.100.5', at: T('2026-11-01T00:00:00Z') });
      assert.equal(s.kind === 'customer' && `${s.customerId}/${s.via}`, 'c-s/static');
    });

    test('CGNAT CSV: import, idempotent, overlapping ports refused, attribution by port', async () => {
      const file = 'public_ip,port_low,port_high,customer_id,valid_from,valid_to\n100.64.9.9,1024,2047,c-a,2026-01-01T00:00:00Z,\n100.64.9.9,2048,3071,c-b,2026-01-01T00:00:00Z,\n';
      assert.deepEqual(await cgnatCsv.importText(store.db, file, { format: 'cgnat-csv', file: 'c.csv' }), { read: 2, added: 2, unchanged: 0, closed: 0 });
      assert.deepEqual(await cgnatCsv.importText(store.db, file, { format: 'cgnat-csv', file: 'c.csv' }), { read: 2, added: 0, unchanged: 2, closed: 0 });
      await assert.rejects(cgnatCsv.importText(store.db, 'public_ip,port_low,port_high,customer_id,valid_from,valid_to\n100.64.9.9,3000,3100,c-s,2026-02-01,\n', { format: 'cgnat-csv', file: 'x.csv' }), /line 2 .*overlaps/);
      const b = await attribute(store.db, { ip: '100.64.9.9', at: T('2026-11-01T00:00:00Z'), port: 3071 });
      assert.equal(b.kind === 'customer' && b.customerId, 'c-b');
      assert.equal((await attribute(store.db, { ip: '100.64.9.9', at: T('2026-11-01T00:00:00Z') })).kind, 'ambiguous');
    });
  });
}
