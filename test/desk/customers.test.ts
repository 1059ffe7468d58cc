/*
 * Customer import: the CSV checked row by row (line, column, value, what was
 * expected), nothing written when any row is bad, upsert idempotent, lines
 * replaced and moved, MACs normalised — on PGlite and PostgreSQL.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { CustomerImportError, getCustomer, importCustomers, listCustomers, normaliseMac, parseCustomersCsv } from '../../src/desk/customers.ts';
import type { Store } from '../../src/store/store.ts';
import { openTestStore, STORE_KINDS } from '../helpers/pg.ts';

const FILE = `id,name,email,phone,language,time_zone,lines
c-1,Alice Example,alice@example.net,+49 30 1234,de,Europe/Berlin,radius-user:alice;mac:0011.2233.44AA
c-2,"Bob, the ""Builder""",,,,,"circuit-id:eth 1/1/7:100;subscriber-id:SUB-2"
`;

test('MAC spellings', () => {
  for (const s of ['00:11:22:33:44:aa', '00-11-22-33-44-AA', '0011.2233.44aa', '0011223344AA']) assert.equal(normaliseMac(s), '00:11:22:33:44:aa', s);
  for (const s of ['00:11:22:33:44', '00:11:22:33:44:gg', '0:11:22:33:44:aa:bb', '00:11-22.33:44:aa', '']) assert.equal(normaliseMac(s), null, s);
});

test('parse: quoting, defaults, lines', () => {
  const [a, b] = parseCustomersCsv(FILE);
  assert.deepEqual(a!.lines, [{ kind: 'radius-user', value: 'alice' }, { kind: 'mac', value: '00:11:22:33:44:aa' }]);
  assert.equal(b!.name, 'Bob, the "Builder"');
  assert.equal(b!.language, 'en');
  assert.equal(b!.timeZone, 'UTC');
  assert.equal(b!.email, null);
  assert.deepEqual(b!.lines, [{ kind: 'circuit-id', value: 'eth 1/1/7:100' }, { kind: 'subscriber-id', value: 'SUB-2' }]);
});

test('parse: every bad field reported with line, column, value and expectation', () => {
  const bad = `id,name,email,language,time_zone,lines
c-1,Alice,not-an-email,de,Europe/Berlin,
c-2,,bob@example.net,en,Mars/Olympus,mac:00:11
c-1,Again,,en,UTC,
c-4,Dora,,english!,UTC,phone:123
`;
  let err: CustomerImportError | undefined;
  try {
    parseCustomersCsv(bad);
  } catch (e) {
    err = e as CustomerImportError;
  }
  assert.ok(err instanceof CustomerImportError);
  const got = err.problems.map((p) => `${p.line}:${p.column}:${p.value}`);
  assert.deepEqual(got, ['2:email:not-an-email', '3:name:', '3:time_zone:Mars/Olympus', '3:lines:mac:00:11', '4:id:c-1', '5:language:english!', '5:lines:phone:123']);
  assert.match(err.problems.find((p) => p.column === 'time_zone')!.expected, /IANA time zone/);
  assert.match(err.problems.find((p) => p.column === 'lines')!.expected, /KIND:VALUE/);
  assert.match(err.message, /line 3, column time_zone: "Mars\/Olympus" — expected an IANA/);
});

test('parse: header and CSV syntax problems', () => {
  assert.throws(() => parseCustomersCsv('name,email\nAlice,a@example.net\n'), (e: CustomerImportError) => e.problems.some((p) => p.column === 'id' && p.line === 1));
  assert.throws(() => parseCustomersCsv('id,name,colour\nc-1,A,blue\n'), (e: CustomerImportError) => e.problems.some((p) => p.column === 'colour'));
  assert.throws(() => parseCustomersCsv('id,name\nc-1,"unterminated\n'), (e: CustomerImportError) => /well-formed CSV/.test(e.problems[0]!.expected));
  assert.throws(() => parseCustomersCsv('id,name\nc-1,A,extra\n'), CustomerImportError);
  assert.throws(() => parseCustomersCsv('id,name,lines\nc-1,A,mac:00:11:22:33:44:55\nc-2,B,mac:00-11-22-33-44-55\n'), (e: CustomerImportError) => e.problems[0]!.line === 3 && /already given to c-1/.test(e.problems[0]!.expected));
});

for (const kind of STORE_KINDS) {
  describe(`customers import (${kind})`, () => {
    let store: Store;
    let close: () => Promise<void>;
    before(async () => ({ store, close } = await openTestStore(kind, 'bs_cust')));
    after(() => close());

    test('insert, then the same file again changes nothing', async () => {
      assert.deepEqual(await importCustomers(store.db, FILE), { read: 2, added: 2, updated: 0, unchanged: 0, linesAdded: 4, linesRemoved: 0 });
      assert.deepEqual(await importCustomers(store.db, FILE), { read: 2, added: 0, updated: 0, unchanged: 2, linesAdded: 0, linesRemoved: 0 });
      const a = await getCustomer(store.db, 'c-1');
      assert.equal(a?.phone, '+49 30 1234');
      assert.equal(a?.timeZone, 'Europe/Berlin');
    });

    test('update: changed fields, lines replaced, a line moved to another customer', async () => {
      const r = await importCustomers(store.db, `id,name,lines\nc-2,Bob Builder,radius-user:alice\nc-3,Carol,\n`);
      assert.deepEqual(r, { read: 2, added: 1, updated: 1, unchanged: 0, linesAdded: 1, linesRemoved: 2 });
      assert.deepEqual((await getCustomer(store.db, 'c-2'))?.lines, [{ kind: 'radius-user', value: 'alice' }]);
      assert.deepEqual((await getCustomer(store.db, 'c-1'))?.lines, [{ kind: 'mac', value: '00:11:22:33:44:aa' }]);
      // c-2 wasn't given language/time_zone columns: defaults again.
      assert.equal((await getCustomer(store.db, 'c-2'))?.language, 'en');
      assert.deepEqual((await listCustomers(store.db)).map((c) => c.id), ['c-1', 'c-2', 'c-3']);
    });

    test('a bad file writes nothing', async () => {
      await assert.rejects(importCustomers(store.db, `id,name\nc-9,Nine\nc-10,\n`), CustomerImportError);
      assert.equal(await getCustomer(store.db, 'c-9'), null);
    });
  });
}
