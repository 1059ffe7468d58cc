/*
 * Fuzzing the MIME walker (src/scan/mime.ts) and the scanner's verdict on
 * what it finds, with fast-check: mutated seed messages
 * (test/fuzz/corpus/mime), mail-shaped line soup and raw bytes; and
 * generated MIME trees of known size, so that whether a limit was crossed is
 * known by construction.
 *
 * Properties: walkMessage returns or throws MimeLimitError — nothing else
 * escapes; it answers within its time limit; what it returns is bounded by
 * what came in; the scanner never throws, and its verdict is never `clean`
 * for a message over scan.maxParts or scan.maxMimeDepth.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import PostalMime from 'postal-mime';
import { parseConfig } from '../../src/config/load.ts';
import { MimeLimitError, structure, walkMessage } from '../../src/scan/mime.ts';
import { sha256 } from '../../src/scan/policy.ts';
import { createScanner } from '../../src/scan/scanner.ts';
import { check, Clock, corpus, mailish, mutated, params } from './fuzz.ts';

const seeds = corpus('mime').map((s) => s.bytes);
const anyMessage = fc.oneof(
  { weight: 4, arbitrary: mutated(seeds) },
  { weight: 3, arbitrary: mailish },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 2048 }).map((b) => Buffer.from(b)) },
);

/** Decoded output may outgrow its input only by charset conversion (one byte → at most a 3-byte U+FFFD) and the text/HTML copies. */
const outputBound = (inputBytes: number) => 8 * inputBytes + 4096;

test('walkMessage: any bytes give leaves or a MimeLimitError, in time, with output bounded by the input', async (t) => {
  const clock = new Clock(2000);
  await check(
    t,
    fc.asyncProperty(anyMessage, fc.integer({ min: 1, max: 30 }), fc.integer({ min: 1, max: 200 }), async (raw, maxMimeDepth, maxParts) => {
      let walked;
      try {
        walked = await clock.async('walkMessage', () => walkMessage(raw, { maxMimeDepth, maxParts }));
      } catch (err) {
        if (err instanceof MimeLimitError) return;
        throw err;
      }
      const out = walked.leaves.reduce((n, l) => n + l.content.length, 0) + walked.outside.reduce((n, b) => n + b.length, 0);
      assert.ok(out <= outputBound(raw.length), `${out} bytes out of ${raw.length} in`);
      assert.ok(walked.parts <= maxParts, `parts ${walked.parts} over the limit ${maxParts} without a MimeLimitError`);
    }),
    params(300),
    clock,
  );
});

// ── generated MIME trees of known shape ────────────────────────────────────

type Node = { kind: 'text' | 'file' } | { kind: 'multipart'; children: Node[] } | { kind: 'message'; body: Node };

const tree = fc.letrec<{ node: Node }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant({ kind: 'text' as const }),
    fc.constant({ kind: 'file' as const }),
    fc.record({ kind: fc.constant('multipart' as const), children: fc.array(tie('node'), { minLength: 1, maxLength: 5 }) }),
    fc.record({ kind: fc.constant('message' as const), body: tie('node') }),
  ),
})).node;

let boundaries = 0;
/** The raw entity (header block and body) for a node; `enc` varies how leaves are written so both MIME paths run. */
function render(node: Node, enc: 'plain' | 'qp'): string {
  switch (node.kind) {
    case 'text':
      return enc === 'qp' ? 'Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nCaf=E9\r\n' : 'Content-Type: text/plain\r\n\r\nhello\r\n';
    case 'file':
      return `Content-Type: application/octet-stream; name="a.txt"\r\nContent-Transfer-Encoding: base64\r\n\r\n${Buffer.from('plain data').toString('base64')}\r\n`;
    case 'message':
      return `Content-Type: message/rfc822\r\n\r\nFrom: x@example.org\r\n${render(node.body, enc)}`;
    case 'multipart': {
      const b = `b${boundaries++}`;
      return `Content-Type: multipart/mixed; boundary="${b}"\r\n\r\n${node.children.map((c) => `--${b}\r\n${render(c, enc)}`).join('')}--${b}--\r\n`;
    }
  }
}

/**
 * What the walker must count: entities (an attached message is one more, its
 * own top block) and the deepest entity (a multipart's children one level
 * down, an attached message's top block one level below its part).
 */
function shape(node: Node, depth = 0): { parts: number; depth: number; messages: number } {
  if (node.kind === 'multipart') {
    return node.children.map((c) => shape(c, depth + 1)).reduce((a, s) => ({ parts: a.parts + s.parts, depth: Math.max(a.depth, s.depth), messages: a.messages + s.messages }), { parts: 1, depth, messages: 0 });
  }
  if (node.kind === 'message') {
    const inner = shape(node.body, depth + 1);
    return { parts: 1 + inner.parts, depth: inner.depth, messages: 1 + inner.messages };
  }
  return { parts: 1, depth, messages: 0 };
}

test('scanner: a message over maxParts or maxMimeDepth is never clean; one within them is not refused for its shape', async (t) => {
  const clock = new Clock(3000);
  const seen = { over: 0, within: 0 };
  const scanners = new Map<string, ReturnType<typeof createScanner>>();
  const scannerFor = (maxMimeDepth: number, maxParts: number) => {
    const key = `${maxMimeDepth}/${maxParts}`;
    let s = scanners.get(key);
    if (!s) scanners.set(key, (s = createScanner(parseConfig({ domains: ['example.net'], scan: { maxMimeDepth, maxParts, cacheEntries: 0 } }))));
    return s;
  };
  try {
    await check(
      t,
      fc.asyncProperty(tree, fc.constantFrom('plain' as const, 'qp' as const), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 20 }), async (node, enc, maxMimeDepth, maxParts) => {
        const raw = Buffer.from(`From: a@example.org\r\nMIME-Version: 1.0\r\n${render(node, enc)}`, 'latin1');
        const s = shape(node);
        const over = s.parts > maxParts || s.depth > maxMimeDepth;
        const result = await clock.async('scanMessage', () => scannerFor(maxMimeDepth, maxParts).scanMessage(raw));
        if (over) {
          seen.over++;
          assert.notEqual(result.verdict.kind, 'clean', `${s.parts} parts, depth ${s.depth} against ${maxParts}/${maxMimeDepth}`);
        } else if (s.messages === 0) {
          // Without attached messages the count is exact; with them the walker may charge the deepest for all (safe side).
          seen.within++;
          assert.equal(result.verdict.kind, 'clean', `${s.parts} parts, depth ${s.depth} against ${maxParts}/${maxMimeDepth}: ${JSON.stringify(result.verdict)}`);
        }
      }),
      params(300, 0.3),
      clock,
    );
  } finally {
    await Promise.all([...scanners.values()].map((s) => s.close()));
  }
  assert.ok(seen.over > 0 && seen.within > 0, `both sides of the limits were tried: ${JSON.stringify(seen)}`);
});

test('scanner: any bytes give a verdict, never an exception, within scan.timeoutMs', async (t) => {
  const scanner = createScanner(parseConfig({ domains: ['example.net'], scan: { maxMimeDepth: 8, maxParts: 50, timeoutMs: 2000 } }));
  const clock = new Clock(2500);
  try {
    await check(
      t,
      fc.asyncProperty(anyMessage, async (raw) => {
        const result = await clock.async('scanMessage', () => scanner.scanMessage(raw));
        assert.ok(['clean', 'infected', 'banned', 'unscannable'].includes(result.verdict.kind));
      }),
      params(300),
      clock,
    );
  } finally {
    await scanner.close();
  }
});

// ── the hand split against postal-mime ─────────────────────────────────────

/**
 * The attachments as postal-mime makes them (the reference the hand split must match), as
 * name:sha256, in order. Text bodies are not compared: postal-mime joins every inline text part into
 * one text and makes an HTML version of it (and a text one of HTML), bytes no part of the message
 * holds, where the hand split keeps each body as it is.
 */
async function referenceAttachments(raw: Uint8Array): Promise<string[]> {
  const m = await PostalMime.parse(raw, { attachmentEncoding: 'arraybuffer' });
  return m.attachments.map((a) => `${a.filename ?? null}:${sha256(new Uint8Array(a.content as ArrayBuffer))}`);
}

type Plain = { kind: 'text'; text: string; html: boolean } | { kind: 'file'; name: string; bytes: Uint8Array; inline: boolean } | { kind: 'multipart'; sub: string; boundary: string; preamble: string; children: Plain[] };
const plainTree = fc.letrec<{ node: Plain }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.record({ kind: fc.constant('text' as const), text: fc.string({ maxLength: 200, unit: fc.constantFrom('a', ' ', '\n', '\r\n', '.', '-', '=', 'é', '<', '\t') }), html: fc.boolean() }),
    fc.record({ kind: fc.constant('file' as const), name: fc.stringMatching(/^[A-Za-z0-9 ._-]{1,20}$/), bytes: fc.uint8Array({ maxLength: 300 }), inline: fc.boolean() }),
    fc.record({
      kind: fc.constant('multipart' as const),
      sub: fc.constantFrom('mixed', 'alternative', 'related'),
      boundary: fc.stringMatching(/^[A-Za-z0-9'()+_,./:=?-]{1,40}$/).filter((b) => !b.endsWith(' ')),
      preamble: fc.constantFrom('', 'This is a multi-part message in MIME format.', '   '),
      children: fc.array(tie('node'), { minLength: 1, maxLength: 4 }),
    }),
  ),
})).node;

function renderPlain(node: Plain, eol: string, used: Set<string>): string {
  switch (node.kind) {
    case 'text':
      return `Content-Type: text/${node.html ? 'html' : 'plain'}; charset=utf-8${eol}${eol}${node.text.replace(/\r?\n/g, eol)}${eol}`;
    case 'file': {
      const b64 = Buffer.from(node.bytes).toString('base64').replace(/.{1,76}/g, (l) => `${l}${eol}`);
      return `Content-Type: application/octet-stream; name="${node.name}"${eol}Content-Disposition: ${node.inline ? 'inline' : 'attachment'}; filename="${node.name}"${eol}Content-Transfer-Encoding: base64${eol}${eol}${b64}`;
    }
    case 'multipart': {
      // Nested boundaries must differ (RFC 2046 5.1.1); a prefix of an enclosing one is the classic trap, so keep those.
      let b = node.boundary;
      while (used.has(b)) b += 'x';
      used.add(b);
      return `Content-Type: multipart/${node.sub}; boundary="${b}"${eol}${eol}${node.preamble}${eol}${node.children.map((c) => `--${b}${eol}${renderPlain(c, eol, used)}`).join('')}--${b}--${eol}`;
    }
  }
}

test('the hand split gives postal-mime\'s attachments, byte for byte and by name, for every message it takes', async (t) => {
  const clock = new Clock(2000);
  const seen = { hand: 0, postal: 0 };
  await check(
    t,
    // Well-formed messages only. Mutated seeds found the disagreements fixed in scan/mime (see
    // regressions.test.ts); they still find some on malformed parameter syntax (`name===x`,
    // `multipart/;mixed`), where each parser guesses — not yet matched, so not asserted here.
    fc.asyncProperty(plainTree.chain((node) => fc.constantFrom('\r\n', '\n').map((eol) => Buffer.from(`From: a@example.org${eol}MIME-Version: 1.0${eol}${renderPlain(node, eol, new Set())}`, 'utf8'))), async (raw) => {
      let s;
      try {
        s = clock.sync('structure', () => structure(raw, 50, 1000));
      } catch (err) {
        if (err instanceof MimeLimitError) return;
        throw err;
      }
      if (!s.leaves) {
        seen.postal++;
        return;
      }
      seen.hand++;
      const hand = s.leaves.filter((l) => !l.body).map((l) => `${l.name}:${sha256(l.content)}`);
      assert.deepEqual(hand, await referenceAttachments(raw), `attachments differ for ${JSON.stringify(raw.toString('latin1').slice(0, 600))}`);
    }),
    params(300),
    clock,
  );
  assert.ok(seen.hand > 0, `the hand split was tried: ${JSON.stringify(seen)}`);
});
