/*
 * bench/milter — the milter path, in one run on this machine: the same load
 * to three private Postfix instances that differ only in smtpd_milters —
 * none (Postfix alone), Backstop's milter role, and Debian's clamav-milter —
 * all three on the same clamd, all relaying to one smtp-sink. Prints
 * msg/s and end-of-DATA latency per target and the ratios between them.
 *
 * Measurement, not a test: nothing is asserted. Postfix's queue drains into
 * the sink between runs so one target's backlog never lands on the next.
 */
import { execFile, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { startClamd } from '../src/replay/clamd.ts';
import { startPostfix, type PostfixInstance } from '../src/replay/postfix.ts';
import { freePort, startBackstop, startSmtpSink, waitForPort } from '../src/replay/processes.ts';
import { mergeLoads, percentile, runLoad, type LoadResult } from './lib/load.ts';
import { makeMessages, type Mix } from './lib/messages.ts';

const run = promisify(execFile);
const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '600' },
    rounds: { type: 'string', default: '2' },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log('npm run bench:milter -- [--messages N (per 20-session scenario, default 600)] [--rounds R (default 2)]\nNeeds Debian clamav-milter.');
  process.exit(0);
}
const N = Number(values.messages);
const ROUNDS = Number(values.rounds);
const log = (s: string) => process.stderr.write(`${s}\n`);
const f = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : '—');

async function startClamavMilter(dir: string, clamdUrl: string): Promise<{ port: number; stop(): Promise<void> }> {
  const port = await freePort();
  const conf = join(dir, 'clamav-milter.conf');
  const clamd = clamdUrl.replace(/^tcp:\/\//, 'tcp:');
  writeFileSync(
    conf,
    [
      `MilterSocket inet:${port}@127.0.0.1`,
      `ClamdSocket ${clamd}`,
      'Foreground yes',
      'User root',
      `PidFile ${join(dir, 'clamav-milter.pid')}`,
      `TemporaryDirectory ${dir}`,
      'OnClean Accept',
      'OnInfected Reject',
      'OnFail Defer',
      'AddHeader No',
      'MaxFileSize 25M',
      'ReadTimeout 120',
      `LogFile ${join(dir, 'clamav-milter.log')}`,
      '',
    ].join('\n'),
  );
  const child = spawn('/usr/sbin/clamav-milter', ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  try {
    await waitForPort(port, '127.0.0.1', 30_000);
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`clamav-milter did not start: ${(err as Error).message}\n${out}`);
  }
  return {
    port,
    stop: () =>
      new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

async function drained(pf: PostfixInstance, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (/Mail queue is empty/.test(await pf.queue())) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  log('  (queue not drained in time)');
}

interface Row {
  mix: Mix;
  sessions: number;
  target: string;
  r: LoadResult;
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'backstop-bench-milter-'));
  // Postfix's smtpd runs as user postfix: it must reach the unix socket inside.
  chmodSync(dir, 0o755);
  const stops: (() => Promise<void>)[] = [];
  try {
    const clamd = await startClamd({ streamMaxLength: '64M', maxFileSize: '64M', maxScanSize: '256M' });
    stops.push(() => clamd.stop());
    const sink = await startSmtpSink(null);
    stops.push(() => sink.stop());
    const milterPort = await freePort();
    const backstop = await startBackstop(join(dir, 'backstop'), {
      nodeName: 'bench-milter',
      dataDir: join(dir, 'backstop', 'data'),
      smtp: { listen: `127.0.0.1:${await freePort()}`, hostname: 'mx.bench.example', greetingDelayMs: 0 },
      web: { listen: `127.0.0.1:${await freePort()}` },
      domains: ['example.net'],
      nextHop: 'smtp://127.0.0.1:1',
      clamd: clamd.url,
      store: `pglite:${join(dir, 'backstop', 'db')}`,
      milter: { listen: `inet:127.0.0.1:${milterPort}` },
      log: { level: 'warn' },
    });
    stops.push(() => backstop.stop());
    // The same node's configuration on a unix socket: no TCP, so no Nagle/delayed-ACK stall between Postfix's packets.
    const socketPath = join(dir, 'backstop-unix', 'milter.sock');
    const backstopUnix = await startBackstop(join(dir, 'backstop-unix'), {
      nodeName: 'bench-milter-unix',
      dataDir: join(dir, 'backstop-unix', 'data'),
      smtp: { listen: `127.0.0.1:${await freePort()}`, hostname: 'mx.bench.example', greetingDelayMs: 0 },
      web: { listen: `127.0.0.1:${await freePort()}` },
      domains: ['example.net'],
      nextHop: 'smtp://127.0.0.1:1',
      clamd: clamd.url,
      store: `pglite:${join(dir, 'backstop-unix', 'db')}`,
      milter: { listen: `unix:${socketPath}`, socketMode: '0666' },
      log: { level: 'warn' },
    });
    stops.push(() => backstopUnix.stop());
    const clamavMilter = await startClamavMilter(dir, clamd.url);
    stops.push(() => clamavMilter.stop());
    const postfixWith = async (milter: string | null) => {
      const pf = await startPostfix({
        relayhost: `[127.0.0.1]:${sink.port}`,
        relay_domains: 'example.net',
        ...(milter ? { smtpd_milters: milter, milter_default_action: 'tempfail', milter_protocol: '6' } : {}),
        // Delivery to the sink as fast as it comes in, so the queue does not grow between runs.
        queue_run_delay: '1s',
      });
      stops.push(() => pf.stop());
      return pf;
    };
    const targets = [
      { name: 'Postfix alone', pf: await postfixWith(null) },
      { name: 'Postfix + Backstop milter', pf: await postfixWith(`inet:127.0.0.1:${milterPort}`) },
      { name: 'Postfix + Backstop milter (unix)', pf: await postfixWith(`unix:${socketPath}`) },
      { name: 'Postfix + clamav-milter', pf: await postfixWith(`inet:127.0.0.1:${clamavMilter.port}`) },
    ];
    for (const t of targets) {
      const r = await runLoad({ port: t.pf.port, sessions: 4, messages: makeMessages('unique', 60) });
      if (r.accepted === 0) throw new Error(`${t.name}: warm-up accepted nothing: ${JSON.stringify(r.codes)}\n${t.pf.log().slice(-2000)}`);
      await drained(t.pf);
    }
    const rows: Row[] = [];
    const scenarios: [Mix, number, number][] = [['unique', 20, N], ['outbreak', 20, N], ['unique', 1, Math.max(50, Math.floor(N / 5))]];
    for (const [mix, sessions, total] of scenarios) {
      const pooled = new Map<string, LoadResult>();
      for (let round = 0; round < ROUNDS; round++) {
        const share = Math.floor(total / ROUNDS);
        for (const t of targets) {
          const r = await runLoad({ port: t.pf.port, sessions, messages: makeMessages(mix, share) });
          log(`  ${mix.padEnd(8)} ${String(sessions).padStart(2)} sess round ${round + 1}/${ROUNDS} ${t.name.padEnd(34)} ${f(r.perSecond, 0).padStart(5)} msg/s  p50 ${f(percentile(r.dataMs, 50))} ms  ${JSON.stringify(r.codes)}`);
          pooled.set(t.name, pooled.has(t.name) ? mergeLoads(pooled.get(t.name)!, r) : r);
          await drained(t.pf);
        }
      }
      for (const t of targets) rows.push({ mix, sessions, target: t.name, r: pooled.get(t.name)! });
    }
    const { stdout: clamdVersion } = await run('clamd', ['--version']);
    const { stdout: cmVersion } = await run('/usr/sbin/clamav-milter', ['--version']);
    const { stdout: pfVersion } = await run('/usr/sbin/postconf', ['-c', join(targets[0]!.pf.dir, 'etc'), '-h', 'mail_version']);
    console.log(`\nMilter path — same run, ${cpus().length} CPUs, load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}, Node ${process.version}, Postfix ${pfVersion.trim()}, ${clamdVersion.trim()}, ${cmVersion.trim()}`);
    console.log('~20 kB messages; end-of-DATA latency in ms (Postfix\'s reply after the milter answered)\n');
    console.log('mix       sess  target                        msg/s  ×alone    p50     p99  replies');
    for (const row of rows) {
      const alone = rows.find((x) => x.mix === row.mix && x.sessions === row.sessions && x.target === 'Postfix alone')!;
      console.log(
        `${row.mix.padEnd(9)} ${String(row.sessions).padStart(4)}  ${row.target.padEnd(34)} ${f(row.r.perSecond, 0).padStart(6)}  ${f(row.r.perSecond / alone.r.perSecond, 2).padStart(6)}  ${f(percentile(row.r.dataMs, 50)).padStart(6)}  ${f(percentile(row.r.dataMs, 99)).padStart(6)}  ${JSON.stringify(row.r.codes)}`,
      );
    }
    console.log('\nBackstop milter / clamav-milter throughput:');
    for (const [mix, sessions] of scenarios) {
      const get = (name: string) => rows.find((x) => x.mix === mix && x.sessions === sessions && x.target === name)!.r.perSecond;
      console.log(`  ${mix}, ${sessions} session(s): inet ${f(get('Postfix + Backstop milter') / get('Postfix + clamav-milter'), 2)}×, unix socket ${f(get('Postfix + Backstop milter (unix)') / get('Postfix + clamav-milter'), 2)}×`);
    }
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => {});
  }
}

await main();
