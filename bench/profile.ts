/*
 * bench/profile — where a Backstop node spends its CPU under the bench's load.
 *
 * Starts the bench's pieces (private clamd, smtp-sink, one Backstop node run
 * with `node --cpu-prof`), warms it up, sends one mix at S sessions, stops the
 * node (SIGTERM: it exits normally, so V8 writes the .cpuprofile), and prints
 * the functions with the most self time and the files they live in
 * (bench/lib/cpuprofile.ts). Not part of `npm run bench`; a tool for the
 * engineer chasing the bench's targets.
 *
 *   node --import tsx bench/profile.ts [--mix unique|outbreak] [--sessions 20] [--messages 2000] [--top 40] [--no-profile] [--syscalls]
 *
 * It also prints the node's own CPU (utime+stime from /proc) per message
 * during the load; --no-profile leaves the profiler out of that figure.
 * --syscalls attaches `strace -c -f` for the load and prints the node's
 * system calls per message (writes, reads, all): a count that, unlike CPU
 * time on a shared machine, does not move with the load of other processes.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startClamd } from '../src/replay/clamd.ts';
import { stringify } from 'yaml';
import { freePort, startSmtpSink, waitForPort } from '../src/replay/processes.ts';
import { summariseProfile } from './lib/cpuprofile.ts';
import { percentile, runLoad } from './lib/load.ts';
import { makeMessages, type Mix } from './lib/messages.ts';

const { values } = parseArgs({
  options: {
    mix: { type: 'string', default: 'outbreak' },
    sessions: { type: 'string', default: '20' },
    messages: { type: 'string', default: '2000' },
    top: { type: 'string', default: '40' },
    'no-profile': { type: 'boolean', default: false },
    syscalls: { type: 'boolean', default: false },
    perf: { type: 'boolean', default: false },
    warmup: { type: 'string', default: '200' },
  },
});

const dir = mkdtempSync(join(tmpdir(), 'backstop-profile-'));
const profDir = join(dir, 'prof');
const clamd = await startClamd({ streamMaxLength: '64M', maxFileSize: '64M', maxScanSize: '256M' });
const sink = await startSmtpSink(null);
const port = await freePort();
mkdirSync(join(dir, 'b'), { recursive: true });
const configFile = join(dir, 'b', 'backstop.yaml');
writeFileSync(
  configFile,
  stringify({
    nodeName: 'profile',
    dataDir: join(dir, 'b', 'data'),
    smtp: { listen: `127.0.0.1:${port}`, hostname: 'mx.bench.example', greetingDelayMs: 0, maxClients: 5000 },
    domains: ['example.net'],
    nextHop: `smtp://127.0.0.1:${sink.port}`,
    clamd: clamd.url,
    store: `pglite:${join(dir, 'b', 'db')}`,
    web: { listen: `127.0.0.1:${await freePort()}` },
    log: { level: 'warn' },
  }),
);
// --cpu-prof is not allowed in NODE_OPTIONS: the node is started here rather than by startBackstop.
const bin = new URL('../bin/backstop.js', import.meta.url).pathname;
const flags = [...(values['no-profile'] ? [] : ['--cpu-prof', `--cpu-prof-dir=${profDir}`]), ...(values.perf ? ['--perf-basic-prof-only-functions', '--interpreted-frames-native-stack'] : [])];
const child = spawn(process.execPath, [...flags, bin, 'serve', '--config', configFile], { stdio: ['ignore', 'inherit', 'inherit'] });
const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
await waitForPort(port, '127.0.0.1', 60_000);
const node = {
  port,
  async stop() {
    child.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  },
};
const CLK_TCK = 100; // Linux's USER_HZ on every architecture Node runs on
/** utime+stime of a process in ms (/proc/PID/stat fields 14 and 15). */
const cpuMs = (pid: number) => {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
};
const window = { fromUs: 0, toUs: 0 };
try {
  await runLoad({ port: node.port, sessions: 4, messages: makeMessages(values.mix as Mix, Number(values.warmup)) });
  const messages = makeMessages(values.mix as Mix, Number(values.messages));
  const straceOut = join(dir, 'strace.txt');
  const strace = values.syscalls ? spawn('strace', ['-f', '-c', '-o', straceOut, '-p', String(child.pid)], { stdio: 'ignore' }) : null;
  const perfData = join(dir, 'perf.data');
  const perf = values.perf ? spawn('perf', ['record', '-q', '-e', 'cpu-clock', '-F', '2000', '-g', '-o', perfData, '-p', String(child.pid)], { stdio: 'ignore' }) : null;
  if (strace || perf) await new Promise((r) => setTimeout(r, 1000)); // attached to every thread before the clock starts
  const cpu0 = cpuMs(child.pid!);
  window.fromUs = Number(process.hrtime.bigint() / 1000n);
  const r = await runLoad({ port: node.port, sessions: Number(values.sessions), messages });
  window.toUs = Number(process.hrtime.bigint() / 1000n);
  const perMessage = (cpuMs(child.pid!) - cpu0) / r.sent;
  console.log(`${values.mix} ${values.sessions} sessions: ${r.perSecond.toFixed(0)} msg/s, end-of-DATA p50 ${percentile(r.dataMs, 50).toFixed(2)} p99 ${percentile(r.dataMs, 99).toFixed(2)} max ${percentile(r.dataMs, 100).toFixed(2)} ms, MAIL to final reply max ${percentile(r.txMs, 100).toFixed(2)} ms ${JSON.stringify(r.codes)}`);
  if (perf) {
    const stopped = new Promise((r) => perf.once('exit', r));
    perf.kill('SIGINT');
    await stopped;
    console.log(`perf record (on-CPU samples only, kernel included): perf report -i ${perfData} --no-children --sort sym`);
  }
  if (strace) {
    const stopped = new Promise((r) => strace.once('exit', r));
    strace.kill('SIGINT');
    await stopped;
    console.log(syscallsPerMessage(readFileSync(straceOut, 'utf8'), r.sent));
  }
  console.log(`Backstop's own CPU (user+system, /proc) ${perMessage.toFixed(2)} ms per message${values['no-profile'] ? '' : ' (under --cpu-prof: the profiler adds its own)'}; load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
} finally {
  await node.stop();
  await sink.stop();
  await clamd.stop();
}
/** strace -c's table as calls per message: the socket writes, the reads, every call. */
function syscallsPerMessage(table: string, messages: number): string {
  const calls = new Map<string, number>();
  for (const line of table.split('\n')) {
    const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$/.exec(line);
    if (m && m[2] !== 'total') calls.set(m[2]!, Number(m[1]));
  }
  const per = (names: string[]) => (names.reduce((a, n) => a + (calls.get(n) ?? 0), 0) / messages).toFixed(2);
  const each = [...calls].sort((a, b) => b[1] - a[1]).map(([n, c]) => `${n} ${(c / messages).toFixed(2)}`);
  return `system calls per message (strace -c -f, the load only): write+writev ${per(['write', 'writev'])}, read ${per(['read'])}, epoll_wait ${per(['epoll_wait', 'epoll_pwait'])}, all ${per([...calls.keys()])}\n  each: ${each.join(', ')}`;
}

if (!values['no-profile']) {
  // The main thread's profile (the other one is tsx's loader thread).
  const files = readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile')).sort().slice(0, 1);
  for (const f of files) {
    console.log(`\n${join(profDir, f)}`);
    console.log(summariseProfile(join(profDir, f), Number(values.top), window));
  }
}
