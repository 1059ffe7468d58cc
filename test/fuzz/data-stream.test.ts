/*
 * edge/data-stream against the smtp-server DATA reader it replaces: the
 * same input, cut into the same random pieces, fed to two parsers in data
 * mode (one as smtp-server ships it, one with feedDataStream installed).
 * Both must emit the same message bytes, count the same dataBytes, end DATA
 * at the same place (or both not at all) and then see the same commands that
 * were pipelined after the terminator.
 *
 * Inputs are drawn from the bytes that matter to the reader (".", CR, LF)
 * and plain letters, with a real terminator placed somewhere in most of them,
 * so that leading dots, escape dots, bare LFs, terminators split across
 * pieces and ".\r\n" as the very first line all occur often.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { SMTPStream } from 'smtp-server/lib/smtp-stream.js';
import { feedDataStream } from '../../src/edge/data-stream.ts';
import { check, params } from './fuzz.ts';

interface Seen {
  data: Buffer;
  dataBytes: number;
  ended: boolean;
  commands: string[];
}

/** Feeds the pieces one by one (each after the parser took the last), then waits for the parser to go quiet. */
async function feed(pieces: Buffer[], fast: boolean): Promise<Seen> {
  const parser = new SMTPStream();
  if (fast) parser._feedDataStream = feedDataStream;
  const commands: string[] = [];
  parser.oncommand = (command, next) => {
    commands.push(command.toString('binary'));
    next?.();
  };
  const stream = parser.startDataMode();
  const chunks: Buffer[] = [];
  let ended = false;
  stream.on('data', (c: Buffer) => chunks.push(c));
  stream.on('end', () => {
    ended = true;
    parser.continue();
  });
  for (const piece of pieces) await new Promise<void>((resolve, reject) => parser.write(piece, (err) => (err ? reject(err) : resolve())));
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  return { data: Buffer.concat(chunks), dataBytes: parser.dataBytes, ended, commands };
}

const byte = fc.constantFrom(...Buffer.from('..\r\n\r\n.a'));
const body = fc.array(byte, { maxLength: 200 }).map((b) => Buffer.from(b));
const input = fc
  .tuple(body, fc.boolean(), body)
  .map(([head, terminated, tail]) => Buffer.concat([head, terminated ? Buffer.from('\r\n.\r\nNOOP\r\n') : Buffer.alloc(0), tail, Buffer.from('\r\nQUIT\r\n')]));
/** The input and where to cut it: cut points as fractions, so every length gets cuts anywhere. */
const cutInput = fc.tuple(input, fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 12 })).map(([bytes, cuts]) => {
  const at = [...new Set(cuts.map((c) => Math.floor(c * bytes.length)))].sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let from = 0;
  for (const to of [...at, bytes.length]) {
    if (to > from) pieces.push(bytes.subarray(from, to));
    from = Math.max(from, to);
  }
  return pieces;
});

test('DATA reader: Buffer.indexOf version emits, counts and ends exactly as smtp-server 3.21 does, for any input and any cuts', async (t) => {
  await check(
    t,
    fc.asyncProperty(cutInput, async (pieces) => {
      const [shipped, ours] = [await feed(pieces, false), await feed(pieces, true)];
      assert.deepEqual(ours, shipped);
    }),
    params(1000),
  );
});

test('DATA reader: the cases smtp-server fixed stay fixed (leading ".", "..", a terminator split over pieces)', async () => {
  const cases: [string, string[], string][] = [
    ['empty message', ['.\r\nQUIT\r\n'], ''],
    ['escaped first line "." is content', ['..\r\n', '.\r\nQUIT\r\n'], '.\r\n'],
    ['terminator split in three', ['a\r\n', '.', '\r\nQUIT\r\n'], 'a\r\n'],
    ['escape dot inside', ['a\r\n..b\r\n.\r\nQUIT\r\n'], 'a\r\n.b\r\n'],
  ];
  for (const [name, pieces, message] of cases) {
    const seen = await feed(pieces.map((p) => Buffer.from(p, 'binary')), true);
    assert.equal(seen.data.toString('binary'), message, name);
    assert.equal(seen.ended, true, name);
    assert.deepEqual(seen.commands, ['QUIT'], name);
  }
});
