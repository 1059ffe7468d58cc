/*
 * bench/gateway — `npm run bench`: Backstop+clamd against the same load sent
 * straight to Postfix's smtp-sink and through Haraka 3 + haraka-plugin-clamd,
 * all in one run on this machine, printed as same-run ratios.
 *
 * Load: 20 kB messages with an attachment, at 1 session and at 20 sessions
 * that reuse their connections; once with every message unique (random
 * attachment bytes: no cache can help) and once as an outbreak mix (80% carry
 * the same Mydoom-style payload: a .zip holding a .pif that is ClamAV's test
 * executable). Backstop runs twice, with smtp-server's 100 ms early-talker
 * pause and with none. Then peak RSS of a Backstop node holding 1,000 idle
 * connections, and receiving one 50 MB message.
 *
 * The targets are printed beside the numbers; nothing here is a pass/fail test.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { zipSync } from 'fflate';
import { startClamd } from '../src/replay/clamd.ts';
import { freePort, startBackstop, startSmtpSink, type RunningProcess } from '../src/replay/processes.ts';
import { ClamdClient } from '../src/scan/clamd.ts';
import { startHaraka } from './lib/haraka.ts';
import { createTestDatabase } from '../test/helpers/pg.ts';
import { percentile, runLoad, type LoadResult } from './lib/load.ts';

const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '1000' },
    quick: { type: 'boolean', default: false },
    'skip-haraka': { type: 'boolean', default: false },
    'skip-memory': { type: 'boolean', default: false },
    output: { type: 'string', default: 'bench-results.json' },
  },
});
const N = values.quick ? 200 : Number(values.messages);
const CRLF = '\r\n';

function wrap(b64: string): string {
  return b64.replace(/.{1,76}/g, (l) => l + CRLF);
}

function message(i: number, attachment: Uint8Array, name: string, type: string): Buffer {
  return Buffer.from(
    [
      'From: bench@example.org', 'To: user@example.net', `Subject: quarterly figures ${i}`, `Message-ID: <bench-${i}-${randomBytes(4).toString('hex')}@example.org>`,
      `Date: ${new Date().toUTCString()}`, 'MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary="=_b"', '', '--=_b', 'Content-Type: text/plain; charset=utf-8', '',
      `Hello, the figures for quarter ${i} are attached.`, '', '--=_b', `Content-Type: ${type}; name="${name}"`, 'Content-Transfer-Encoding: base64',
      `Content-Disposition: attachment; filename="${name}"`, '', wrap(Buffer.from(attachment).toString('base64')), '--=_b--', '',
    ].join(CRLF),
  );
}

// ~20 kB on the wire: 14.5 kB of random bytes become ~19.6 kB of base64.
const unique = (i: number) => message(i, randomBytes(14_500), `figures-${i}.pdf`, 'application/pdf');
const wormZip = zipSync({ 'document.pif': new Uint8Array(readFileSync('/usr/share/clamav-testfiles/clam.exe')), 'padding.txt': randomBytes(14_000) }, { level: 0 });
const worm = (i: number) => message(i, wormZip, 'document.zip', 'application/octet-stream');
const outbreak = (i: number) => (i % 5 === 0 ? unique(i) : worm(i));

interface Row {
  mix: string;
  sessions: number;
  target: string;
  perSecond: number;
  p50: number;
  p99: number;
  accepted: number;
  refused: number;
  failed: number;
  connectP50: number;
}

function row(mix: string, sessions: number, target: string, r: LoadResult): Row {
  return {
    mix, sessions, target, perSecond: r.perSecond, p50: percentile(r.latencies, 50), p99: percentile(r.latencies, 99),
    accepted: r.accepted, refused: r.refused, failed: r.failed, connectP50: percentile(r.connectMs, 50),
  };
}

function vmHwmKb(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return { rss: Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]), hwm: Number(/VmHWM:\s+(\d+)/.exec(status)?.[1]) };
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'backstop-bench-'));
  const log = (s: string) => process.stderr.write(s + '\n');
  log(`bench: ${N} messages per 20-session scenario, ${Math.max(50, N / 4)} per 1-session scenario`);
  const clamd = await startClamd({ streamMaxLength: '64M', maxFileSize: '64M', maxScanSize: '256M' });
  const sink = await startSmtpSink(null);
  const backstopConfig = async (name: string, greetingDelayMs: number) => ({
    nodeName: name,
    dataDir: join(dir, name, 'data'),
    smtp: { listen: `127.0.0.1:${await freePort()}`, hostname: 'mx.bench.example', greetingDelayMs, maxClients: 5000 },
    domains: ['example.net'],
    nextHop: `smtp://127.0.0.1:${sink.port}`,
    clamd: clamd.url,
    store: `pglite:${join(dir, name, 'db')}`,
    web: { listen: `127.0.0.1:${await freePort()}` },
    log: { level: 'error' },
  });
  const targets: [string, RunningProcess | { port: number }][] = [['smtp-sink direct', sink]];
  const started: RunningProcess[] = [];
  try {
    const b100 = await startBackstop(join(dir, 'b100'), await backstopConfig('b100', 100));
    const b0 = await startBackstop(join(dir, 'b0'), await backstopConfig('b0', 0));
    started.push(b100, b0);
    targets.push(['Backstop+clamd (greeting delay 100 ms)', b100], ['Backstop+clamd (greeting delay 0)', b0]);
    if (!values['skip-haraka']) {
      const haraka = await startHaraka(join(dir, 'haraka'), clamd.url, sink.port);
      started.push(haraka);
      targets.push(['Haraka 3 + haraka-plugin-clamd', haraka]);
    }

    // Warm up every target (JIT, clamd, connection set-up) before measuring.
    for (const [name, t] of targets) {
      try {
        await runLoad({ port: t.port, sessions: 4, count: 40, message: unique });
      } catch (err) {
        throw new Error(`${name} on port ${t.port} failed during warm-up: ${(err as Error).message}\n${'output' in t ? t.output().slice(-2000) : ''}`);
      }
    }

    const rows: Row[] = [];
    for (const [mix, make] of [['unique', unique], ['outbreak', outbreak]] as const) {
      for (const sessions of [1, 20]) {
        for (const [name, t] of targets) {
          const r = await runLoad({ port: t.port, sessions, count: sessions === 1 ? Math.max(50, N / 4) : N, message: make });
          rows.push(row(mix, sessions, name, r));
          log(`  ${mix.padEnd(8)} ${String(sessions).padStart(2)} sessions  ${name.padEnd(40)} ${r.perSecond.toFixed(0).padStart(6)} msg/s  p50 ${percentile(r.latencies, 50).toFixed(2)} ms  p99 ${percentile(r.latencies, 99).toFixed(2)} ms  (${r.accepted} accepted, ${r.refused} refused, ${r.failed} failed)`);
        }
      }
    }

    // clamd's own time for one unique message, sequentially, for the added-latency comparison.
    const client = new ClamdClient(clamd.url, 30_000);
    const clamdTimes: number[] = [];
    for (let i = 0; i < 200; i++) {
      const raw = unique(i);
      const t0 = process.hrtime.bigint();
      await client.scan(raw);
      clamdTimes.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    const clamdP50 = percentile(clamdTimes, 50);

    const memory = values['skip-memory'] ? null : await measureMemory(dir, backstopConfig, log);

    const get = (mix: string, sessions: number, prefix: string) => rows.find((r) => r.mix === mix && r.sessions === sessions && r.target.startsWith(prefix))!;
    const ratio = (a: number, b: number) => (b > 0 ? a / b : NaN);
    const sink20u = get('unique', 20, 'smtp-sink');
    const bs20u = get('unique', 20, 'Backstop+clamd (greeting delay 0)');
    const bs20o = get('outbreak', 20, 'Backstop+clamd (greeting delay 0)');
    const sink20o = get('outbreak', 20, 'smtp-sink');
    const h20u = values['skip-haraka'] ? null : get('unique', 20, 'Haraka');
    const h20o = values['skip-haraka'] ? null : get('outbreak', 20, 'Haraka');
    const sink1u = get('unique', 1, 'smtp-sink');
    const bs1u = get('unique', 1, 'Backstop+clamd (greeting delay 0)');
    const summary = {
      uniqueThroughputVsHaraka20: h20u ? ratio(bs20u.perSecond, h20u.perSecond) : null,
      outbreakThroughputVsHaraka20: h20o ? ratio(bs20o.perSecond, h20o.perSecond) : null,
      outbreakThroughputVsSink20: ratio(bs20o.perSecond, sink20o.perSecond),
      addedP50Ms1: bs1u.p50 - sink1u.p50,
      addedP99Ms1: bs1u.p99 - sink1u.p99,
      addedP50Ms20: bs20u.p50 - sink20u.p50,
      addedP99Ms20: bs20u.p99 - sink20u.p99,
      clamdOwnP50Ms: clamdP50,
      addedBesideClamdP50Ms1: bs1u.p50 - sink1u.p50 - clamdP50,
      connectP50Delay100Ms: get('unique', 20, 'Backstop+clamd (greeting delay 100').connectP50,
      connectP50Delay0Ms: bs20u.connectP50,
      memory,
    };
    const f = (v: number | null, d = 2) => (v === null || Number.isNaN(v) ? 'n/a' : v.toFixed(d));
    console.log('\nBackstop gateway benchmark (same run, this machine: 2 cores)\n');
    console.log('mix       sessions  target                                      msg/s    p50 ms    p99 ms   accepted refused');
    for (const r of rows) {
      console.log(`${r.mix.padEnd(9)} ${String(r.sessions).padStart(8)}  ${r.target.padEnd(42)} ${r.perSecond.toFixed(0).padStart(6)} ${r.p50.toFixed(2).padStart(9)} ${r.p99.toFixed(2).padStart(9)} ${String(r.accepted).padStart(10)} ${String(r.refused).padStart(7)}`);
    }
    console.log('\nratios (Backstop = greeting delay 0 unless named)                      measured   target');
    console.log(`  unique, 20 sessions: Backstop / Haraka+clamd throughput              ${f(summary.uniqueThroughputVsHaraka20).padStart(8)}   >= 3`);
    console.log(`  outbreak, 20 sessions: Backstop / Haraka+clamd throughput            ${f(summary.outbreakThroughputVsHaraka20).padStart(8)}   >= 3`);
    console.log(`  outbreak, 20 sessions: Backstop / smtp-sink direct throughput        ${f(summary.outbreakThroughputVsSink20).padStart(8)}   >= 0.5`);
    console.log(`  unique, 1 session: added p50 latency vs smtp-sink (ms)               ${f(summary.addedP50Ms1).padStart(8)}`);
    console.log(`  unique, 1 session: clamd's own INSTREAM time p50 (ms)                ${f(summary.clamdOwnP50Ms).padStart(8)}`);
    console.log(`  unique, 1 session: added p50 beside clamd's own time (ms)            ${f(summary.addedBesideClamdP50Ms1).padStart(8)}   < 2`);
    console.log(`  unique, 20 sessions: added p50 / p99 latency vs smtp-sink (ms)       ${f(summary.addedP50Ms20)} / ${f(summary.addedP99Ms20)}`);
    console.log(`  connect to usable session p50, greeting delay 100 ms vs 0 (ms)       ${f(summary.connectP50Delay100Ms)} / ${f(summary.connectP50Delay0Ms)}`);
    if (memory) {
      console.log(`  RSS of an idle node on PostgreSQL / on embedded PGlite (MB)          ${memory.idle1000.baseMb.toFixed(0)} / ${memory.pgliteIdleMb.toFixed(0)}`);
      console.log(`  peak RSS with 1,000 idle connections, PostgreSQL store (MB)         ${memory.idle1000.peakMb.toFixed(0).padStart(8)}`);
      console.log(`  peak RSS receiving one 50 MB message, PostgreSQL store (MB), ${memory.message50mb.code}   ${memory.message50mb.peakMb.toFixed(0).padStart(8)}`);
    }
    writeFileSync(values.output!, JSON.stringify({ messages: N, rows, summary }, null, 2) + '\n');
    log(`\nresults written to ${values.output}`);
  } finally {
    for (const p of started.reverse()) await p.stop();
    await sink.stop();
    await clamd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Samples a process's resident set every 10 ms while work runs; returns the highest seen (kB). */
async function peakRssDuring(pid: number, work: () => Promise<unknown>): Promise<number> {
  let peak = vmHwmKb(pid).rss;
  const timer = setInterval(() => {
    peak = Math.max(peak, vmHwmKb(pid).rss);
  }, 10);
  try {
    await work();
  } finally {
    clearInterval(timer);
  }
  return Math.max(peak, vmHwmKb(pid).rss);
}

/**
 * Memory of the gateway itself, so the nodes use PostgreSQL: embedded PGlite's
 * WASM heap alone is ~500 MB resident, which would hide what connections and
 * messages cost. That baseline is reported on its own.
 */
async function measureMemory(dir: string, backstopConfig: (name: string, delay: number) => Promise<Record<string, unknown>>, log: (s: string) => void) {
  const database = await createTestDatabase('bs_bench');
  const onPostgres = async (name: string) => ({ ...(await backstopConfig(name, 0)), store: database.url });
  try {
    const pgliteNode = await startBackstop(join(dir, 'mem-pglite'), await backstopConfig('mem-pglite', 0));
    const pgliteIdle = vmHwmKb(pgliteNode.child.pid!).rss;
    await pgliteNode.stop();

    const idleNode = await startBackstop(join(dir, 'mem-idle'), await onPostgres('mem-idle'));
    const sockets: Socket[] = [];
    let idleBase: number;
    let idlePeak: number;
    try {
      idleBase = vmHwmKb(idleNode.child.pid!).rss;
      idlePeak = await peakRssDuring(idleNode.child.pid!, async () => {
        await Promise.all(
          Array.from({ length: 1000 }, () =>
            new Promise<void>((resolve, reject) => {
              const s = connect({ port: idleNode.port, host: '127.0.0.1' });
              sockets.push(s);
              s.once('data', () => resolve());
              s.once('error', reject);
            }),
          ),
        );
        await new Promise((r) => setTimeout(r, 1000));
      });
    } finally {
      for (const s of sockets) s.destroy();
      await idleNode.stop();
    }
    log(`  memory: idle node ${(idleBase / 1024).toFixed(0)} MB on PostgreSQL (${(pgliteIdle / 1024).toFixed(0)} MB on PGlite), peak with 1,000 idle connections ${(idlePeak / 1024).toFixed(0)} MB`);

    const bigNode = await startBackstop(join(dir, 'mem-big'), await onPostgres('mem-big'));
    let bigBase: number;
    let bigPeak: number;
    let code = 0;
    try {
      const big = message(0, randomBytes(36 * 1024 * 1024), 'archive.bin', 'application/octet-stream'); // ~50 MB as base64
      bigBase = vmHwmKb(bigNode.child.pid!).rss;
      bigPeak = await peakRssDuring(bigNode.child.pid!, async () => {
        const r = await runLoad({ port: bigNode.port, sessions: 1, count: 1, message: () => big });
        code = r.accepted === 1 ? 250 : r.refused === 1 ? 451 : 0;
      });
      log(`  memory: one ${(big.length / 1e6).toFixed(1)} MB message: ${(bigBase / 1024).toFixed(0)} MB before, peak ${(bigPeak / 1024).toFixed(0)} MB, reply ${code}`);
    } finally {
      await bigNode.stop();
    }
    return {
      pgliteIdleMb: pgliteIdle / 1024,
      idle1000: { baseMb: idleBase / 1024, peakMb: idlePeak / 1024 },
      message50mb: { baseMb: bigBase / 1024, peakMb: bigPeak / 1024, code },
    };
  } finally {
    await database.drop();
  }
}

await main();
