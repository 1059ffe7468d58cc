/*
 * Every finding recorded (issue 15): the scanner looks at every leaf, the
 * worst verdict answers, and the result — and the gateway's message record —
 * lists each finding with its part. Table tests on the scanner, then a real
 * gateway (swaks → Backstop → smtp-sink) and its record.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { strToU8, zipSync } from 'fflate';
import { parseConfig } from '../../src/config/load.ts';
import { EICAR } from '../../src/replay/clamd.ts';
import { worstOf, type Finding } from '../../src/scan/policy.ts';
import { createScanner } from '../../src/scan/scanner.ts';
import { banned, formatVerdict, infected, unscannable } from '../../src/scan/verdict.ts';
import type { DecidedMessage, TransactionView } from '../../src/edge/gateway.ts';
import { detectionFrom } from '../../src/notify/detection.ts';
import { noticeKey, noticeSubject } from '../../src/notify/notice.ts';
import { startTestGateway, swaks, waitFor } from '../helpers/gateway.ts';
import { mail, tinyPe } from './mail.ts';

const scanner = createScanner(parseConfig({}));
const list = (fs: Finding[]) => fs.map((f) => `${f.part}: ${formatVerdict(f.verdict)}`);

const worstCases: [string, Finding[], string][] = [
  ['no findings', [], 'clean'],
  ['banned then infected', [{ verdict: banned('forbidden file type (.pif)'), part: 'a.pif' }, { verdict: infected('X', 'builtin'), part: 'b' }], 'infected X'],
  ['unscannable then banned', [{ verdict: unscannable('limit'), part: 'a' }, { verdict: banned('t'), part: 'b' }], 'banned t'],
  ['two banned: the first', [{ verdict: banned('first'), part: 'a' }, { verdict: banned('second'), part: 'b' }], 'banned first'],
  ['infected beats everything after it', [{ verdict: infected('Y'), part: 'a' }, { verdict: banned('t'), part: 'b' }, { verdict: unscannable('u'), part: 'c' }], 'infected Y'],
];
for (const [what, findings, expected] of worstCases) {
  test(`worstOf: ${what}`, () => assert.equal(formatVerdict(worstOf(findings)), expected));
}

test('EICAR in one attachment and a banned .pif in another: infected, both listed (the .pif first in the message)', async () => {
  const r = await scanner.scanMessage(mail([{ name: 'invoice.pif', bytes: strToU8('x') }, { name: 'eicar.txt', bytes: strToU8(EICAR) }]));
  assert.equal(formatVerdict(r.verdict), 'infected Eicar-Test-Signature');
  assert.deepEqual(list(r.findings), ['invoice.pif: banned forbidden file type (.pif)', 'eicar.txt: infected Eicar-Test-Signature']);
});

test('every leaf and every archive member is examined: each banned name, type and EICAR in a zip is listed', async () => {
  const zip = zipSync({ 'a.scr': strToU8('x'), 'photo.jpg': tinyPe(), 'eicar.txt': strToU8(EICAR) });
  const r = await scanner.scanMessage(mail([{ name: 'bundle.zip', bytes: zip }, { name: 'run.bat', bytes: strToU8('@echo off') }]));
  assert.equal(formatVerdict(r.verdict), 'infected Eicar-Test-Signature');
  assert.deepEqual(list(r.findings), [
    'bundle.zip/a.scr: banned forbidden file type (.scr) in bundle.zip',
    'bundle.zip/photo.jpg: banned executable content (PE) in "photo.jpg" in bundle.zip',
    'bundle.zip/eicar.txt: infected Eicar-Test-Signature',
    'run.bat: banned forbidden file type (.bat)',
  ]);
});

test('a limit in one archive does not hide a finding in the next attachment', async () => {
  const bomb = zipSync({ 'zeros.txt': new Uint8Array(20 * 1024 * 1024) }, { level: 9 });
  const r = await scanner.scanMessage(mail([{ name: 'bomb.zip', bytes: bomb }, { name: 'x.pif', bytes: strToU8('x') }]));
  assert.equal(formatVerdict(r.verdict), 'banned forbidden file type (.pif)');
  assert.deepEqual(list(r.findings), ['bomb.zip: unscannable archive limit: expansion ratio over 100:1 (bomb.zip)', 'x.pif: banned forbidden file type (.pif)']);
});

test('a real gateway: EICAR and a banned .pif are refused naming the malware, and the record lists both findings', async () => {
  const g = await startTestGateway();
  try {
    const eml = mail([{ name: 'invoice.pif', bytes: strToU8('x') }, { name: 'eicar.txt', bytes: strToU8(EICAR) }]);
    const r = await swaks(g.port, ['--from', 'sender@example.org', '--to', 'user@example.net', '--data', '-'], eml);
    assert.equal(r.last, '550 5.7.1 Message refused, virus found: Eicar-Test-Signature');
    assert.equal(g.sink!.messages().length, 0);
    await g.messageLog.flush();
    const [rec] = await g.store.db.selectFrom('messages').selectAll().execute();
    assert.deepEqual([rec!.verdict, rec!.verdict_detail], ['infected', 'Eicar-Test-Signature']);
    assert.deepEqual(rec!.findings, [
      { verdict: 'banned', detail: 'forbidden file type (.pif)', part: 'invoice.pif' },
      { verdict: 'infected', detail: 'Eicar-Test-Signature', part: 'eicar.txt' },
    ]);
  } finally {
    await g.close();
  }
});

test('a real gateway: the detection the postmaster notice and the abuse report are built from names the malware, not the ban', async () => {
  const decided: [TransactionView, DecidedMessage][] = [];
  const g = await startTestGateway({}, { hooks: { decided: [async (t, m) => void decided.push([t, m])] } });
  try {
    const eml = mail([{ name: 'invoice.pif', bytes: strToU8('x') }, { name: 'eicar.txt', bytes: strToU8(EICAR) }], { seq: 'notice' });
    await swaks(g.port, ['--from', 'sender@example.org', '--to', 'user@example.net', '--data', '-'], eml);
    await waitFor(() => decided.length === 1);
    const detection = detectionFrom(...decided[0]!)!;
    assert.deepEqual([detection.verdict, detection.detail], ['infected', 'Eicar-Test-Signature']);
    assert.equal(noticeKey(detection.verdict as 'infected', detection.detail), noticeKey('infected', 'Eicar-Test-Signature'));
    assert.match(noticeSubject(detection.detail), /possible virus found.*Eicar-Test-Signature/);
  } finally {
    await g.close();
  }
});

test('a real gateway: a clean message has no findings recorded (null)', async () => {
  const g = await startTestGateway();
  try {
    const r = await swaks(g.port, ['--from', 'sender@example.org', '--to', 'user@example.net', '--body', 'hello']);
    assert.match(r.last, /^250 /);
    await g.messageLog.flush();
    const [rec] = await g.store.db.selectFrom('messages').selectAll().execute();
    assert.equal(rec!.findings, null);
  } finally {
    await g.close();
  }
});
