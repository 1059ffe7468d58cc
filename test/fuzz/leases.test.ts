/*
 * Fuzzing the desk's file parsers — every lease format (src/desk/formats:
 * isc-dhcpd v4 and v6, kea-csv v4 and v6, radius-detail, static-csv,
 * cgnat-csv) and the customer CSV (src/desk/customers.ts) — with fast-check:
 * mutations of the real daemons' files (test/desk/fixtures/leases) and of
 * the seed CSVs (test/fuzz/corpus/leases), and one known-bad line put at a
 * known place in a good file.
 *
 * Properties: a parser returns records or throws its own error type
 * (LeaseFileError, CsvFormatError, CustomerImportError), nothing else; every
 * error names a line that is in the file; a bad line put at line k is
 * reported at line k; each call answers in time.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import fc from 'fast-check';
import { CustomerImportError, parseCustomersCsv } from '../../src/desk/customers.ts';
import * as cgnat from '../../src/desk/formats/cgnat-csv.ts';
import { CsvFormatError } from '../../src/desk/formats/csv-table.ts';
import * as isc from '../../src/desk/formats/isc-dhcpd.ts';
import * as kea from '../../src/desk/formats/kea-csv.ts';
import { LeaseFileError } from '../../src/desk/formats/lease-file.ts';
import * as radius from '../../src/desk/formats/radius-detail.ts';
import * as staticCsv from '../../src/desk/formats/static-csv.ts';
import { check, Clock, corpus, mutated, params } from './fuzz.ts';

const fixture = (name: string) => readFileSync(new URL(`../desk/fixtures/leases/${name}`, import.meta.url));
const seed = (name: string) => corpus('leases').find((c) => c.file === name)!.bytes;

interface Parser {
  name: string;
  parse: (text: string) => unknown[];
  seeds: Buffer[];
  /** A line this format must refuse wherever it stands (in a record, for the record formats). */
  bad: string;
  /** Where `bad` may go (0-based index of the line it is put before): not before the header, inside a block. */
  slots: (lines: string[]) => number[];
}

const afterHeader = (lines: string[]) => lines.map((_, i) => i).filter((i) => i >= 1 && i < lines.length);
const PARSERS: Parser[] = [
  {
    name: 'isc-dhcpd',
    parse: isc.parse,
    seeds: [fixture('isc-dhcpd.leases'), fixture('isc-dhcpd6.leases')],
    bad: '  binding state not-a-state;',
    // Inside a v4 lease block: after its opening line or one of its statements.
    slots: (lines) => lines.map((_, i) => i).filter((i) => i > 0 && /^lease \d/.test(lines.slice(0, i).reverse().find((l) => /^(lease|\}|[a-z])/.test(l)) ?? '')),
  },
  { name: 'kea-csv', parse: kea.parse, seeds: [fixture('kea-leases4.csv'), fixture('kea-leases6.csv')], bad: 'not-an-address,52:54:00:0a:00:01,,600,1795376395,1,0,0,,0,', slots: afterHeader },
  {
    name: 'radius-detail',
    parse: radius.parse,
    seeds: [fixture('radius-detail')],
    bad: '\tthis line is no attribute',
    slots: (lines) => lines.map((_, i) => i).filter((i) => i > 0 && lines[i - 1]!.trim() !== ''),
  },
  { name: 'static-csv', parse: staticCsv.parse, seeds: [seed('static.csv')], bad: 'c-9,198.51.100.1/29,2025-01-01,', slots: afterHeader },
  { name: 'cgnat-csv', parse: cgnat.parse, seeds: [seed('cgnat.csv')], bad: '100.64.1.1,2047,1024,c-9,2026-01-01T00:00:00Z,', slots: afterHeader },
  { name: 'customers', parse: parseCustomersCsv, seeds: [seed('customers.csv')], bad: 'c-9,Nobody,not-an-address,,,,', slots: afterHeader },
];

/** The lines an error names (a LeaseFileError one, the CSV errors one per problem); throws on any other error. */
function linesOf(parser: string, err: unknown): number[] {
  if (err instanceof LeaseFileError) {
    assert.match(err.message, new RegExp(`line ${err.line}\\b`), 'the message names the line');
    return [err.line];
  }
  if (err instanceof CsvFormatError || err instanceof CustomerImportError) {
    assert.ok(err.problems.length > 0);
    return err.problems.map((p) => p.line);
  }
  throw new Error(`${parser}: an error that is not the parser's own escaped: ${(err as Error)?.stack ?? String(err)}`);
}

/** Lines as an editor counts them (and the CSV parsers, told so): CRLF, LF and a lone CR each end one. */
const lineCount = (text: string) => text.split(/\r\n|\r|\n/).length;

for (const p of PARSERS) {
  test(`${p.name}: mutated files give records or the parser's own error, naming a line in the file, in time`, async (t) => {
    const clock = new Clock(2000);
    await check(
      t,
      fc.property(mutated(p.seeds), (bytes) => {
        const text = bytes.toString('utf8');
        try {
          const records = clock.sync('parse', () => p.parse(text));
          assert.ok(Array.isArray(records));
        } catch (err) {
          for (const line of linesOf(p.name, err)) assert.ok(line >= 1 && line <= lineCount(text), `line ${line} is not in a file of ${lineCount(text)} lines: ${(err as Error).message}`);
        }
      }),
      params(300),
      clock,
    );
  });

  test(`${p.name}: a bad line put at line k is reported at line k`, async (t) => {
    await check(
      t,
      fc.property(fc.constantFrom(...p.seeds.filter((s) => p.slots(s.toString('utf8').split('\n')).length > 0)), fc.nat(), (bytes, pick) => {
        // Split on LF only: a CRLF file keeps its CRs and gets one LF-ended line, mixed endings as an editor may leave them.
        const lines = bytes.toString('utf8').split('\n');
        const slots = p.slots(lines);
        const at = slots[pick % slots.length]!;
        const text = [...lines.slice(0, at), p.bad, ...lines.slice(at)].join('\n');
        let lines2: number[] = [];
        try {
          p.parse(text);
        } catch (err) {
          lines2 = linesOf(p.name, err);
        }
        assert.ok(lines2.includes(at + 1), `${p.name}: bad line at ${at + 1}, error names ${JSON.stringify(lines2)}`);
      }),
      params(100),
    );
  });
}
