/*
 * The whole scanner with a real clamd: every ClamAV test file mailed as an
 * attachment, clamd failures, and the verdict cache (proved with a counting
 * proxy in front of clamd: a cached verdict is one clamd never heard of).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { strToU8 } from 'fflate';
import { parseConfig } from '../../src/config/load.ts';
import { createScanner, type ScannerOptions } from '../../src/scan/scanner.ts';
import { sniff } from '../../src/scan/sniff.ts';
import { formatVerdict } from '../../src/scan/verdict.ts';
import {
  CLAMAV_TESTFILES,
  EICAR,
  EICAR_SIGNATURE_NAME,
  rawlyContainsSignature,
  startClamd,
  startClamdProxy,
  TEST_SIGNATURE_NAME,
  type ClamdProxy,
  type RunningClamd,
} from '../../src/replay/clamd.ts';
import { CRLF, mail, noise } from './mail.ts';

let clamd: RunningClamd;
before(async () => {
  clamd = await startClamd();
});
after(() => clamd?.stop());

const testFiles = readdirSync(CLAMAV_TESTFILES).sort();

/**
 * Files of clamav-testfiles this ClamAV cannot unpack, with the reason. Empty
 * for ClamAV 1.4.6 with the body signature of src/replay/clamd.ts: every
 * packer, archive and container in the package is unpacked. A new file that
 * is missed fails the test below until it is listed here with its reason.
 */
const CANNOT_UNPACK: Record<string, string> = {};

test('the ClamAV test files are all there (Debian clamav-testfiles)', () => {
  assert.ok(testFiles.length >= 44, `only ${testFiles.length} files in ${CLAMAV_TESTFILES}`);
  for (const f of ['clam.exe', 'clam-upx.exe', 'clam.zip', 'clam.7z', 'clam.tar.gz', 'clam.cab', 'clam.chm', 'clam.exe.rtf']) assert.ok(testFiles.includes(f), f);
});

test('every ClamAV test file mailed as an attachment is infected, through scanMessage, over TCP and the unix socket', async () => {
  // Names and sniffed types are not banned here, so that every verdict is clamd's.
  let proved = 0;
  for (const url of [clamd.url, clamd.unixUrl]) {
    const scanner = createScanner(parseConfig({ clamd: url, scan: { bannedExtensions: [], bannedTypes: [], cacheEntries: 0 } }));
    const missed: Record<string, string> = {};
    for (const file of testFiles) {
      const { verdict } = await scanner.scanMessage(mail([{ name: file, bytes: readFileSync(join(CLAMAV_TESTFILES, file)) }], { seq: file }));
      if (verdict.kind !== 'infected' || verdict.name !== TEST_SIGNATURE_NAME) missed[file] = formatVerdict(verdict);
    }
    assert.deepEqual(missed, Object.fromEntries(Object.keys(CANNOT_UNPACK).map((f) => [f, 'clean'])), url);
    proved = testFiles.filter((f) => !rawlyContainsSignature(join(CLAMAV_TESTFILES, f))).length;
  }
  // Detection proves unpacking only where the signature bytes are not in the file as it is.
  assert.ok(proved >= 30, `only ${proved} detections prove unpacking`);
});

test('the same files with the default policy: clamd names the malware, and the bans are listed beside it', async () => {
  const scanner = createScanner(parseConfig({ clamd: clamd.url }));
  for (const file of testFiles) {
    const bytes = readFileSync(join(CLAMAV_TESTFILES, file));
    const r = await scanner.scanMessage(mail([{ name: 'data.bin', bytes }], { seq: file }));
    // A banned message still has its attachments scanned, so the reply names the malware (infected beats banned).
    assert.equal(formatVerdict(r.verdict), `infected ${TEST_SIGNATURE_NAME}`, file);
    const bans = r.findings.filter((f) => f.verdict.kind === 'banned').map((f) => formatVerdict(f.verdict));
    // The zips hold "clam.exe": refused by that name whatever their compression method.
    if (sniff(bytes) === 'PE') assert.ok(bans.includes('banned executable content (PE) in "data.bin"'), `${file}: ${bans}`);
    else if (file.endsWith('.zip')) assert.ok(bans.includes('banned forbidden file type (.exe) in data.bin'), `${file}: ${bans}`);
  }
});

test('EICAR: the built-in check names it without clamd, also inside a tar.gz it opens itself; clamd where it cannot look (7z)', async () => {
  const scanner = createScanner(parseConfig({ clamd: clamd.url }));
  const plain = await scanner.scanMessage(mail([{ name: 'eicar.com', bytes: strToU8(EICAR) }]));
  assert.deepEqual(plain.verdict, { kind: 'infected', name: 'Eicar-Test-Signature', engine: 'builtin' });
  const { execFileSync } = await import('node:child_process');
  const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(join(tmpdir(), 'bs-eicar-'));
  try {
    writeFileSync(join(dir, 'eicar.txt'), EICAR);
    const tgz = execFileSync('tar', ['-czf', '-', '-C', dir, 'eicar.txt']);
    const r = await scanner.scanMessage(mail([{ name: 'docs.tar.gz', bytes: tgz }]));
    assert.deepEqual(r.verdict, { kind: 'infected', name: 'Eicar-Test-Signature', engine: 'builtin' });
    assert.deepEqual(r.findings.map((f) => f.part), ['docs.tar.gz/docs.tar/eicar.txt']);
    execFileSync('7z', ['a', '-bso0', join(dir, 'e.7z'), join(dir, 'eicar.txt')]);
    const { verdict } = await scanner.scanMessage(mail([{ name: 'docs.7z', bytes: readFileSync(join(dir, 'e.7z')) }]));
    assert.deepEqual(verdict, { kind: 'infected', name: EICAR_SIGNATURE_NAME, engine: 'clamd' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('clamd hung after the signature version is known: the INSTREAM itself times out', async () => {
  const scanner = createScanner(parseConfig({ clamd: clamd.url, scan: { clamdTimeoutMs: 500, timeoutMs: 5000 } }));
  await scanner.scanMessage(mail([])); // VERSION is asked now, and not again within the minute
  clamd.hang();
  try {
    const r = await scanner.scanMessage(mail([{ name: 'a.txt', bytes: strToU8('unique 3') }]));
    assert.equal(formatVerdict(r.verdict), 'unscannable clamd unavailable: clamd did not answer within 500 ms');
    assert.ok(r.ms >= 490 && r.ms < 1500, `${r.ms} ms`);
  } finally {
    clamd.resume();
  }
});

test('a clean message is clean through clamd', async () => {
  const scanner = createScanner(parseConfig({ clamd: clamd.url }));
  const r = await scanner.scanMessage(mail([{ name: 'notes.txt', bytes: strToU8('harmless') }]));
  assert.deepEqual([r.verdict.kind, r.cached], ['clean', false]);
});

test('clamd down: unscannable with the reason, reported for the metrics', async () => {
  const errors: Error[] = [];
  const scanner = createScanner(parseConfig({ clamd: 'tcp://127.0.0.1:1' }), { onClamdError: (e) => errors.push(e) });
  const { verdict } = await scanner.scanMessage(mail([{ name: 'a.txt', bytes: strToU8('x') }]));
  assert.equal(formatVerdict(verdict), 'unscannable clamd unavailable: clamd connection failed: ECONNREFUSED');
  assert.equal(errors.length, 1);
});

test('clamd down, but the built-in policy still refuses what it knows', async () => {
  const scanner = createScanner(parseConfig({ clamd: 'tcp://127.0.0.1:1' }));
  assert.equal(formatVerdict((await scanner.scanMessage(mail([{ name: 'x.pif', bytes: strToU8('x') }]))).verdict), 'banned forbidden file type (.pif)');
  assert.equal(formatVerdict((await scanner.scanMessage(mail([{ name: 'e.txt', bytes: strToU8(EICAR) }]))).verdict), 'infected Eicar-Test-Signature');
});

test('clamd hung: unscannable when clamd\'s own timeout (scan.clamdTimeoutMs) runs out', async () => {
  const scanner = createScanner(parseConfig({ clamd: clamd.url, scan: { clamdTimeoutMs: 500, timeoutMs: 5000 } }));
  clamd.hang();
  try {
    const r = await scanner.scanMessage(mail([{ name: 'a.txt', bytes: strToU8('unique') }]));
    assert.equal(formatVerdict(r.verdict), 'unscannable clamd unavailable: clamd did not answer within 500 ms');
    assert.ok(r.ms >= 490 && r.ms < 1500, `${r.ms} ms`);
  } finally {
    clamd.resume();
  }
});

test('clamd hung: unscannable when the overall deadline (scan.timeoutMs) comes first', async () => {
  const scanner = createScanner(parseConfig({ clamd: clamd.url, scan: { clamdTimeoutMs: 20_000, timeoutMs: 700 } }));
  clamd.hang();
  try {
    const r = await scanner.scanMessage(mail([{ name: 'a.txt', bytes: strToU8('unique 2') }]));
    assert.equal(formatVerdict(r.verdict), 'unscannable scan timed out after 700 ms');
    assert.ok(r.ms >= 690 && r.ms < 1500, `${r.ms} ms`);
  } finally {
    clamd.resume();
  }
});

test('clamd hung: a banned message is refused within scan.bannedClamdTimeoutMs, the ban as it was', async () => {
  const scanner = createScanner(parseConfig({ clamd: clamd.url, scan: { clamdTimeoutMs: 10_000, timeoutMs: 20_000, bannedClamdTimeoutMs: 300 } }));
  await scanner.scanMessage(mail([])); // VERSION now, not again within the minute
  clamd.hang();
  try {
    const r = await scanner.scanMessage(mail([{ name: 'invoice.pif', bytes: strToU8('unique banned 1') }]));
    assert.equal(formatVerdict(r.verdict), 'banned forbidden file type (.pif)');
    assert.deepEqual(r.findings.map((f) => f.verdict.kind), ['banned']);
    assert.ok(r.ms >= 290 && r.ms < 2000, `${r.ms} ms`);
  } finally {
    clamd.resume();
  }
});

test('a message longer than clamd\'s StreamMaxLength is unscannable with clamd\'s reason', async () => {
  const scanner = createScanner(parseConfig({ clamd: clamd.url }));
  const { verdict } = await scanner.scanMessage(mail([{ name: 'big.bin', bytes: noise(4 * 1024 * 1024) }]));
  assert.equal(formatVerdict(verdict), 'unscannable clamd: INSTREAM size limit exceeded');
});

describe('the verdict cache', () => {
  let proxy: ClamdProxy;
  before(async () => {
    proxy = await startClamdProxy(clamd.url);
  });
  after(() => proxy?.close());

  // A worm only clamd can see: clam.exe inside a CHM help file, under a name the built-in policy passes.
  const worm = readFileSync(join(CLAMAV_TESTFILES, 'clam.chm'));
  const copy = (seq: number | string) => mail([{ name: 'manual.bin', bytes: worm }], { seq });

  let clock = 1_000_000;
  const options: ScannerOptions = { now: () => clock };

  test('the second copy of a worm is decided from the cache: clamd never hears of it', async () => {
    const scanner = createScanner(parseConfig({ clamd: proxy.url }), {}, options);
    const before = proxy.scans;
    const first = await scanner.scanMessage(copy(1));
    assert.deepEqual([formatVerdict(first.verdict), first.cached], [`infected ${TEST_SIGNATURE_NAME}`, false]);
    assert.equal(proxy.scans - before, 1 + 2, 'the whole message, its body and its attachment');
    for (let seq = 2; seq <= 5; seq++) {
      const next = await scanner.scanMessage(copy(seq)); // a different body text each time, same attachment
      assert.deepEqual([formatVerdict(next.verdict), next.cached], [`infected ${TEST_SIGNATURE_NAME}`, true]);
    }
    assert.equal(proxy.scans - before, 3, 'no INSTREAM for copies 2 to 5');
  });

  test('a clean message seen whole is remembered per part: the same parts again need no clamd', async () => {
    const scanner = createScanner(parseConfig({ clamd: proxy.url }), {}, options);
    const msg = mail([{ name: 'report.pdf', bytes: strToU8('%PDF-1.4 quarterly report') }], { seq: 'same-body', body: 'Please find the report attached.' });
    const before = proxy.scans;
    assert.equal((await scanner.scanMessage(msg)).cached, false);
    const again = await scanner.scanMessage(msg);
    assert.deepEqual([again.verdict.kind, again.cached], ['clean', true]);
    assert.equal(proxy.scans - before, 3, 'the whole message and its two parts, once');
  });

  test('known-clean parts do not vouch for text outside them: new preamble or epilogue text goes to clamd', async () => {
    const scanner = createScanner(parseConfig({ clamd: proxy.url }), {}, options);
    const msg = mail([{ name: 'notes.pdf', bytes: strToU8('%PDF-1.4 notes') }], { seq: 'outside', body: 'Notes attached.' });
    const before = proxy.scans;
    await scanner.scanMessage(msg);
    assert.equal((await scanner.scanMessage(msg)).cached, true, 'the same message: parts and preamble known');
    const epilogue = Buffer.concat([msg, Buffer.from(`text after the closing delimiter that no leaf holds${CRLF}`)]);
    const third = await scanner.scanMessage(epilogue);
    assert.deepEqual([third.verdict.kind, third.cached], ['clean', false]);
    assert.equal(proxy.scans - before, 3 + 1, 'the first message (whole and its two parts), then the one with an epilogue (whole)');
    assert.equal((await scanner.scanMessage(epilogue)).cached, true, 'seen whole and clean: now known');
  });

  test('a message whose body postal-mime converts from another charset is never answered clean from the cache', async () => {
    const scanner = createScanner(parseConfig({ clamd: proxy.url }), {}, options);
    const raw = Buffer.from(['From: a@example.org', 'Subject: Grüße', 'MIME-Version: 1.0', 'Content-Type: text/plain; charset=iso-8859-1', '', 'Gr\xfc\xdfe aus Bremen', ''].join(CRLF), 'latin1');
    const before = proxy.scans;
    await scanner.scanMessage(raw);
    const again = await scanner.scanMessage(raw);
    assert.deepEqual([again.verdict.kind, again.cached], ['clean', false]);
    assert.equal(proxy.scans - before, 2 + 1, 'whole and body, then whole again (the body alone is known)');
  });

  test('a signature update flushes the cache: the next copy goes to clamd again', async () => {
    const scanner = createScanner(parseConfig({ clamd: proxy.url }), {}, options);
    await scanner.scanMessage(copy(10));
    await scanner.settled();
    assert.equal((await scanner.scanMessage(copy(11))).cached, true);
    const versionsAsked = proxy.commands.filter((c) => c === 'VERSION').length;

    const newVersion = await clamd.reload(27001);
    assert.match(newVersion, /\/27001\//);
    // Within the minute, VERSION is not asked again: still from the cache.
    clock += 30_000;
    assert.equal((await scanner.scanMessage(copy(12))).cached, true);
    assert.equal(proxy.commands.filter((c) => c === 'VERSION').length, versionsAsked);

    clock += 31_000;
    const before = proxy.scans;
    const after = await scanner.scanMessage(copy(13));
    assert.deepEqual([formatVerdict(after.verdict), after.cached], [`infected ${TEST_SIGNATURE_NAME}`, false]);
    assert.equal(proxy.scans - before, 3, 'whole, body and attachment again');
    assert.equal(proxy.commands.filter((c) => c === 'VERSION').length, versionsAsked + 1);
    assert.equal(scanner.stats().cacheFlushes, 2, 'the first VERSION, then the update');
    assert.match(scanner.stats().signatures, /\/27001\//);
    await scanner.settled();
  });

  test('scanFile remembers the file itself', async () => {
    const scanner = createScanner(parseConfig({ clamd: proxy.url }), {}, options);
    const before = proxy.scans;
    assert.equal(formatVerdict((await scanner.scanFile('manual.bin', worm)).verdict), `infected ${TEST_SIGNATURE_NAME}`);
    assert.equal((await scanner.scanFile('other-name.bin', worm)).cached, true);
    assert.equal(proxy.scans - before, 1);
  });

  test('outbreak: a repeated infected 20 kB message costs a fraction of a unique one', async () => {
    const scanner = createScanner(parseConfig({ clamd: clamd.url }));
    const body = 'x'.repeat(4000);
    const n = 30;
    // Unique: each payload differs (trailing bytes), so each must go to clamd.
    const unique: number[] = [];
    for (let i = 0; i < n; i++) {
      const raw = mail([{ name: 'manual.bin', bytes: Buffer.concat([worm, Buffer.from(noise(64, i + 1))]) }], { seq: `u${i}`, body });
      const r = await scanner.scanMessage(raw);
      assert.equal(r.verdict.kind, 'infected');
      unique.push(r.ms);
      await scanner.settled();
    }
    // Repeated: the same payload in messages that differ in headers and body.
    await scanner.scanMessage(mail([{ name: 'manual.bin', bytes: worm }], { seq: 'r', body }));
    await scanner.settled();
    const repeated: number[] = [];
    for (let i = 0; i < n; i++) {
      const raw = mail([{ name: 'manual.bin', bytes: worm }], { seq: `r${i}`, body: `${body} ${i}` });
      assert.ok(raw.length > 19_000 && raw.length < 22_000, `${raw.length} bytes`);
      const r = await scanner.scanMessage(raw);
      assert.equal(r.cached, true);
      repeated.push(r.ms);
    }
    // Medians: one garbage collection or a busy neighbour test must not decide the comparison.
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const perUnique = median(unique);
    const perRepeated = median(repeated);
    console.log(`# outbreak: median unique ${perUnique.toFixed(2)} ms/message, repeated ${perRepeated.toFixed(2)} ms/message (${(perUnique / perRepeated).toFixed(1)}x)`);
    assert.ok(perRepeated * 3 < perUnique, `repeated ${perRepeated} ms vs unique ${perUnique} ms`);
  });
});

describe('cache rules against a scripted clamd', () => {
  // A fake clamd that finds "infected" only in whole messages (as a signature
  // on headers or on MIME structure would), never in a single part.
  let server: Server;
  let url: string;
  let scans = 0;
  before(async () => {
    server = createServer((socket) => {
      let data = Buffer.alloc(0);
      let session = 0; // commands answered in an IDSESSION session, numbered as clamd does
      socket.on('data', (d: Buffer) => {
        data = Buffer.concat([data, d]);
        if (data.subarray(0, 10).toString() === 'zVERSION\0') return socket.end('ClamAV 1.4.6/1/today\0');
        if (data.subarray(0, 11).toString() === 'zIDSESSION\0') {
          data = data.subarray(11);
          session = Math.max(session, 1);
        }
        if (data.length >= 4 && data.subarray(data.length - 4).equals(Buffer.alloc(4))) {
          scans++;
          const answer = data.includes(Buffer.from('Subject: hello')) ? 'stream: Whole.Message.Signature FOUND\0' : 'stream: OK\0';
          data = Buffer.alloc(0);
          if (session > 0) socket.write(`${session++}: ${answer}`);
          else socket.end(answer);
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `tcp://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  after(() => server?.close());

  test('a finding clamd makes only on the whole message is never turned into "clean" parts', async () => {
    const scanner = createScanner(parseConfig({ clamd: url }));
    const raw = mail([{ name: 'a.pdf', bytes: strToU8('%PDF') }], { seq: 'same', body: 'same body' });
    const first = await scanner.scanMessage(raw);
    assert.equal(formatVerdict(first.verdict), 'infected Whole.Message.Signature');
    assert.deepEqual(first.findings.map((f) => f.part), ['whole message']);
    assert.equal(scans, 3, 'the message, and each of its two parts on its own');
    // The parts are clean on their own (and remembered so), but were never in a message clamd passed whole.
    const again = await scanner.scanMessage(raw);
    assert.deepEqual([formatVerdict(again.verdict), again.cached], ['infected Whole.Message.Signature', false]);
    assert.equal(scans, 4, 'the whole message again, not its parts');
  });
});
