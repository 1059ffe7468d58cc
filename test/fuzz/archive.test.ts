/*
 * Fuzzing the zip reader (src/scan/archive.ts) and the policy that looks
 * inside archives (src/scan/policy.ts checkLeaf), with fast-check: mutated
 * seed archives (test/fuzz/corpus/zip), raw bytes, and archives built with
 * fflate from generated entries, so that whether a limit was crossed is known.
 *
 * Properties: readCentralDirectory and extractEntry return or throw
 * ArchiveLimitError, nothing else; never more entries than maxEntries and
 * never more bytes than maxBytes; each call answers in time; checkLeaf never
 * throws, and is never `clean` for an archive over maxArchiveEntries,
 * maxExpandedBytes or maxArchiveDepth, nor for an entry in a compression
 * method that nobody here opens (with bytes before the zip, too).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { zipSync, type Zippable } from 'fflate';
import { ArchiveLimitError, CLAMD_ONLY_METHODS, extractEntry, methodName, OPENED_METHODS, readCentralDirectory } from '../../src/scan/archive.ts';
import { DEFAULT_BANNED_EXTENSIONS } from '../../src/scan/names.ts';
import { checkLeaf, type PolicySettings } from '../../src/scan/policy.ts';
import { check, Clock, corpus, mutated, params } from './fuzz.ts';

const seeds = corpus('zip').map((s) => s.bytes);
const anyZip = fc.oneof({ weight: 5, arbitrary: mutated(seeds) }, { weight: 1, arbitrary: fc.uint8Array({ maxLength: 1024 }).map((b) => Buffer.from(b)) });

test('zip reader: any bytes give entries or an ArchiveLimitError, bounded in count and output, in time', async (t) => {
  const clock = new Clock(2000);
  await check(
    t,
    fc.property(anyZip, fc.integer({ min: 1, max: 50 }), fc.integer({ min: 1, max: 1 << 20 }), (zip, maxEntries, maxBytes) => {
      let entries;
      try {
        entries = clock.sync('readCentralDirectory', () => readCentralDirectory(zip, maxEntries));
      } catch (err) {
        if (err instanceof ArchiveLimitError) return;
        throw err;
      }
      assert.ok(entries.length <= maxEntries);
      for (const entry of entries) {
        try {
          const bytes = clock.sync('extractEntry', () => extractEntry(zip, entry, maxBytes));
          if (bytes !== null) assert.ok(bytes.length <= maxBytes, `${bytes.length} bytes out, cap ${maxBytes}`);
        } catch (err) {
          if (!(err instanceof ArchiveLimitError)) throw err;
        }
      }
    }),
    params(1000),
    clock,
  );
});

const settings = (limits: Partial<PolicySettings>): PolicySettings => ({
  maxArchiveDepth: 4,
  maxArchiveEntries: 1000,
  maxExpansionRatio: 100,
  maxExpandedBytes: 200 * 1024 * 1024,
  maxBufferedEntryBytes: 16 * 1024 * 1024,
  clamd: false,
  clamdOpens: new Set(),
  bannedExtensions: new Set(DEFAULT_BANNED_EXTENSIONS),
  bannedTypes: new Set(['PE', 'MS-DOS', 'ELF', 'Mach-O', 'LNK']),
  blocklist: new Set(),
  ...limits,
});

test('policy: mutated archives give a verdict, never an exception, in time', async (t) => {
  const clock = new Clock(2000);
  const s = settings({ maxExpandedBytes: 8 * 1024 * 1024 });
  await check(
    t,
    fc.property(anyZip, fc.option(fc.constantFrom('a.zip', 'x.exe', 'readme.txt'), { nil: null }), (zip, name) => {
      const verdict = clock.sync('checkLeaf', () => checkLeaf({ name, content: zip }, s));
      assert.ok(['clean', 'infected', 'banned', 'unscannable'].includes(verdict.kind));
    }),
    params(1000),
    clock,
  );
});

// ── archives of known shape ───────────────────────────────────────────────

type Entry = { name: string; size: number; byte: number; level: 0 | 6 } | { name: string; nested: Entry[] };

const entryName = fc.stringMatching(/^[a-z]{1,8}\.(txt|csv|dat)$/);
const entries = fc.letrec<{ list: Entry[] }>((tie) => ({
  list: fc.uniqueArray(
    fc.oneof(
      { depthSize: 'small' },
      fc.record({ name: entryName, size: fc.integer({ min: 0, max: 16 * 1024 }), byte: fc.constantFrom(0x20, 0x61, 0x00), level: fc.constantFrom(0 as const, 6 as const) }),
      fc.record({ name: fc.stringMatching(/^[a-z]{1,8}\.zip$/), nested: tie('list') }),
    ),
    { maxLength: 6, selector: (e) => e.name },
  ),
})).list;

/**
 * The archive, and what the policy must charge for it: entries per archive,
 * bytes declared in all of them (a nested archive as stored, and again its
 * own entries), nesting (the outer archive is level 1).
 */
function build(list: Entry[], depth = 1): { zip: Uint8Array; widest: number; expanded: number; depth: number } {
  const files: Zippable = {};
  let expanded = 0;
  let widest = list.length;
  let deepest = depth;
  for (const e of list) {
    if ('nested' in e) {
      const inner = build(e.nested, depth + 1);
      files[e.name] = [inner.zip, { level: 0 }];
      expanded += inner.zip.length + inner.expanded;
      widest = Math.max(widest, inner.widest);
      deepest = Math.max(deepest, inner.depth);
    } else {
      files[e.name] = [new Uint8Array(e.size).fill(e.byte), { level: e.level }];
      expanded += e.size;
    }
  }
  return { zip: zipSync(files), widest, expanded, depth: deepest };
}

test('policy: an archive over maxArchiveEntries, maxExpandedBytes or maxArchiveDepth is never clean; one within them is clean', async (t) => {
  const clock = new Clock(2000);
  const seen = { over: 0, within: 0 };
  await check(
    t,
    fc.property(entries, fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1024, max: 64 * 1024 }), fc.integer({ min: 1, max: 4 }), (list, maxArchiveEntries, maxExpandedBytes, maxArchiveDepth) => {
      const { zip, ...m } = build(list);
      const over = m.widest > maxArchiveEntries || m.expanded > maxExpandedBytes || m.depth > maxArchiveDepth;
      const verdict = clock.sync('checkLeaf', () => checkLeaf({ name: 'outer.zip', content: zip }, settings({ maxArchiveEntries, maxExpandedBytes, maxArchiveDepth })));
      if (over) {
        seen.over++;
        assert.notEqual(verdict.kind, 'clean', `${JSON.stringify(m)} against entries ${maxArchiveEntries}, bytes ${maxExpandedBytes}, depth ${maxArchiveDepth}`);
      } else {
        seen.within++;
        assert.equal(verdict.kind, 'clean', `${JSON.stringify(m)} within limits: ${JSON.stringify(verdict)}`);
      }
    }),
    params(300, 0.3),
    clock,
  );
  assert.ok(seen.over > 0 && seen.within > 0, `both sides of the limits were tried: ${JSON.stringify(seen)}`);
});

test('policy: an entry compressed with a method neither our reader nor clamd opens is never clean, whatever its name and place', async (t) => {
  const clock = new Clock(2000);
  const s = settings({});
  const opened = new Set([...OPENED_METHODS, ...CLAMD_ONLY_METHODS]);
  await check(
    t,
    fc.property(
      fc.integer({ min: 1, max: 0xffff }).filter((m) => !opened.has(m)),
      fc.stringMatching(/^[a-z]{1,8}\.(txt|pdf|doc|jpg)$/),
      fc.uint8Array({ minLength: 1, maxLength: 200 }),
      fc.constantFrom('', '#!/bin/sh\n', 'MZ junk before the zip '),
      (method, name, bytes, prefix) => {
        const zip = Buffer.concat([Buffer.from(prefix, 'latin1'), Buffer.from(zipSync({ [name]: [bytes, { level: 0 }], 'note.txt': [new Uint8Array([0x61]), { level: 0 }] }))]);
        // The method field of the first entry, in its local header (offset 8) and central record (offset 10).
        const local = zip.indexOf(Buffer.from([0x50, 0x4b, 0x03, 0x04]));
        const central = zip.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
        zip.writeUInt16LE(method, local + 8);
        zip.writeUInt16LE(method, central + 10);
        const verdict = clock.sync('checkLeaf', () => checkLeaf({ name: 'archive.zip', content: zip }, s));
        assert.notEqual(verdict.kind, 'clean', `method ${method} (${methodName(method)}) in ${name}${prefix ? ' after a prefix' : ''}`);
      },
    ),
    params(300),
    clock,
  );
});
