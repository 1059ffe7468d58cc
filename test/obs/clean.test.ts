import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cleanText, hasUnsafeCharacters } from '../../src/obs/clean.ts';

const table: [string, string, number, string][] = [
  ['plain text passes', 'mx.example.net', 200, 'mx.example.net'],
  ['CRLF is neutered', 'a\r\nBcc: x', 200, 'a??Bcc: x'],
  ['NUL and DEL', 'a\u0000b\u007f', 200, 'a?b?'],
  ['RTL override that makes exe look like txt', 'invoice\u202etxt.exe', 200, 'invoice?txt.exe'],
  ['isolates and BOM', '\u2066x\u2069\ufeff', 200, '?x??'],
  ['long strings are cut and marked', 'x'.repeat(50), 10, 'xxxxxxx...'],
  ['unicode letters are kept', 'Grüße 日本', 200, 'Grüße 日本'],
];
for (const [name, input, max, expected] of table) {
  test(`cleanText: ${name}`, () => assert.equal(cleanText(input, max), expected));
}

test('hasUnsafeCharacters is stable across calls (no sticky regex state)', () => {
  assert.equal(hasUnsafeCharacters('a\nb'), true);
  assert.equal(hasUnsafeCharacters('a\nb'), true);
  assert.equal(hasUnsafeCharacters('ab'), false);
});
