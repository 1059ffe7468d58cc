/*
 * Every failure the fuzzers (test/fuzz/*.test.ts) found, shrunk and kept as
 * a named test: the input is checked in under test/fuzz/corpus (named
 * crash-*), where it also seeds the mutation fuzzers.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ArchiveLimitError, extractEntry, readCentralDirectory } from '../../src/scan/archive.ts';
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
