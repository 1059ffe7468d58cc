/*
 * Every failure the fuzzers (test/fuzz/*.test.ts) found, shrunk and kept as
 * a named test: the input is checked in under test/fuzz/corpus (named
 * crash-*), where it also seeds the mutation fuzzers.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CustomerImportError, parseCustomersCsv } from '../../src/desk/customers.ts';
import * as cgnat from '../../src/desk/formats/cgnat-csv.ts';
import { CsvFormatError } from '../../src/desk/formats/csv-table.ts';
import { parseReport } from '../../src/desk/report-parse.ts';
import { hasUnsafeCharacters } from '../../src/obs/clean.ts';
import { parseConfig } from '../../src/config/load.ts';
import { MimeLimitError, structure, walkMessage } from '../../src/scan/mime.ts';
import { createScanner } from '../../src/scan/scanner.ts';
import { ArchiveLimitError, extractEntry, readCentralDirectory } from '../../src/scan/archive.ts';
import { silentLogger } from '../../src/obs/log.ts';
import { openStore } from '../../src/store/store.ts';
import { buildWebApp } from '../../src/web/server.ts';
import { Client } from '../web/helpers.ts';
import { corpus } from './fuzz.ts';

const crash = (dir: string, file: string) => corpus(dir).find((c) => c.file === file)!.bytes;

test('zip: a corrupt deflate stream is an ArchiveLimitError, not fflate\'s bare "invalid length/literal" Error', () => {
  const zip = crash('zip', 'crash-corrupt-deflate.zip');
  const [entry] = readCentralDirectory(zip, 10);
  assert.throws(
    () => extractEntry(zip, entry!, 1 << 20),
    (err: unknown) => err instanceof ArchiveLimitError && /^damaged deflate data/.test(err.message),
  );
});

test('CSV: in a CRLF file, a row ended by a bare LF is a row of its own, and its error names its line (not the next one)', () => {
  const text = crash('leases', 'crash-cgnat-mixed-endings.csv').toString('utf8');
  assert.throws(
    () => cgnat.parse(text),
    (err: unknown) => err instanceof CsvFormatError && err.problems.length === 1 && err.problems[0]!.line === 2 && err.problems[0]!.column === 'port_high',
  );
});

test('CSV: an unclosed quote in a CRLF file is reported at a line the file has (csv-parse counted CR and LF apart)', () => {
  const text = crash('leases', 'crash-cgnat-open-quote.csv').toString('utf8');
  for (const parse of [cgnat.parse, parseCustomersCsv]) {
    assert.throws(
      () => parse(text),
      (err: unknown) => (err instanceof CsvFormatError || err instanceof CustomerImportError) && err.problems.every((p) => p.line >= 1 && p.line <= 4),
    );
  }
});

test('ARF: a Reported-Domain with C1 controls and a right-to-left override does not carry them into the summary (customer notices, portal)', async () => {
  const r = await parseReport(crash('report', 'crash-arf-reported-domain-c1.eml'));
  assert.equal(r.kind, 'arf');
  assert.match(r.summary, /reported domain .*elpmaxe/);
  assert.ok(!hasUnsafeCharacters(r.summary), JSON.stringify(r.summary));
});

test('login: a user name with a NUL byte is a wrong login (401), not a 500 from the throttle table', async () => {
  const store = await openStore('pglite-memory:');
  const web = buildWebApp({ store, logger: silentLogger, nodeName: 'fuzz' });
  try {
    const c = new Client(web);
    const res = await c.login('\u0000', '');
    assert.equal(res.statusCode, 401);
    assert.match(res.body, /Wrong user name or password/);
  } finally {
    await web.close();
    await store.close();
  }
});

const policyOnly = () => createScanner(parseConfig({ domains: ['example.net'] }));

test('MIME: a boundary written as a quoted string with a quoted pair ("\\XX") hides no attachment from the built-in policy (was clean)', async () => {
  const s = policyOnly();
  const r = await s.scanMessage(crash('mime', 'crash-quoted-pair-boundary.eml'));
  assert.equal(r.verdict.kind, 'banned', JSON.stringify(r.verdict));
  await s.close();
});

test('MIME: a delimiter line ending in CR CR LF still ends the part, as mail clients read it (the .exe behind it was clean)', async () => {
  const s = policyOnly();
  const r = await s.scanMessage(crash('mime', 'crash-delimiter-two-crs.eml'));
  assert.equal(r.verdict.kind, 'banned', JSON.stringify(r.verdict));
  await s.close();
});

test('MIME: parts whose first line is no header field still count against maxParts (20,000 went to postal-mime past a limit of 500)', async () => {
  const raw = Buffer.from(`Content-Type: multipart/mixed; boundary=b\r\n\r\n${'--b\r\nX\r\nbody\r\n'.repeat(20_000)}--b--\r\n`);
  await assert.rejects(walkMessage(raw, { maxMimeDepth: 20, maxParts: 500 }), (err: unknown) => err instanceof MimeLimitError && err.message === 'more than 500 parts');
});

test('MIME: postal-mime\'s own nesting limit (its reading nests deeper than the pre-pass\'s) is a MimeLimitError, not a bare Error', async () => {
  const raw = Buffer.from('Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type:\r\n--b\r\nContent-Type: multipart/--mixed; boundary=c\r\n\r\n--c\r\nContent-Type: text/plain\r\n\r\ndeep\r\n--c--\r\n--b--\r\n--a--\r\n');
  await assert.rejects(walkMessage(raw, { maxMimeDepth: 2, maxParts: 3 }), MimeLimitError);
});

test('MIME: what the hand split would read apart from postal-mime goes to postal-mime (unencoded attachment, empty Content-Type, multipart without a boundary)', () => {
  for (const raw of [
    'Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: application/octet-stream; name="a.bin"\r\n\r\nline one\r\nline two\r\n--a--\r\n',
    'Content-Type:\r\n\r\nhello\r\n',
    'From: a@example.org\r\nContent-Type: multipart/\r\n\r\nbody\r\n',
  ]) assert.equal(structure(Buffer.from(raw), 20, 500).leaves, null, JSON.stringify(raw));
});
