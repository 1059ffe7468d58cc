/*
 * The real lease files (test/desk/fixtures/leases/, written by dhcpd, Kea
 * and FreeRADIUS) parsed by their format modules and merged into the store
 * on PGlite and PostgreSQL: each file read twice — the second read adds and
 * closes nothing — and attribute() names the customer whose line held the
 * address at a time inside its lease (and nobody after a release). Last,
 * the same through `backstop leases import --format …` and `backstop
 * attribute`, with a broken file refused by line.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { attribute } from '../../src/desk/attribute.ts';
import { importCustomers } from '../../src/desk/customers.ts';
import * as isc from '../../src/desk/formats/isc-dhcpd.ts';
import * as kea from '../../src/desk/formats/kea-csv.ts';
import * as radius from '../../src/desk/formats/radius-detail.ts';
import { importLeaseRecords, type LeaseRecord } from '../../src/desk/leases.ts';
import type { Store } from '../../src/store/store.ts';
import { openTestStore, STORE_KINDS } from '../helpers/pg.ts';

const fixture = (name: string) => readFileSync(new URL(`./fixtures/leases/${name}`, import.meta.url), 'utf8');

// The customers the ISP knows, by the line identifiers the daemons saw.
const CUSTOMERS = `id,name,lines
c-1,Client one,mac:52:54:00:0a:00:01
c-2,Client two (relay port),circuit-id:eth0/1/7;mac:52:54:00:0a:00:02
c-3,Client three,mac:52-54-00-0A-00-03
r-alice,Alice,radius-user:alice@isp.example
r-bob,Bob,radius-user:bob
r-carol,Carol,radius-user:carol
r-dave,Dave,radius-user:dave
`;

const FILES: { file: string; format: string; parse: (t: string) => LeaseRecord[]; records: number; probes: [ip: string, at: string, who: string | null][] }[] = [
  {
    file: 'isc-dhcpd.leases', format: 'isc-dhcpd', parse: isc.parse, records: 4,
    probes: [
      ['10.77.0.100', '2026-11-22T19:18:28Z', 'c-1'],
      ['10.77.0.100', '2026-11-22T19:25:00Z', 'c-1'], // after the renewal
      ['10.77.0.101', '2026-11-22T19:20:00Z', 'c-2'], // by circuit-id
      ['10.77.0.102', '2026-11-22T19:18:30Z', 'c-3'],
      ['10.77.0.102', '2026-11-22T19:20:00Z', null], // released at 19:18:33
    ],
  },
  {
    file: 'isc-dhcpd6.leases', format: 'isc-dhcpd', parse: isc.parse, records: 2,
    probes: [
      ['2001:db8:77::1a1', '2026-11-22T19:20:00Z', 'c-1'],
      ['2001:db8:77::19b', '2026-11-22T19:18:43Z', 'c-2'],
      ['2001:db8:77::19b', '2026-11-22T19:20:00Z', null],
    ],
  },
  {
    file: 'kea-leases4.csv', format: 'kea-csv', parse: kea.parse, records: 4,
    probes: [
      ['10.77.0.100', '2026-11-22T19:35:00Z', 'c-1'],
      ['10.77.0.101', '2026-11-22T19:35:00Z', 'c-2'],
      ['10.77.0.102', '2026-11-22T19:35:00Z', 'c-3'],
    ],
  },
  {
    file: 'kea-leases6.csv', format: 'kea-csv', parse: kea.parse, records: 2,
    probes: [
      ['2001:db8:77::100', '2026-11-22T19:35:00Z', 'c-1'],
      ['2001:db8:77::101', '2026-11-22T19:35:00Z', 'c-2'],
    ],
  },
  {
    file: 'radius-detail', format: 'radius-detail', parse: radius.parse, records: 5,
    probes: [
      ['10.0.0.5', '2026-11-22T19:36:41Z', 'r-alice'],
      ['10.0.0.5', '2026-11-22T19:36:50Z', null], // stopped at 19:36:43
      ['10.0.0.6', '2026-11-22T19:36:40Z', 'r-bob'],
      ['10.0.0.6', '2026-11-22T19:36:50Z', 'r-dave'], // dave's Start ended bob's session
      ['10.0.0.7', '2026-11-22T19:00:00Z', 'r-carol'], // from the Stop's Acct-Session-Time
      ['2001:db8:6::6', '2026-11-22T19:40:00Z', 'r-dave'],
    ],
  },
];

for (const kind of STORE_KINDS) {
  describe(`real lease files into the store (${kind})`, () => {
    let store: Store;
    let close: () => Promise<void>;
    before(async () => {
      ({ store, close } = await openTestStore(kind, 'bs_leasefile'));
      await importCustomers(store.db, CUSTOMERS);
    });
    after(() => close());

    for (const f of FILES) {
      test(`${f.file}: read twice, the second read adds nothing; attribution inside the leases`, async () => {
        const source = { format: f.format, file: `fixtures/leases/${f.file}` };
        const first = await importLeaseRecords(store.db, f.parse(fixture(f.file)), source);
        assert.deepEqual(first, { read: f.records, added: f.records, unchanged: 0, closed: 0 });
        const second = await importLeaseRecords(store.db, f.parse(fixture(f.file)), source);
        assert.deepEqual(second, { read: f.records, added: 0, unchanged: f.records, closed: 0 });
        for (const [ip, at, who] of f.probes) {
          const a = await attribute(store.db, { ip, at: new Date(at) });
          assert.deepEqual(a.kind === 'customer' ? a.customerId : a.kind, who ?? 'unknown', `${ip} at ${at}`);
        }
      });
    }

    test('a lease file that grew (the tail of the real dhcpd log appended later) adds only the new part', async () => {
      // The first three entries of the real file, then the whole file: as a cron job sees it.
      const full = fixture('isc-dhcpd.leases');
      const cut = full.slice(0, full.indexOf('lease 10.77.0.100', full.indexOf('lease 10.77.0.102')));
      const { store: s2, close: c2 } = await openTestStore(kind, 'bs_leasefile2');
      try {
        await importCustomers(s2.db, CUSTOMERS);
        const src = { format: 'isc-dhcpd', file: 'dhcpd.leases' };
        assert.deepEqual(await importLeaseRecords(s2.db, isc.parse(cut), src), { read: 3, added: 3, unchanged: 0, closed: 0 });
        // Now: alice's renewal is added and ends her first lease there (closed); carol's release
        // shortens hers — importLeaseRecords counts a changed end of a lease that had one as a
        // replacement (added), "closed" only for open leases; 10.77.0.101 is unchanged.
        assert.deepEqual(await importLeaseRecords(s2.db, isc.parse(full), src), { read: 4, added: 2, unchanged: 1, closed: 1 });
        assert.deepEqual(await importLeaseRecords(s2.db, isc.parse(full), src), { read: 4, added: 0, unchanged: 4, closed: 0 });
        const a = await attribute(s2.db, { ip: '10.77.0.102', at: new Date('2026-11-22T19:20:00Z') });
        assert.equal(a.kind, 'unknown');
      } finally {
        await c2();
      }
    });
  });
}

test('backstop leases import --format isc-dhcpd|kea-csv|radius-detail and attribute from the command line', () => {
  const dir = mkdtempSync(join(tmpdir(), 'backstop-leasefile-cli-'));
  try {
    const config = join(dir, 'backstop.yaml');
    writeFileSync(config, `store: "pglite:${join(dir, 'db')}"\ndomains: [example.net]\n`);
    writeFileSync(join(dir, 'customers.csv'), CUSTOMERS);
    const BIN = new URL('../../bin/backstop.js', import.meta.url).pathname;
    const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args, '--config', config], { encoding: 'utf8' });
    assert.equal(run('customers', 'import', join(dir, 'customers.csv')).status, 0);
    const fx = (name: string) => new URL(`./fixtures/leases/${name}`, import.meta.url).pathname;
    for (const [format, name, n] of [['isc-dhcpd', 'isc-dhcpd.leases', 4], ['kea-csv', 'kea-leases4.csv', 4], ['radius-detail', 'radius-detail', 5]] as const) {
      let r = run('leases', 'import', '--format', format, fx(name));
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^${n} read, ${n} added, 0 unchanged, 0 closed`));
      r = run('leases', 'import', '--format', format, fx(name));
      assert.match(r.stdout, new RegExp(`^${n} read, 0 added, ${n} unchanged, 0 closed`));
    }
    let r = run('attribute', '10.77.0.101', '2026-11-22T19:20:00Z');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.split('\n')[0], 'c-2');
    r = run('attribute', '10.0.0.6', '2026-11-22T19:36:50Z');
    assert.equal(r.stdout.split('\n')[0], 'r-dave');
    const broken = join(dir, 'broken.leases');
    writeFileSync(broken, fixture('isc-dhcpd.leases').replace('hardware ethernet 52:54:00:0a:00:03;', 'hardware ethernet 52:54:00:0a:00;'));
    r = run('leases', 'import', '--format', 'isc-dhcpd', broken);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /isc-dhcpd: line 40: expected an Ethernet MAC address \(52:54:00:0a:00:01\), found "52:54:00:0a:00"/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
