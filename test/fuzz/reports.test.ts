/*
 * Fuzzing the two readers of automatic mail: the bounce/AV-notice
 * classifier (src/backscatter/classify.ts) and the abuse desk's ARF / X-ARF /
 * free-text report parser (src/desk/report-parse.ts), with fast-check over
 * mutated seeds (test/fuzz/corpus/dsn, test/fuzz/corpus/report and the real
 * reports in test/desk/fixtures/reports), mail-shaped line soup and raw bytes.
 *
 * Properties: neither throws on any message; each answers in time; every
 * string either extracts from a message is cleaned (no control characters,
 * CR/LF or bidi overrides: it goes to logs, SQL and HTML) and within its
 * length; the classifier's lists stay within their limits and a message over
 * maxParts says `truncated`; a report's IP is canonical, its port a port, its
 * time a real time, its header block within MAX_HEADER_BLOCK.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import fc from 'fast-check';
import { classify, DEFAULT_CLASSIFY_LIMITS, MESSAGE_CLASSES, type ClassifyLimits } from '../../src/backscatter/classify.ts';
import { canonicalIp, MAX_HEADER_BLOCK, parseReport } from '../../src/desk/report-parse.ts';
import { hasUnsafeCharacters } from '../../src/obs/clean.ts';
import { check, Clock, corpus, mailish, mutated, params } from './fuzz.ts';

const FIXTURES = new URL('../desk/fixtures/reports/', import.meta.url);
const reportFixtures = readdirSync(FIXTURES)
  .filter((f) => f.endsWith('.eml') || f.endsWith('.json'))
  .map((f) => readFileSync(new URL(f, FIXTURES)));
const seeds = [...corpus('dsn'), ...corpus('report')].map((s) => s.bytes).concat(reportFixtures);
const anyMail = fc.oneof(
  { weight: 4, arbitrary: mutated(seeds) },
  { weight: 2, arbitrary: mailish },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 2048 }).map((b) => Buffer.from(b)) },
);

/** Every string in a value, with where it was found. */
function strings(value: unknown, path = ''): [string, string][] {
  if (typeof value === 'string') return [[path, value]];
  if (Array.isArray(value)) return value.flatMap((v, i) => strings(v, `${path}[${i}]`));
  if (value && typeof value === 'object' && !(value instanceof Date)) return Object.entries(value).flatMap(([k, v]) => strings(v, `${path}.${k}`));
  return [];
}

test('classify: any message gets a class, in time, with every extracted string cleaned and every list within its limit', async (t) => {
  const clock = new Clock(3000);
  const limits: ClassifyLimits = { ...DEFAULT_CLASSIFY_LIMITS, maxRecipients: 5, maxReceived: 5 };
  await check(
    t,
    fc.asyncProperty(anyMail, async (raw) => {
      const c = await clock.async('classify', () => classify(raw, limits));
      assert.ok(MESSAGE_CLASSES.includes(c.class), c.class);
      // The quoted original's header block is kept for the verdict's stamp check, cleaned like the rest.
      for (const [where, s] of strings(c)) assert.ok(!hasUnsafeCharacters(s), `${where} is not cleaned: ${JSON.stringify(s.slice(0, 100))}`);
      for (const [where, s] of strings({ subject: c.subject, virusName: c.virusName })) assert.ok(s.length <= 200, `${where}: ${s.length} characters`);
      for (const [where, s] of strings({ from: c.from, returnPath: c.returnPath, reportingMta: c.reportingMta })) assert.ok(s.length <= 256, `${where}: ${s.length} characters`);
      assert.ok(c.recipients.length <= limits.maxRecipients, `${c.recipients.length} recipients kept`);
      assert.ok((c.original?.received.length ?? 0) <= limits.maxReceived, `${c.original?.received.length} Received lines kept`);
      // Deterministic: the same bytes, the same answer (no state kept between messages).
      assert.deepEqual(await classify(raw, limits), c);
    }),
    params(300),
    clock,
  );
});

test('classify: a message over maxParts or maxDepth is classified from what was looked at and says so (truncated)', async (t) => {
  const clock = new Clock(3000);
  await check(
    t,
    fc.asyncProperty(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 0, max: 30 }), fc.constantFrom(...corpus('dsn').map((s) => s.bytes)), async (maxParts, extra, inner) => {
      // A bounce wrapped in a multipart/mixed with `extra` more parts: 2 + extra entities.
      const parts = Array.from({ length: extra }, (_, i) => `--W\r\nContent-Type: text/plain\r\n\r\npart ${i}\r\n`).join('');
      const raw = Buffer.concat([Buffer.from(`From: MAILER-DAEMON@example.org\r\nSubject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=W\r\n\r\n${parts}--W\r\nContent-Type: message/rfc822\r\n\r\n`), inner, Buffer.from('\r\n--W--\r\n')]);
      const c = await clock.async('classify', () => classify(raw, { ...DEFAULT_CLASSIFY_LIMITS, maxParts }));
      if (2 + extra > maxParts) assert.notEqual(c.truncated, null, `${2 + extra} entities against maxParts ${maxParts}`);
      assert.ok(MESSAGE_CLASSES.includes(c.class));
    }),
    params(200, 0.2),
    clock,
  );
});

test('parseReport: any message gives a report, in time: a canonical IP, a real port and time, a bounded header block, a clean summary', async (t) => {
  const clock = new Clock(3000);
  await check(
    t,
    fc.asyncProperty(anyMail, fc.option(fc.constantFrom('192.0.2.7', '2001:db8::7', '::ffff:192.0.2.7', 'not an ip'), { nil: null }), async (raw, targetIp) => {
      const r = await clock.async('parseReport', () => parseReport(raw, { targetIp }));
      assert.ok(['arf', 'x-arf', 'free-text'].includes(r.kind));
      if (r.ip !== null) assert.equal(canonicalIp(r.ip), r.ip, 'the IP is in its canonical spelling');
      if (r.port !== null) assert.ok(Number.isInteger(r.port) && r.port >= 0 && r.port <= 65535, `port ${r.port}`);
      if (r.observedAt !== null) assert.ok(Number.isFinite(r.observedAt.getTime()), 'a real time');
      assert.equal(r.timeSource === 'none', r.observedAt === null);
      if (r.headers !== null) assert.ok(r.headers.length <= MAX_HEADER_BLOCK, `${r.headers.length} characters of header block`);
      assert.ok(!hasUnsafeCharacters(r.summary), `summary not cleaned: ${JSON.stringify(r.summary.slice(0, 200))}`);
      for (const m of r.malware) assert.ok(!hasUnsafeCharacters(m) && m.length <= 200, `malware name ${JSON.stringify(m)}`);
      if (r.feedbackType !== null) assert.ok(!hasUnsafeCharacters(r.feedbackType), `feedback type ${JSON.stringify(r.feedbackType)}`);
    }),
    params(300),
    clock,
  );
});
