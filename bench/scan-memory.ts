/*
 * bench/scan-memory — what one message with a huge archive entry costs the
 * scanner in memory (issue 16): a ~3 MB message carrying a zip whose one
 * deflate entry inflates to 208 MB (under the 100:1 ratio and the 200 MiB
 * expansion limit, so it is really inflated, not refused up front).
 *
 *   node --import tsx bench/scan-memory.ts [--clamd tcp://HOST:PORT]
 *
 * The message is made by a child process (streamed zip, never 208 MB in
 * memory there either) so that this process's VmHWM is the scan's alone.
 * Prints the verdict, VmHWM before and after the scan, and what it added.
 * A measurement, not a test: the bound belongs to the attack tests.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Zip, ZipDeflate } from 'fflate';
import { parseConfig } from '../src/config/load.ts';
import { createScanner } from '../src/scan/scanner.ts';
import { formatVerdict } from '../src/scan/verdict.ts';

const ENTRY_BYTES = 208_000_000;

/** Low-entropy text (a rare '1' among '0's, in lines): deflate gets ~70:1 on it. */
function makeZip(file: string): void {
  const chunks: Uint8Array[] = [];
  const zip = new Zip((err, data) => {
    if (err) throw err;
    chunks.push(data);
  });
  const entry = new ZipDeflate('measurements.csv', { level: 6 });
  zip.add(entry);
  let x = 12345;
  const block = Buffer.alloc(1 << 20);
  for (let done = 0; done < ENTRY_BYTES; done += block.length) {
    const n = Math.min(block.length, ENTRY_BYTES - done);
    for (let i = 0; i < n; i++) {
      x = (x * 1103515245 + 12345) >>> 0;
      block[i] = i % 64 === 63 ? 0x0a : (x >>> 16) % 700 === 0 ? 0x31 : 0x30;
    }
    entry.push(block.subarray(0, n), done + n >= ENTRY_BYTES);
  }
  zip.end();
  writeFileSync(file, Buffer.concat(chunks));
}

function vmHwmMb(): number {
  const line = readFileSync('/proc/self/status', 'utf8').split('\n').find((l) => l.startsWith('VmHWM:'))!;
  return Number(/(\d+)/.exec(line)![1]) / 1024;
}

if (process.argv[2] === '--make') {
  makeZip(process.argv[3]!);
  process.exit(0);
}

const dir = mkdtempSync(join(tmpdir(), 'bs-scanmem-'));
try {
  const zipFile = join(dir, 'big.zip');
  execFileSync(process.execPath, ['--import', 'tsx', import.meta.filename, '--make', zipFile], { stdio: 'inherit' });
  const zip = readFileSync(zipFile);
  const b64 = zip.toString('base64').replace(/.{76}/g, '$&\r\n');
  const raw = Buffer.from(
    ['From: a@example.org', 'To: user@example.net', 'Subject: data', 'MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary="b"', '', '--b', 'Content-Type: text/plain', '', 'The data.', '--b',
      'Content-Type: application/zip', 'Content-Transfer-Encoding: base64', 'Content-Disposition: attachment; filename="data.zip"', '', b64, '--b--', ''].join('\r\n'),
  );
  const clamdAt = process.argv.indexOf('--clamd');
  const scanner = createScanner(parseConfig(clamdAt > 0 ? { clamd: process.argv[clamdAt + 1] } : {}));
  await scanner.scanMessage(Buffer.from(['From: a@b', 'Subject: warm-up', '', 'x', ''].join('\r\n')));
  global.gc?.();
  const before = vmHwmMb();
  const started = performance.now();
  const r = await scanner.scanMessage(raw);
  const ms = performance.now() - started;
  const peak = vmHwmMb();
  console.log(`message ${(raw.length / 1e6).toFixed(1)} MB, zip ${(zip.length / 1e6).toFixed(2)} MB, entry ${ENTRY_BYTES / 1e6} MB (ratio ${(ENTRY_BYTES / zip.length).toFixed(0)}:1)`);
  console.log(`verdict: ${formatVerdict(r.verdict)} in ${ms.toFixed(0)} ms`);
  console.log(`VmHWM before the scan ${before.toFixed(0)} MB, after ${peak.toFixed(0)} MB: the scan added ${(peak - before).toFixed(0)} MB`);
  await scanner.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
