/*
 * Attribution: decide() over a table of cases (the ambiguity rules), then the
 * real tables on PGlite and PostgreSQL — overlaps refused by the exclusion
 * constraints, leases resolved through lines imported later, CGNAT ports,
 * zoneless times near a change of holder, current addresses, customer space.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { attribute, canonicalIp, currentAddresses, currentCgnatBlocks, decide, getCustomer, isCustomerSpace, type Attribution, type Holding } from '../../src/desk/attribute.ts';
import { importCustomers } from '../../src/desk/customers.ts';
import type { Store } from '../../src/store/store.ts';
import { openTestStore, STORE_KINDS } from '../helpers/pg.ts';

const T = (s: string) => new Date(s);
const H = (via: Holding['via'], customerId: string | null, from: string | null, to: string | null, ports?: [number, number]): Holding => ({
  via, customerId, from: from ? T(from) : null, to: to ? T(to) : null, ...(ports ? { ports: { low: ports[0], high: ports[1] } } : {}),
});
const NOW = T('2026-11-22T18:00:00Z');

const cases: { name: string; q: { at: string | null; port?: number; zoneless?: boolean }; rows: Holding[]; want: Attribution['kind'] | string }[] = [
  { name: 'nothing found', q: { at: '2026-11-01T12:00:00Z' }, rows: [], want: 'unknown' },
  { name: 'lease covering the time', q: { at: '2026-11-01T12:00:00Z' }, rows: [H('lease', 'A', '2026-11-01T10:00:00Z', '2026-11-01T14:00:00Z')], want: 'A' },
  { name: 'lease end is exclusive', q: { at: '2026-11-01T14:00:00Z' }, rows: [H('lease', 'A', '2026-11-01T10:00:00Z', '2026-11-01T14:00:00Z')], want: 'unknown' },
  { name: 'lease start is inclusive', q: { at: '2026-11-01T10:00:00Z' }, rows: [H('lease', 'A', '2026-11-01T10:00:00Z', null)], want: 'A' },
  { name: 'open lease', q: { at: '2026-11-20T00:00:00Z' }, rows: [H('lease', 'A', '2026-11-01T10:00:00Z', null)], want: 'A' },
  { name: 'lease whose line maps to nobody', q: { at: '2026-11-01T12:00:00Z' }, rows: [H('lease', null, '2026-11-01T10:00:00Z', null)], want: 'unknown' },
  { name: 'dynamic address and no time', q: { at: null }, rows: [H('lease', 'A', '2026-11-01T10:00:00Z', null)], want: 'ambiguous:dynamic' },
  { name: 'static address and no time: now', q: { at: null }, rows: [H('static', 'S', '2020-01-01T00:00:00Z', null)], want: 'S' },
  { name: 'static assignment ended', q: { at: '2026-11-01T12:00:00Z' }, rows: [H('static', 'S', '2020-01-01T00:00:00Z', '2026-01-01T00:00:00Z')], want: 'unknown' },
  { name: 'CGNAT without port', q: { at: '2026-11-01T12:00:00Z' }, rows: [H('cgnat', 'C1', null, null, [1024, 2047]), H('cgnat', 'C2', null, null, [2048, 3071])], want: 'ambiguous:CGNAT' },
  { name: 'CGNAT with port in first block', q: { at: '2026-11-01T12:00:00Z', port: 2047 }, rows: [H('cgnat', 'C1', null, null, [1024, 2047]), H('cgnat', 'C2', null, null, [2048, 3071])], want: 'C1' },
  { name: 'CGNAT with port in second block', q: { at: '2026-11-01T12:00:00Z', port: 2048 }, rows: [H('cgnat', 'C1', null, null, [1024, 2047]), H('cgnat', 'C2', null, null, [2048, 3071])], want: 'C2' },
  { name: 'CGNAT with a port in no block', q: { at: '2026-11-01T12:00:00Z', port: 80 }, rows: [H('cgnat', 'C1', null, null, [1024, 2047])], want: 'unknown' },
  { name: 'port on a non-CGNAT address is ignored', q: { at: '2026-11-01T12:00:00Z', port: 80 }, rows: [H('lease', 'A', '2026-11-01T10:00:00Z', null)], want: 'A' },
  { name: 'zoneless, same customer all window', q: { at: '2026-11-01T12:00:00Z', zoneless: true }, rows: [H('lease', 'A', '2026-10-01T00:00:00Z', '2026-11-01T11:00:00Z'), H('lease', 'A', '2026-11-01T11:00:00Z', null)], want: 'A' },
  { name: 'zoneless, holder changes 13 h later', q: { at: '2026-11-01T12:00:00Z', zoneless: true }, rows: [H('lease', 'A', '2026-10-01T00:00:00Z', '2026-11-02T01:00:00Z'), H('lease', 'B', '2026-11-02T01:00:00Z', null)], want: 'ambiguous:zone' },
  { name: 'zoneless, holder changed 13 h before', q: { at: '2026-11-01T12:00:00Z', zoneless: true }, rows: [H('lease', 'B', '2026-10-01T00:00:00Z', '2026-10-31T23:00:00Z'), H('lease', 'A', '2026-10-31T23:00:00Z', null)], want: 'ambiguous:zone' },
  { name: 'zoneless, nobody then but A 5 h before', q: { at: '2026-11-01T12:00:00Z', zoneless: true }, rows: [H('lease', 'A', '2026-11-01T01:00:00Z', '2026-11-01T07:00:00Z')], want: 'ambiguous:zone' },
  { name: 'zoneless, with a zone it is plain', q: { at: '2026-11-01T12:00:00Z' }, rows: [H('lease', 'A', '2026-10-01T00:00:00Z', '2026-11-02T01:00:00Z'), H('lease', 'B', '2026-11-02T01:00:00Z', null)], want: 'A' },
  { name: 'zoneless, unmapped line nearby counts as another holder', q: { at: '2026-11-01T12:00:00Z', zoneless: true }, rows: [H('lease', 'A', '2026-10-01T00:00:00Z', '2026-11-01T20:00:00Z'), H('lease', null, '2026-11-01T20:00:00Z', null)], want: 'ambiguous:zone' },
  { name: 'two records at once', q: { at: '2026-11-01T12:00:00Z' }, rows: [H('static', 'S', null, null), H('lease', 'A', '2026-11-01T10:00:00Z', null)], want: 'ambiguous:more than one' },
];

describe('decide', () => {
  for (const c of cases) {
    test(c.name, () => {
      const got = decide({ at: c.q.at ? T(c.q.at) : null, port: c.q.port, zoneless: c.q.zoneless, now: NOW }, c.rows);
      if (c.want === 'unknown') assert.deepEqual(got, { kind: 'unknown' });
      else if (c.want.startsWith('ambiguous:')) {
        assert.equal(got.kind, 'ambiguous', JSON.stringify(got));
        assert.match((got as { reason: string }).reason, new RegExp(c.want.slice('ambiguous:'.length)));
      } else {
        assert.equal(got.kind, 'customer', JSON.stringify(got));
        assert.equal((got as { customerId: string }).customerId, c.want);
      }
    });
  }
});

test('canonicalIp', () => {
  assert.equal(canonicalIp('192.0.2.7'), '192.0.2.7');
  assert.equal(canonicalIp('::ffff:192.0.2.7'), '192.0.2.7');
  assert.equal(canonicalIp('2001:DB8::0:1'), '2001:db8::1');
  for (const bad of ['10.1', '192.0.2.7/32', 'example.net', '', '1.2.3.4.5']) assert.throws(() => canonicalIp(bad), /not an IP/);
});

const CUSTOMERS = `id,name,email,phone,language,time_zone,lines
c-a,Alice,alice@example.net,,de,Europe/Berlin,radius-user:alice;mac:00-11-22-33-44-55
c-b,Bob,bob@example.net,,en,UTC,radius-user:bob
c-s,Static GmbH,noc@static.example,,de,Europe/Berlin,
c-n1,Nat One,,,en,UTC,
c-n2,Nat Two,,,en,UTC,
`;

for (const kind of STORE_KINDS) {
  describe(`attribution store (${kind})`, () => {
    let store: Store;
    let close: () => Promise<void>;
    before(async () => {
      ({ store, close } = await openTestStore(kind, 'bs_attr'));
      await importCustomers(store.db, CUSTOMERS);
      const db = store.db;
      await sql`insert into static_assignments (customer_id, network, valid) values ('c-s', '198.51.100.0/29', tstzrange('2025-01-01', null))`.execute(db);
      await sql`insert into leases (ip, customer_id, line_kind, line_value, valid) values
        ('192.0.2.7', 'c-a', 'radius-user', 'alice', tstzrange('2026-11-01T00:00:00Z', '2026-11-01T12:00:00Z')),
        ('192.0.2.7', 'c-b', 'radius-user', 'bob', tstzrange('2026-11-01T12:00:00Z', '2026-11-03T00:00:00Z')),
        ('192.0.2.8', null, 'mac', 'aa:bb:cc:dd:ee:ff', tstzrange('2026-11-01T00:00:00Z', null)),
        ('2001:db8::5', 'c-a', 'mac', '00:11:22:33:44:55', tstzrange('2026-11-01T00:00:00Z', null))`.execute(db);
      await sql`insert into cgnat_blocks (public_ip, ports, valid, customer_id) values
        ('100.64.1.1', int4range(1024, 2048), tstzrange('2026-01-01', null), 'c-n1'),
        ('100.64.1.1', int4range(2048, 3072), tstzrange('2026-01-01', null), 'c-n2')`.execute(db);
    });
    after(() => close());

    test('overlapping leases for one address are refused by the constraint', async () => {
      await assert.rejects(
        sql`insert into leases (ip, customer_id, valid) values ('192.0.2.7', 'c-b', tstzrange('2026-11-01T11:00:00Z', '2026-11-01T11:30:00Z'))`.execute(store.db),
        /leases_no_overlap|exclusion constraint/,
      );
      // Touching ranges ([) then [)) are fine, and another address is independent.
      await sql`insert into leases (ip, customer_id, valid) values ('192.0.2.7', 'c-b', tstzrange('2026-11-03T00:00:00Z', '2026-11-04T00:00:00Z')),
        ('192.0.2.9', 'c-b', tstzrange('2026-11-01T11:00:00Z', '2026-11-01T11:30:00Z'))`.execute(store.db);
    });

    test('overlapping static networks and CGNAT port blocks are refused', async () => {
      await assert.rejects(
        sql`insert into static_assignments (customer_id, network, valid) values ('c-a', '198.51.100.4/30', tstzrange('2026-06-01', '2026-07-01'))`.execute(store.db),
        /static_assignments_no_overlap|exclusion constraint/,
      );
      await sql`insert into static_assignments (customer_id, network, valid) values ('c-a', '198.51.100.8/30', tstzrange('2026-06-01', '2026-07-01'))`.execute(store.db);
      await assert.rejects(
        sql`insert into cgnat_blocks (public_ip, ports, valid, customer_id) values ('100.64.1.1', int4range(2000, 2100), tstzrange('2026-06-01', null), 'c-a')`.execute(store.db),
        /cgnat_blocks_no_overlap|exclusion constraint/,
      );
    });

    test('who held the address', async () => {
      const db = store.db;
      const a = await attribute(db, { ip: '192.0.2.7', at: T('2026-11-01T06:00:00Z') });
      assert.deepEqual(a, { kind: 'customer', customerId: 'c-a', via: 'lease', validFrom: T('2026-11-01T00:00:00Z'), validTo: T('2026-11-01T12:00:00Z') });
      assert.equal((await attribute(db, { ip: '192.0.2.7', at: T('2026-11-01T12:00:00Z') })).kind === 'customer' && 'c-b', 'c-b');
      assert.deepEqual(await attribute(db, { ip: '192.0.2.7', at: T('2026-10-31T23:59:59Z') }), { kind: 'unknown' });
      assert.deepEqual(await attribute(db, { ip: '203.0.113.1', at: T('2026-11-01T06:00:00Z') }), { kind: 'unknown' });
      const s = await attribute(db, { ip: '198.51.100.3', at: T('2026-11-01T06:00:00Z') });
      assert.equal(s.kind === 'customer' && `${s.customerId}/${s.via}`, 'c-s/static');
      assert.deepEqual(await attribute(db, { ip: '198.51.100.9', at: T('2026-11-01T06:00:00Z') }), { kind: 'unknown' }, 'the /30 ended in July');
      const noTime = await attribute(db, { ip: '198.51.100.3', at: null });
      assert.equal(noTime.kind === 'customer' && noTime.customerId, 'c-s');
      const v6 = await attribute(db, { ip: '2001:DB8:0::5', at: T('2026-11-10T00:00:00Z') });
      assert.equal(v6.kind === 'customer' && v6.customerId, 'c-a');
    });

    test('ambiguity: no time on a dynamic address, no port on CGNAT, zoneless near a change', async () => {
      const db = store.db;
      const a = await attribute(db, { ip: '192.0.2.7', at: null });
      assert.equal(a.kind, 'ambiguous');
      assert.match((a as { reason: string }).reason, /dynamic/);
      const c = await attribute(db, { ip: '100.64.1.1', at: T('2026-11-01T06:00:00Z') });
      assert.equal(c.kind, 'ambiguous');
      assert.match((c as { reason: string }).reason, /CGNAT/);
      const c1 = await attribute(db, { ip: '100.64.1.1', at: T('2026-11-01T06:00:00Z'), port: 1500 });
      assert.equal(c1.kind === 'customer' && `${c1.customerId}/${c1.via}`, 'c-n1/cgnat');
      const c2 = await attribute(db, { ip: '100.64.1.1', at: T('2026-11-01T06:00:00Z'), port: 2048 });
      assert.equal(c2.kind === 'customer' && c2.customerId, 'c-n2');
      const z = await attribute(db, { ip: '192.0.2.7', at: T('2026-11-01T06:00:00Z'), zoneless: true });
      assert.equal(z.kind, 'ambiguous', 'alice until 12:00 UTC, bob after: 06:00 in an unknown zone may be either');
      assert.match((z as { reason: string }).reason, /zone/);
      const far = await attribute(db, { ip: '192.0.2.7', at: T('2026-11-02T06:00:00Z'), zoneless: true });
      assert.equal(far.kind === 'customer' && far.customerId, 'c-b', '18 h after the change: bob either way');
    });

    test('a lease whose line was unknown is resolved once the customer file names it', async () => {
      const db = store.db;
      assert.deepEqual(await attribute(db, { ip: '192.0.2.8', at: T('2026-11-05T00:00:00Z') }), { kind: 'unknown' });
      assert.deepEqual(await currentAddresses(db, 'c-b', T('2026-11-05T00:00:00Z')), []);
      await importCustomers(db, `id,name,lines\nc-b,Bob,radius-user:bob;mac:AA:BB:CC:DD:EE:FF\n`);
      const got = await attribute(db, { ip: '192.0.2.8', at: T('2026-11-05T00:00:00Z') });
      assert.equal(got.kind === 'customer' && got.customerId, 'c-b');
      assert.deepEqual(await currentAddresses(db, 'c-b', T('2026-11-05T00:00:00Z')), ['192.0.2.8/32']);
    });

    test('current addresses, CGNAT blocks, customer space, getCustomer', async () => {
      const db = store.db;
      assert.deepEqual(await currentAddresses(db, 'c-a', T('2026-11-01T06:00:00Z')), ['192.0.2.7/32', '2001:db8::5/128']);
      assert.deepEqual(await currentAddresses(db, 'c-a', T('2026-06-15T00:00:00Z')), ['198.51.100.8/30']);
      assert.deepEqual(await currentAddresses(db, 'c-s', T('2026-11-01T06:00:00Z')), ['198.51.100.0/29']);
      assert.deepEqual(await currentCgnatBlocks(db, 'c-n2', T('2026-11-01T06:00:00Z')), [{ ip: '100.64.1.1', low: 2048, high: 3071 }]);
      assert.equal(await isCustomerSpace(db, '198.51.100.6'), true);
      assert.equal(await isCustomerSpace(db, '192.0.2.7'), true);
      assert.equal(await isCustomerSpace(db, '100.64.1.1'), true);
      assert.equal(await isCustomerSpace(db, '203.0.113.9'), false);
      assert.equal(await isCustomerSpace(db, 'not an ip'), false);
      const alice = await getCustomer(db, 'c-a');
      assert.deepEqual(alice, {
        id: 'c-a', name: 'Alice', email: 'alice@example.net', phone: null, language: 'de', timeZone: 'Europe/Berlin',
        lines: [{ kind: 'mac', value: '00:11:22:33:44:55' }, { kind: 'radius-user', value: 'alice' }],
      });
      assert.equal(await getCustomer(db, 'nobody'), null);
    });
  });
}
