/*
 * The desk's commands end to end against a real PostgreSQL: customers
 * import/list, leases import (static-csv, cgnat-csv, a missing parser,
 * a bad file), leases status, and attribute's three answers and exit codes.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { importLeaseRecords } from '../../src/desk/leases.ts';
import { openStore } from '../../src/store/store.ts';
import { createTestDatabase } from '../helpers/pg.ts';

const BIN = new URL('../../bin/backstop.js', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'backstop-desk-cli-'));
let database: Awaited<ReturnType<typeof createTestDatabase>>;
let config: string;
const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args, '--config', config], { encoding: 'utf8' });
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};

before(async () => {
  database = await createTestDatabase('bs_desk_cli');
  config = file('backstop.yaml', `store: "${database.url}"\ndomains: [example.net]\n`);
});
after(() => database.drop());

test('customers, leases and attribute from the command line', async () => {
  const customers = file('customers.csv', 'id,name,email,phone,language,time_zone,lines\nc-1,Alice,alice@example.net,,de,Europe/Berlin,radius-user:alice\nc-2,Bob,,,en,UTC,\n');
  let r = run('customers', 'import', customers);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /2 read, 2 added/);
  assert.match(run('customers', 'import', customers).stdout, /2 read, 0 added, 0 updated, 2 unchanged/);
  assert.match(run('customers', 'list').stdout, /^c-1\tAlice\talice@example.net\tde\tEurope\/Berlin\tradius-user:alice$/m);
  r = run('customers', 'import', file('bad.csv', 'id,name,time_zone\nc-3,Carol,Moon/Base\n'));
  assert.equal(r.status, 2);
  assert.match(r.stderr, /line 2, column time_zone: "Moon\/Base" — expected an IANA time zone/);

  r = run('leases', 'import', '--format', 'static-csv', file('static.csv', 'customer_id,network,valid_from,valid_to\nc-2,198.51.100.0/29,2025-01-01,\n'));
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /1 read, 1 added, 0 unchanged, 0 closed/);
  r = run('leases', 'import', '--format', 'cgnat-csv', file('cgnat.csv', 'public_ip,port_low,port_high,customer_id,valid_from,valid_to\n100.64.0.1,1024,2047,c-1,2026-01-01,\n'));
  assert.equal(r.status, 0, r.stderr);
  r = run('leases', 'import', '--format', 'static-csv', file('overlap.csv', 'customer_id,network,valid_from,valid_to\nc-1,198.51.100.4/30,2026-01-01,\n'));
  assert.equal(r.status, 2);
  assert.match(r.stderr, /line 2 \(198\.51\.100\.4\/30\): overlaps/);
  assert.equal(run('leases', 'import', '--format', 'nonsense', customers).status, 2);
  assert.equal(run('leases', 'import', customers).status, 2, 'no --format');

  // A dynamic lease, stored through the library (the lease parsers are another module's).
  const store = await openStore(database.url);
  await importLeaseRecords(store.db, [{ ip: '192.0.2.7', start: new Date('2026-11-01T00:00:00Z'), end: new Date('2026-11-01T12:00:00Z'), line: { kind: 'radius-user', value: 'alice' } },
    { ip: '192.0.2.7', start: new Date('2026-11-01T12:00:00Z'), end: null, line: { kind: 'radius-user', value: 'carol' } }], { format: 'radius-detail', file: 'detail' });
  await store.close();

  const status = run('leases', 'status');
  assert.equal(status.status, 0, status.stderr);
  assert.match(status.stdout, /radius-detail\tdetail\tread 2\tadded 2/);
  assert.match(status.stdout, /static-csv\t.*overlap\.csv.*error: line 2/);

  r = run('attribute', '192.0.2.7', '2026-11-01T10:00:00+02:00');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.split('\n')[0], 'c-1');
  assert.match(r.stdout, /via\s+lease/);
  r = run('attribute', '192.0.2.7', '2026-11-01T13:00:00Z');
  assert.deepEqual([r.status, r.stdout.trim()], [1, 'unknown'], "carol's line is no customer's");
  r = run('attribute', '192.0.2.8', '2026-11-01T13:00:00Z');
  assert.deepEqual([r.status, r.stdout.trim()], [1, 'unknown']);
  r = run('attribute', '192.0.2.7', '2026-11-01T10:00:00');
  assert.equal(r.status, 1);
  assert.match(r.stdout, /^ambiguous: a time without a zone/);
  r = run('attribute', '192.0.2.7');
  assert.match(r.stdout, /^ambiguous: a dynamic address and no time/);
  r = run('attribute', '100.64.0.1', '2026-11-01T10:00:00Z');
  assert.match(r.stdout, /^ambiguous: a CGNAT address and no source port/);
  r = run('attribute', '100.64.0.1', '2026-11-01T10:00:00Z', '--port', '1500');
  assert.equal(r.stdout.split('\n')[0], 'c-1');
  r = run('attribute', '198.51.100.3');
  assert.deepEqual([r.status, r.stdout.split('\n')[0]], [0, 'c-2']);
  assert.equal(run('attribute', '192.0.2', '2026-11-01T10:00:00Z').status, 2);
  assert.equal(run('attribute', '192.0.2.7', 'yesterday').status, 2);
  assert.equal(run('attribute', '192.0.2.7', '2026-11-01T10:00:00Z', '--port', '70000').status, 2);
});
