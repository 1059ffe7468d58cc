/*
 * Pure decisions: file names, sniffed types, EICAR. Tables, one test per row.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { strToU8, zipSync } from 'fflate';
import { checkFileName, DEFAULT_BANNED_EXTENSIONS } from '../../src/scan/names.ts';
import { isEicar, sniff, type SniffedType } from '../../src/scan/sniff.ts';
import { EICAR } from '../../src/replay/clamd.ts';
import { tinyPe } from './mail.ts';

const banned = new Set(DEFAULT_BANNED_EXTENSIONS);

const names: [string, string | null][] = [
  ['report.pdf', null],
  ['minutes.docx', null],
  ['archive.tar.gz', null],
  ['noextension', null],
  ['john.smith.vcf', null],
  ['photo.jpg', null],
  ['document.pif', 'forbidden file type (.pif)'],
  ['SCREENSAVER.SCR', 'forbidden file type (.scr)'],
  ['setup.msi', 'forbidden file type (.msi)'],
  ['run.ps1', 'forbidden file type (.ps1)'],
  ['tool.jar', 'forbidden file type (.jar)'],
  ['invoice.hta', 'forbidden file type (.hta)'],
  ['disk.iso', 'forbidden file type (.iso)'],
  ['Thomas.Smith.exe', 'forbidden file type (.exe)'],
  ['doc.txt.pif', 'double extension (doc.txt.pif)'],
  ['invoice.PDF.exe', 'double extension (invoice.PDF.exe)'],
  ['report.2004.doc.scr', 'double extension (2004.doc.scr)'],
  ['holiday.photo.JPEG.exe', 'double extension (photo.JPEG.exe)'],
  ['readme.exe.', 'forbidden file type (.exe)'],
  ['readme.exe  ', 'forbidden file type (.exe)'],
  ['C:\\Users\\me\\body.bat', 'forbidden file type (.bat)'],
  ['dir/inner/x.vbs', 'forbidden file type (.vbs)'],
  ['doc.settingcontent-ms', 'forbidden file type (.settingcontent-ms)'],
  ['file.{3050F4D8-98B5-11CF-BB82-00AA00BDCE0B}', 'class-id extension (file.{3050F4D8-98B5-11CF-BB82-00AA00BDCE0B})'],
  ['readme.txt          .exe', 'padded file name hiding .exe (readme.txt .exe)'],
  ['document.doc\t\t\t\t\t.pif', 'padded file name hiding .pif (document.doc .pif)'],
];
for (const [name, expected] of names) {
  test(`file name ${JSON.stringify(name)} → ${expected ?? 'allowed'}`, () => assert.equal(checkFileName(name, banned), expected));
}

test('padded-double-extension: sixty spaces push .exe out of sight, and the name is shown folded', () => {
  assert.equal(checkFileName(`readme.txt${' '.repeat(60)}.exe`, banned), 'padded file name hiding .exe (readme.txt .exe)');
});

test('rtl-override-name: "photo\\u202Egpj.exe" (shown as photoexe.jpg) is refused and shown neutered', () => {
  assert.equal(checkFileName('photo\u202Egpj.exe', banned), 'bidirectional override in file name (photo?gpj.exe)');
  // Any bidi control, even with a harmless real extension: the name is built to mislead.
  assert.equal(checkFileName('invoice\u2067fdp.txt', banned), 'bidirectional override in file name (invoice?fdp.txt)');
});

test('a control character in a banned name never reaches the verdict text', () => {
  assert.equal(checkFileName('a\u0000\u0007b.txt.pif', banned), 'double extension (a??b.txt.pif)');
});

test('scan.bannedExtensions replaces the built-in list', () => {
  const custom = new Set(['zip']);
  assert.equal(checkFileName('x.exe', custom), null);
  assert.equal(checkFileName('x.zip', custom), 'forbidden file type (.zip)');
});

const sniffs: [string, Uint8Array, SniffedType][] = [
  ['a PE image', tinyPe(), 'PE'],
  ['clam.exe from clamav-testfiles', readFileSync('/usr/share/clamav-testfiles/clam.exe'), 'PE'],
  ['a DOS executable with a plausible header', (() => {
    const b = new Uint8Array(64);
    b.set([0x4d, 0x5a], 0);
    b[8] = 2; // header of 2 paragraphs = 32 bytes
    b[0x18] = 0x1c; // relocation table right after the fields
    return b;
  })(), 'MS-DOS'],
  ['text that starts with "MZ"', strToU8('MZ Automotive price list 2004, all models, all prices in EUR\n'), null],
  ['an ELF binary', new Uint8Array([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]), 'ELF'],
  ['a 64-bit Mach-O', new Uint8Array([0xcf, 0xfa, 0xed, 0xfe, 7, 0, 0, 1]), 'Mach-O'],
  ['a universal Mach-O', new Uint8Array([0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 2]), 'Mach-O'],
  ['a Java class file (same magic, version 52)', new Uint8Array([0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 52]), null],
  ['a Windows shortcut', new Uint8Array([0x4c, 0, 0, 0, 0x01, 0x14, 0x02, 0, 0, 0, 0, 0, 0xc0, 0, 0, 0, 0, 0, 0, 0x46, 0, 0]), 'LNK'],
  ['a zip', zipSync({ a: strToU8('x') }), 'zip'],
  ['a PDF', strToU8('%PDF-1.7\n%âãÏÓ\n'), null],
  ['empty', new Uint8Array(0), null],
];
for (const [what, bytes, expected] of sniffs) {
  test(`sniff: ${what} → ${expected ?? 'nothing we act on'}`, () => assert.equal(sniff(bytes), expected));
}

const eicars: [string, string, boolean][] = [
  ['the test file', EICAR, true],
  ['with trailing CRLF and spaces', `${EICAR}  \r\n`, true],
  ['inside a longer text', `Hello ${EICAR}`, false],
  ['followed by other content', `${EICAR}\nmore text here`, false],
  ['one character changed', EICAR.replace('EICAR', 'EICAX'), false],
];
for (const [what, text, expected] of eicars) {
  test(`EICAR: ${what} → ${expected}`, () => assert.equal(isEicar(strToU8(text)), expected));
}
