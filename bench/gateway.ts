/*
 * bench/gateway — `npm run bench`: Backstop+clamd against the same load sent
 * straight to Postfix's smtp-sink and through Haraka 3 + haraka-plugin-clamd,
 * all in one run on this machine, printed as same-run ratios. A benchmark,
 * not a test: the targets are printed beside the numbers, never asserted.
 *
 * Load (bench/lib/load.ts, our own pipelining client): 20 kB messages with an
 * attachment, at 1 session and at 20 sessions that reuse their connections;
 * once with every message unique (fresh random attachment bytes per message
 * and per target: no cache can help) and once as an outbreak mix (80% carry
 * the same worm: a .zip holding a .pif that is ClamAV's test executable).
 * Backstop runs twice, with smtp-server's 100 ms early-talker pause
 * (smtp.greetingDelayMs: 100) and with none (0). Haraka runs as shipped and
 * with TCP_NODELAY (see bench/lib/haraka.ts). When PostgreSQL answers at
 * 127.0.0.1:5432, Backstop runs on it too with smtp.workers 1 and 2 (every
 * core: node:cluster, cluster/primary); a target's CPU is its process's and
 * its children's (a primary and its workers), from /proc/PID/stat.
 *
 * Added latency = the gateway's end-of-DATA-to-final-reply percentile minus
 * smtp-sink's, same mix and sessions. clamd's own INSTREAM time for the same
 * kind of message is measured apart, so "added beside clamd" is what the
 * gateway costs on top of the scanner.
 *
 * Memory: VmHWM and sampled VmRSS (/proc/PID/status) of a Backstop process
 * holding 1,000 idle sessions, and of one receiving a 50 MB clean message
 * (streamed through to smtp-sink), on the embedded PGlite store (the default)
 * and on PostgreSQL (when 127.0.0.1:5432 answers): PGlite's WASM heap and
 * start-up are most of an embedded node's memory and would hide what
 * connections and messages cost.
 * Then issue 16's two figures for the embedded default (idle RSS and peak
 * VmHWM of a fresh node, bench/lib/memory.ts, as `npm run bench:memory`),
 * and its CLI start: `backstop --help` and `backstop scan FILE`, median of
 * 10 runs each (bench/lib/cli-start.ts).
 *
 * Everything listens on 127.0.0.1 on ports the kernel picks; every process
 * started here is stopped in `finally`.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpus, loadavg } from 'node:os';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startClamd } from '../src/replay/clamd.ts';
import { freePort, startBackstop, startSmtpSink, type RunningProcess } from '../src/replay/processes.ts';
import { createTestDatabase } from '../test/helpers/pg.ts';
import { instreamMs } from './lib/clamd.ts';
import { installHaraka, startHaraka } from './lib/haraka.ts';
import { mergeLoads, percentile, runLoad, type LoadResult } from './lib/load.ts';
import { makeMessages, message, uniqueMessage, wormMessage, type Mix } from './lib/messages.ts';
import { BenchSession, encodeMessage } from './lib/smtp.ts';
import { cliStartLines, measureCliStart, type CliStart } from './lib/cli-start.ts';
import { mb, measureNode, peakRssDuring, targetLines, vm, type NodeMemory } from './lib/memory.ts';

const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '2000' },
    single: { type: 'string' },
    rounds: { type: 'string', default: '2' },
    warmup: { type: 'string' },
    quick: { type: 'boolean', default: false },
    'skip-haraka': { type: 'boolean', default: false },
    'skip-memory': { type: 'boolean', default: false },
    'skip-cross-check': { type: 'boolean', default: false },
    'haraka-dir': { type: 'string' },
    output: { type: 'string', default: 'bench-results.json' },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log(`usage: npm run bench -- [--messages N] [--single N] [--rounds R] [--quick] [--skip-haraka] [--skip-memory]
                       [--skip-cross-check] [--haraka-dir DIR] [--output FILE]
  --messages N     messages per 20-session scenario (default 2000; --quick: 200)
  --single N       messages per 1-session scenario (default messages/5, at least 50)
  --rounds R       split each scenario into R rounds over all targets, results pooled (default 2)
  --warmup N       warm-up messages per target before any load, half unique, half outbreak (default 1000; --quick: 100)
  --haraka-dir DIR keep Haraka's npm install in DIR and reuse it (default: a temporary folder)
  see bench/README.md`);
  process.exit(0);
}
const positive = (name: string, v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 1_000_000) throw new Error(`--${name} must be a whole number from 1 to 1000000, got "${v}"`);
  return n;
};
const N = values.quick ? 200 : positive('messages', values.messages!);
const N1 = values.single ? positive('single', values.single) : Math.max(50, Math.round(N / 5));
const ROUNDS = positive('rounds', values.rounds!);
const WARMUP = values.warmup ? positive('warmup', values.warmup) : values.quick ? 100 : 1000;
const SESSIONS = [1, 20] as const;
const MIXES: Mix[] = ['unique', 'outbreak'];
const IDLE_CONNECTIONS = 1000;
const log = (s: string) => process.stderr.write(s + '\n');

const SINK = 'smtp-sink direct';
const B100 = 'Backstop+clamd, greeting delay 100 ms';
const B0 = 'Backstop+clamd, greeting delay 0';
/** The same node with the old batching: the reply to DATA before its record is committed (1 s batches). */
const B0_OLD = 'Backstop+clamd, delay 0, reply before commit';
const HARAKA = 'Haraka 3 + clamd plugin';
/** smtp.workers on a PostgreSQL store, greeting delay 0: one process, and a primary with two workers. */
const PG_WORKERS = [1, 2].map((n) => ({ workers: n, name: `Backstop+clamd, PostgreSQL, workers ${n}` }));
const HARAKA_ND = 'Haraka 3 + clamd plugin, TCP_NODELAY';

interface Row {
  mix: Mix;
  sessions: number;
  target: string;
  messages: number;
  perSecond: number;
  vsSink: number;
  dataP50: number;
  dataP99: number;
  addedP50: number;
  addedP99: number;
  txP50: number;
  connectP50: number;
  connectMax: number;
  accepted: number;
  rejected: number;
  otherRefused: number;
  failed: number;
  codes: Record<string, number>;
  pipelining: boolean;
  /** CPU time (user+system) per message during the load, ms: the target's process, clamd, smtp-sink, this client. */
  cpuMsPerMessage: { target: number | null; clamd: number; sink: number; client: number };
  /** Share of the machine's CPUs that processes outside the benchmark used during the loads (0..1). */
  otherCpuShare: number;
  /** How long the machine took to go quiet before each round's load (the previous target's after-work). */
  settleMsBefore: number[];
  /**
   * Backstop: message records per group-commit transaction during the load (its /metrics), null for the others.
   * The reply-first node's last batch of a load may be written after it, and counted with its next load.
   */
  recordsPerCommit: number | null;
}

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

/** utime+stime of a process in ms (/proc/PID/stat fields 14 and 15); children of smtp-sink are not counted. */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
}

/** A process and its children (a cluster primary's workers), as /proc lists them now. */
function processTree(pid: number): number[] {
  const children = readdirSync(`/proc/${pid}/task`).flatMap((t) => readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number));
  return [pid, ...children];
}

/** CPU time used by the whole machine (all processes) in ms: /proc/stat's first line, busy = all but idle and iowait. */
function machineBusyMs(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return ((total - f[3]! - (f[4] ?? 0)) * 1000) / CLK_TCK;
}

function selfCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/**
 * Waits until the given processes have used under 5% of one core for 300 ms
 * running (at most maxMs): a gateway's work after its last reply (batched log
 * writes, background jobs) must not be charged to the next target's load.
 * Returns how long it took.
 */
async function settle(pids: number[], maxMs = 15_000): Promise<number> {
  const t0 = Date.now();
  const total = () => pids.reduce((sum, pid) => sum + cpuMs(pid), 0);
  let quiet = 0;
  let last = total();
  while (Date.now() - t0 < maxMs && quiet < 3) {
    await new Promise((r) => setTimeout(r, 100));
    const now = total();
    quiet = now - last < 5 ? quiet + 1 : 0;
    last = now;
  }
  return Date.now() - t0;
}

/** A Backstop node's group-commit counters from its /metrics (records ÷ commits = records per transaction). */
async function groupCommits(webPort: number): Promise<{ commits: number; records: number }> {
  const text = await (await fetch(`http://127.0.0.1:${webPort}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
  // Default labels (the node name) may follow the metric's name.
  const metric = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)`, 'm').exec(text)?.[1] ?? NaN);
  return { commits: metric('backstop_record_commits_total'), records: metric('backstop_records_committed_total') };
}

const f = (v: number | null | undefined, d = 2) => (v === null || v === undefined || Number.isNaN(v) ? 'n/a' : v.toFixed(d));

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'backstop-bench-'));
  const harakaPrefix = values['haraka-dir'] ?? join(dir, 'haraka-install');
  const started: { stop(): Promise<void> }[] = [];
  try {
    log(`bench: ${N} messages per 20-session scenario, ${N1} per 1-session scenario, ${cpus().length} CPUs`);
    const harakaVersions = values['skip-haraka'] ? null : installHaraka(harakaPrefix, log);

    // Five Backstop nodes (up to scan.clamdConnections = 32 connections each, kept ones included) and Haraka share
    // this clamd: MaxQueue above their sum, as README "clamd" asks of a shared clamd (its default 100 would let
    // the later targets' scans wait for the earlier ones' kept sessions to close).
    const clamd = await startClamd({ streamMaxLength: '64M', maxFileSize: '64M', maxScanSize: '256M', maxQueue: 300 });
    started.push(clamd);
    const clamdVersion = await clamd.version();
    const sink = await startSmtpSink(null);
    started.push(sink);

    const backstopConfig = async (name: string, greetingDelayMs: number, store?: string, workers = 1) => ({
      nodeName: name,
      dataDir: join(dir, name, 'data'),
      smtp: { listen: `127.0.0.1:${await freePort()}`, hostname: 'mx.bench.example', greetingDelayMs, maxClients: 5000, workers },
      domains: ['example.net'],
      nextHop: `smtp://127.0.0.1:${sink.port}`,
      clamd: clamd.url,
      store: store ?? `pglite:${join(dir, name, 'db')}`,
      web: { listen: `127.0.0.1:${await freePort()}` },
      log: { level: 'warn' },
    });

    const targets: { name: string; port: number; proc?: RunningProcess; webPort?: number }[] = [{ name: SINK, port: sink.port }];
    const webPort = (c: { web: { listen: string } }) => Number(c.web.listen.split(':').pop());
    for (const [name, key, delay, env] of [
      [B100, 'b100', 100, {}],
      [B0, 'b0', 0, {}],
      [B0_OLD, 'b0old', 0, { BACKSTOP_BENCH_REPLY_BEFORE_COMMIT: '1' }],
    ] as const) {
      const config = await backstopConfig(key, delay);
      const node = await startBackstop(join(dir, key), config, env);
      started.push(node);
      targets.push({ name, port: node.port, proc: node, webPort: webPort(config) });
    }
    const b0 = targets.find((t) => t.name === B0)!;
    for (const w of PG_WORKERS) {
      const db = await createTestDatabase('bs_bench_workers').catch((err: Error) => {
        log(`  ${w.name}: not measured (no PostgreSQL: ${err.message.split('\n')[0]})`);
        return null;
      });
      if (!db) continue;
      started.push({ stop: () => db.drop() });
      const node = await startBackstop(join(dir, `w${w.workers}`), await backstopConfig(`w${w.workers}`, 0, db.url, w.workers));
      started.push(node);
      targets.push({ name: w.name, port: node.port, proc: node });
    }
    let haraka: RunningProcess | null = null;
    if (harakaVersions) {
      haraka = await startHaraka(harakaPrefix, join(dir, 'haraka'), clamd.url, sink.port);
      started.push(haraka);
      const harakaNd = await startHaraka(harakaPrefix, join(dir, 'haraka-nodelay'), clamd.url, sink.port, { noDelay: true });
      started.push(harakaNd);
      targets.push({ name: HARAKA, port: haraka.port, proc: haraka }, { name: HARAKA_ND, port: harakaNd.port, proc: harakaNd });
    }

    const allPids = () => [clamd.pid, sink.child.pid!, ...targets.flatMap((t) => (t.proc ? processTree(t.proc.child.pid!) : []))];

    // Warm up every target on both mixes before measuring: clamd's engine, the next-hop path, and the JIT —
    // V8 still compiles the hot paths for the first ~1,000 messages (bench/README.md, "Issue 16, second
    // round"), one-off work that a node running for days does not repeat, so the loads measure the steady state.
    for (const t of targets) {
      try {
        for (const mix of MIXES) await runLoad({ port: t.port, sessions: 4, messages: makeMessages(mix, Math.ceil(WARMUP / MIXES.length)) });
      } catch (err) {
        throw new Error(`${t.name} on port ${t.port} failed during warm-up: ${(err as Error).message}\n${t.proc?.output().slice(-2000) ?? ''}`);
      }
    }

    const rows: Row[] = [];
    // Each scenario runs in ROUNDS rounds, every target once per round with its share of
    // the messages, results pooled: a slow stretch of the machine (another process, a
    // GC, a store flush) is spread over all targets instead of landing on one.
    for (const mix of MIXES) {
      for (const sessions of SESSIONS) {
        const total = sessions === 1 ? N1 : N;
        const pooled = new Map<string, { r: LoadResult; cpu: Record<'target' | 'clamd' | 'sink' | 'client' | 'other' | 'wall', number>; settleMs: number[]; commits: { commits: number; records: number } | null }>();
        for (let round = 0; round < ROUNDS; round++) {
          const share = Math.floor(total / ROUNDS) + (round < total % ROUNDS ? 1 : 0);
          for (const t of targets) {
            // Fresh messages for every target: clamd caches clean files by hash across its clients.
            const messages = makeMessages(mix, share);
            const settleMs = await settle(allPids());
            const commitsBefore = t.webPort ? await groupCommits(t.webPort) : null;
            const pids = { target: t.proc ? processTree(t.proc.child.pid!) : [], clamd: clamd.pid, sink: sink.child.pid! };
            const treeMs = (tree: number[]) => tree.reduce((sum, pid) => sum + cpuMs(pid), 0);
            const before = { target: treeMs(pids.target), clamd: cpuMs(pids.clamd), sink: cpuMs(pids.sink), client: selfCpuMs(), machine: machineBusyMs(), wall: Date.now() };
            const r = await runLoad({ port: t.port, sessions, messages });
            const used = {
              target: treeMs(pids.target) - before.target,
              clamd: cpuMs(pids.clamd) - before.clamd,
              sink: cpuMs(pids.sink) - before.sink,
              client: selfCpuMs() - before.client,
              other: 0,
              wall: Date.now() - before.wall,
            };
            // What processes outside this benchmark used meanwhile (other sessions' tests, say).
            used.other = Math.max(0, machineBusyMs() - before.machine - used.target - used.clamd - used.sink - used.client);
            const commitsAfter = t.webPort ? await groupCommits(t.webPort) : null;
            const commits = commitsBefore && commitsAfter ? { commits: commitsAfter.commits - commitsBefore.commits, records: commitsAfter.records - commitsBefore.records } : null;
            const p = pooled.get(t.name);
            if (!p) pooled.set(t.name, { r, cpu: used, settleMs: [settleMs], commits });
            else {
              p.r = mergeLoads(p.r, r);
              for (const k of Object.keys(used) as (keyof typeof used)[]) p.cpu[k] += used[k];
              p.settleMs.push(settleMs);
              if (p.commits && commits) p.commits = { commits: p.commits.commits + commits.commits, records: p.commits.records + commits.records };
            }
            log(`  ${mix.padEnd(8)} ${String(sessions).padStart(2)} sess  round ${round + 1}/${ROUNDS}  ${t.name.padEnd(38)} ${r.perSecond.toFixed(0).padStart(6)} msg/s  end-of-DATA p50 ${f(percentile(r.dataMs, 50))} p99 ${f(percentile(r.dataMs, 99))} max ${f(percentile(r.dataMs, 100))} ms  MAIL to reply max ${f(percentile(r.txMs, 100))} ms  connect p50 ${f(percentile(r.connectMs, 50))} max ${f(percentile(r.connectMs, 100))} ms  ${r.seconds.toFixed(2)} s  ${JSON.stringify(r.codes)}${r.failed ? ` ${r.failed} FAILED` : ''} (quiet after ${settleMs} ms)`);
          }
        }
        const sinkResult = pooled.get(SINK)!.r;
        for (const t of targets) {
          const { r, cpu, settleMs, commits } = pooled.get(t.name)!;
          const dataP50 = percentile(r.dataMs, 50);
          const dataP99 = percentile(r.dataMs, 99);
          rows.push({
            mix, sessions, target: t.name, messages: r.sent, perSecond: r.perSecond,
            vsSink: r.perSecond / sinkResult.perSecond,
            dataP50, dataP99,
            addedP50: dataP50 - percentile(sinkResult.dataMs, 50),
            addedP99: dataP99 - percentile(sinkResult.dataMs, 99),
            txP50: percentile(r.txMs, 50), connectP50: percentile(r.connectMs, 50), connectMax: Math.max(...r.connectMs),
            accepted: r.accepted, rejected: r.rejected, otherRefused: r.otherRefused, failed: r.failed, codes: r.codes, pipelining: r.pipelining,
            cpuMsPerMessage: { target: t.proc ? cpu.target / r.sent : null, clamd: cpu.clamd / r.sent, sink: cpu.sink / r.sent, client: cpu.client / r.sent },
            otherCpuShare: cpu.other / (cpu.wall * cpus().length),
            settleMsBefore: settleMs,
            recordsPerCommit: commits && commits.commits > 0 ? commits.records / commits.commits : null,
          });
        }
      }
    }

    // clamd's own time for the same kinds of message, one at a time on an otherwise idle machine.
    await settle(allPids());
    const [clamdHost, clamdPort] = [clamd.url.slice(6, clamd.url.lastIndexOf(':')), Number(clamd.url.slice(clamd.url.lastIndexOf(':') + 1))];
    const clamdTimes = async (make: (i: number) => Buffer, n: number) => {
      const times: number[] = [];
      let answer = '';
      const messages = Array.from({ length: n }, (_, i) => make(100_000 + i));
      const cpu0 = cpuMs(clamd.pid);
      for (const m of messages) {
        const r = await instreamMs(clamdHost, clamdPort, m);
        times.push(r.ms);
        answer = r.answer;
      }
      // clamd's own CPU for one whole-message INSTREAM of this kind ("clamd alone" in the CPU targets table).
      return { p50: percentile(times, 50), p99: percentile(times, 99), answer, cpuMs: (cpuMs(clamd.pid) - cpu0) / n };
    };
    const clamdUnique = await clamdTimes(uniqueMessage, 200);
    const clamdWorm = await clamdTimes(wormMessage, 200);
    log(`  clamd INSTREAM, one at a time: unique message p50 ${f(clamdUnique.p50)} ms (${clamdUnique.answer}), worm copy p50 ${f(clamdWorm.p50)} ms (${clamdWorm.answer})`);

    const crossCheck = values['skip-cross-check'] ? null : await smtpSourceCrossCheck(dir, [{ name: SINK, port: sink.port }, { name: B0, port: b0.port }]);

    const harakaIdle = haraka && !values['skip-memory'] ? await idleConnections(haraka.child.pid!, haraka.port) : null;
    if (harakaIdle) log(`  memory: Haraka ${f(mb(harakaIdle.baseKb), 0)} MB idle, ${f(mb(harakaIdle.peakKb), 0)} MB with ${IDLE_CONNECTIONS} idle sessions`);
    for (const s of started.splice(0).reverse()) if (s !== clamd && s !== sink) await s.stop();
    started.push(clamd, sink);

    const memory = values['skip-memory'] ? null : await measureMemory(dir, backstopConfig);
    // Issue 16's figures for the embedded default, as `npm run bench:memory` takes them (bench/lib/memory.ts).
    let embedded: NodeMemory | null = null;
    if (!values['skip-memory']) {
      log('  memory, embedded default: fresh node, idle 30 s, 200 messages, restart');
      embedded = await measureNode({ dir: join(dir, 'mem-embedded'), nextHop: `smtp://127.0.0.1:${sink.port}`, clamd: clamd.url, idleSeconds: 30, messages: 200, log }).catch((err) => {
        log(`  memory, embedded default: not measured: ${(err as Error).message.split('\n')[0]}`);
        return null;
      });
    }

    let cliStart: CliStart[] | null = null;
    try {
      cliStart = measureCliStart(dir, clamd.url, values.quick ? 5 : 10);
    } catch (err) {
      log(`  CLI start: not measured: ${(err as Error).message}`);
    }

    // ---- the report ----
    const get = (mix: Mix, sessions: number, target: string) => rows.find((r) => r.mix === mix && r.sessions === sessions && r.target === target) ?? null;
    const ratio = (a: Row | null, b: Row | null) => (a && b && b.perSecond > 0 ? a.perSecond / b.perSecond : NaN);
    const perDelay = (b: string) => ({
      uniqueVsHaraka20: ratio(get('unique', 20, b), get('unique', 20, HARAKA)),
      uniqueVsHarakaNoDelay20: ratio(get('unique', 20, b), get('unique', 20, HARAKA_ND)),
      outbreakVsHaraka20: ratio(get('outbreak', 20, b), get('outbreak', 20, HARAKA)),
      outbreakVsHarakaNoDelay20: ratio(get('outbreak', 20, b), get('outbreak', 20, HARAKA_ND)),
      outbreakVsSink20: ratio(get('outbreak', 20, b), get('outbreak', 20, SINK)),
      uniqueVsSink20: ratio(get('unique', 20, b), get('unique', 20, SINK)),
      addedP50Unique1: get('unique', 1, b)!.addedP50,
      addedP99Unique1: get('unique', 1, b)!.addedP99,
      addedP50BesideClamdUnique1: get('unique', 1, b)!.addedP50 - clamdUnique.p50,
      addedP50Outbreak1: get('outbreak', 1, b)!.addedP50,
      addedP50Unique20: get('unique', 20, b)!.addedP50,
      addedP99Unique20: get('unique', 20, b)!.addedP99,
      addedP50Outbreak20: get('outbreak', 20, b)!.addedP50,
      addedP99Outbreak20: get('outbreak', 20, b)!.addedP99,
      connectP50Sessions20: get('unique', 20, b)!.connectP50,
      connectP50Sessions1: get('unique', 1, b)!.connectP50,
    });
    const durableCost = Object.fromEntries(MIXES.flatMap((mix) => SESSIONS.map((n) => [`${mix}${n}`, 1 - ratio(get(mix, n, B0), get(mix, n, B0_OLD))])));
    const summary = { greetingDelay100: perDelay(B100), greetingDelay0: perDelay(B0), durableReplyCost: durableCost, otherCpuShareMean: rows.reduce((a, r) => a + r.otherCpuShare, 0) / rows.length };

    console.log(`\nBackstop gateway benchmark — same run, ${cpus().length} CPUs, Node ${process.version}, clamd ${clamdVersion}${harakaVersions ? `, Haraka ${harakaVersions.haraka} + haraka-plugin-clamd ${harakaVersions.clamd}` : ''}`);
    console.log(`${N} messages per 20-session scenario, ${N1} per 1-session scenario; ~20 kB each; latencies in ms, end of DATA to final reply\n`);
    console.log('mix       sess  target                                   msg/s  ×sink   p50     p99   +p50    +p99  connect  replies');
    for (const r of rows) {
      console.log(
        `${r.mix.padEnd(9)} ${String(r.sessions).padStart(4)}  ${r.target.padEnd(38)} ${r.perSecond.toFixed(0).padStart(6)} ${f(r.vsSink).padStart(5)} ${f(r.dataP50).padStart(6)} ${f(r.dataP99).padStart(7)} ${(r.target === SINK ? '' : f(r.addedP50)).padStart(6)} ${(r.target === SINK ? '' : f(r.addedP99)).padStart(7)} ${f(r.connectP50, 1).padStart(8)}  ${Object.entries(r.codes).map(([c, n]) => `${n}×${c}`).join(' ')}${r.failed ? ` ${r.failed} lost` : ''}`,
      );
    }
    console.log('\nCPU ms per message (user+system, from /proc; 2 cores = 2,000 ms of CPU per second to share)');
    console.log('mix       sess  target                                   target   clamd    sink  client   sum → msg/s bound   others used');
    for (const r of rows) {
      const c = r.cpuMsPerMessage;
      const sum = (c.target ?? 0) + c.clamd + c.sink + c.client;
      console.log(
        `${r.mix.padEnd(9)} ${String(r.sessions).padStart(4)}  ${r.target.padEnd(38)} ${(c.target === null ? '' : f(c.target)).padStart(7)} ${f(c.clamd).padStart(7)} ${f(c.sink).padStart(7)} ${f(c.client).padStart(7)} ${f(sum).padStart(6)}   ${f((cpus().length * 1000) / sum, 0).padStart(6)}   ${(r.otherCpuShare * 100).toFixed(0).padStart(5)}% of CPUs`,
      );
    }
    printCpuTargets(rows, { unique: clamdUnique.cpuMs, outbreak: clamdWorm.cpuMs });
    printWorkers(rows);
    const otherShare = rows.reduce((a, r) => a + r.otherCpuShare, 0) / rows.length;
    if (otherShare > 0.1) {
      console.log(`\nWARNING: processes outside this benchmark used ${(otherShare * 100).toFixed(0)}% of the CPUs on average during the loads (load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}): the numbers below measure a shared machine; run again when it is quiet.`);
    }
    const s100 = summary.greetingDelay100;
    const s0 = summary.greetingDelay0;
    const line = (label: string, a: number, b: number, target = '', d = 2) => console.log(`  ${label.padEnd(66)} ${f(a, d).padStart(8)} ${f(b, d).padStart(8)}   ${target}`);
    console.log(`\nBackstop+clamd, greeting delay:                                         100 ms        0   target`);
    line('unique, 20 sessions: throughput / Haraka+clamd (as shipped)', s100.uniqueVsHaraka20, s0.uniqueVsHaraka20, '>= 3');
    line('unique, 20 sessions: throughput / Haraka+clamd (TCP_NODELAY)', s100.uniqueVsHarakaNoDelay20, s0.uniqueVsHarakaNoDelay20, '>= 3');
    line('outbreak, 20 sessions: throughput / Haraka+clamd (as shipped)', s100.outbreakVsHaraka20, s0.outbreakVsHaraka20, '>= 3');
    line('outbreak, 20 sessions: throughput / Haraka+clamd (TCP_NODELAY)', s100.outbreakVsHarakaNoDelay20, s0.outbreakVsHarakaNoDelay20, '>= 3');
    line('outbreak, 20 sessions: throughput / smtp-sink direct', s100.outbreakVsSink20, s0.outbreakVsSink20, '>= 0.5');
    line('unique, 20 sessions: throughput / smtp-sink direct', s100.uniqueVsSink20, s0.uniqueVsSink20);
    line('unique, 1 session: added p50 / ms', s100.addedP50Unique1, s0.addedP50Unique1);
    line('unique, 1 session: added p99 / ms', s100.addedP99Unique1, s0.addedP99Unique1);
    line(`unique, 1 session: added p50 beside clamd's own ${f(clamdUnique.p50)} ms / ms`, s100.addedP50BesideClamdUnique1, s0.addedP50BesideClamdUnique1, '< 2');
    line('outbreak, 1 session: added p50 / ms', s100.addedP50Outbreak1, s0.addedP50Outbreak1);
    line('unique, 20 sessions: added p50 / ms', s100.addedP50Unique20, s0.addedP50Unique20);
    line('unique, 20 sessions: added p99 / ms', s100.addedP99Unique20, s0.addedP99Unique20);
    line('outbreak, 20 sessions: added p50 / ms', s100.addedP50Outbreak20, s0.addedP50Outbreak20);
    line('outbreak, 20 sessions: added p99 / ms', s100.addedP99Outbreak20, s0.addedP99Outbreak20);
    line('connect to EHLO reply p50, 1 session / ms', s100.connectP50Sessions1, s0.connectP50Sessions1);
    line('connect to EHLO reply p50, 20 sessions at once / ms', s100.connectP50Sessions20, s0.connectP50Sessions20);
    // Issue 15: what the durable reply (group commit, record before the reply) costs beside the old batching.
    console.log(`\nDurable reply (record committed before the reply, group commit) vs the old batching (reply first), greeting delay 0; target: costs <= 10%`);
    for (const mix of MIXES) {
      for (const sessions of SESSIONS) {
        const durable = get(mix, sessions, B0);
        const old = get(mix, sessions, B0_OLD);
        if (!durable || !old) continue;
        const cost = 1 - durable.perSecond / old.perSecond;
        const cpu = (r: Row) => f(r.cpuMsPerMessage.target);
        console.log(
          `  ${mix.padEnd(9)} ${String(sessions).padStart(2)} sessions: ${durable.perSecond.toFixed(0).padStart(5)} msg/s durable, ${old.perSecond.toFixed(0).padStart(5)} msg/s reply-first: cost ${(cost * 100).toFixed(1).padStart(5)}%  ` +
            `(end-of-DATA p50 ${f(durable.dataP50)} vs ${f(old.dataP50)} ms; gateway CPU ${cpu(durable)} vs ${cpu(old)} ms/msg; durable records per commit ${f(durable.recordsPerCommit, 1)})`,
        );
      }
    }
    console.log(`  clamd's own INSTREAM time, one at a time: unique message p50 ${f(clamdUnique.p50)} / p99 ${f(clamdUnique.p99)} ms; worm copy p50 ${f(clamdWorm.p50)} / p99 ${f(clamdWorm.p99)} ms`);
    if (crossCheck) {
      for (const c of crossCheck) console.log(`  cross-check, Postfix smtp-source -d -s 20 (one message repeated, no pipelining) → ${c.name}: ${f(c.perSecond, 0)} msg/s${c.error ? ` (${c.error})` : ''}`);
    }
    if (memory || harakaIdle) {
      console.log('\nmemory (MB)                                       idle     1,000 idle sessions    one 50 MB message');
      console.log('                                                  RSS      peak RSS   VmHWM       peak RSS   VmHWM  reply');
      for (const m of memory ?? []) {
        if ('error' in m) console.log(`  Backstop, ${m.store.padEnd(38)} n/a: ${m.error}`);
        else
          console.log(
            `  Backstop, ${m.store.padEnd(38)} ${f(mb(m.idle.baseKb), 0).padStart(4)} ${f(mb(m.idle.peakKb), 0).padStart(12)} ${f(mb(m.idle.hwmKb), 0).padStart(7)} ${f(mb(m.big.peakKb), 0).padStart(14)} ${f(mb(m.big.hwmKb), 0).padStart(7)}  ${m.big.code} in ${f(m.big.seconds, 1)} s`,
          );
      }
      if (harakaIdle) console.log(`  Haraka 3 + clamd plugin (for scale)              ${f(mb(harakaIdle.baseKb), 0).padStart(4)} ${f(mb(harakaIdle.peakKb), 0).padStart(12)} ${f(mb(harakaIdle.hwmKb), 0).padStart(7)}`);
      if (embedded) {
        console.log('  embedded default, one fresh node (npm run bench:memory for the whole table); targets (issue 16):');
        for (const line of targetLines(embedded)) console.log(line);
      }
    }
    if (cliStart) console.log(`\n${cliStartLines(cliStart).join('\n')}`);
    writeFileSync(
      values.output!,
      JSON.stringify(
        {
          when: new Date().toISOString(), cpus: cpus().length, node: process.version, clamd: clamdVersion, haraka: harakaVersions,
          messages: { sessions20: N, sessions1: N1 }, rows, clamdOwn: { unique: clamdUnique, worm: clamdWorm }, crossCheck, summary, memory, embedded, harakaIdle, cliStart,
        },
        null,
        2,
      ) + '\n',
    );
    log(`\nresults written to ${values.output}`);
  } finally {
    for (const s of started.reverse()) await s.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Issue 16's CPU targets: Backstop's own CPU per message at most this many ms (a node's processes together). */
const CPU_TARGET_MS: Record<Mix, number> = { unique: 1.0, outbreak: 0.5 };
/** ...and at least this many times less than Haraka's own, same run. */
const VS_HARAKA_TARGET = 6;

/**
 * The CPU-per-message table against issue 16's targets: Backstop's own
 * (greeting delay 0 and 100), Haraka's own and Haraka + its clamd, clamd
 * alone (one whole-message INSTREAM of the same kind, one at a time),
 * smtp-sink (its own CPU when the load goes straight to it) — per mix and
 * session count, with each target met or not.
 */
function printCpuTargets(rows: Row[], clamdAlone: Record<Mix, number>): void {
  const cpu = (mix: Mix, sessions: number, target: string) => rows.find((r) => r.mix === mix && r.sessions === sessions && r.target === target)?.cpuMsPerMessage ?? null;
  const met = (ok: boolean) => (ok ? 'met' : 'NOT met');
  console.log(`\nCPU ms per message against issue 16's targets (Backstop's own <= ${CPU_TARGET_MS.unique} unique, <= ${CPU_TARGET_MS.outbreak} outbreak, and >= ${VS_HARAKA_TARGET}x less than Haraka's own); load average now ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  console.log('mix       sess  Backstop own (delay 0 / 100)  Haraka own  Haraka+clamd  clamd alone  smtp-sink   own target        Haraka own / Backstop own');
  for (const mix of MIXES) {
    for (const sessions of SESSIONS) {
      const b0 = cpu(mix, sessions, B0)?.target ?? NaN;
      const b100 = cpu(mix, sessions, B100)?.target ?? NaN;
      const h = cpu(mix, sessions, HARAKA);
      const harakaOwn = h?.target ?? NaN;
      const ratio = harakaOwn / b0;
      console.log(
        `${mix.padEnd(9)} ${String(sessions).padStart(4)}  ${`${f(b0)} / ${f(b100)}`.padStart(28)} ${f(harakaOwn).padStart(11)} ${f(h ? harakaOwn + h.clamd : NaN).padStart(13)} ${f(clamdAlone[mix]).padStart(12)} ${f(cpu(mix, sessions, SINK)?.sink).padStart(10)}   ${`<= ${CPU_TARGET_MS[mix].toFixed(1)} ${met(b0 <= CPU_TARGET_MS[mix])}`.padEnd(16)}  ${Number.isNaN(ratio) ? 'n/a (no Haraka)' : `${f(ratio, 1)}x, >= ${VS_HARAKA_TARGET}: ${met(ratio >= VS_HARAKA_TARGET)}`}`,
      );
    }
  }
}

/** smtp.workers 1 and 2 on PostgreSQL side by side: msg/s and the CPU per message of the primary and all workers together. */
function printWorkers(rows: Row[]): void {
  const get = (mix: Mix, sessions: number, target: string) => rows.find((r) => r.mix === mix && r.sessions === sessions && r.target === target);
  if (!get('unique', 20, PG_WORKERS[0]!.name)) return;
  console.log(`\nEvery core: Backstop on PostgreSQL, smtp.workers 1 and 2 (greeting delay 0; CPU = primary + workers + their children, /proc); load average now ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  console.log('mix       sess   workers 1: msg/s  own ms/msg    workers 2: msg/s  own ms/msg    msg/s 2 / 1   clamd ms/msg (1 / 2)');
  for (const mix of MIXES) {
    for (const sessions of SESSIONS) {
      const [one, two] = PG_WORKERS.map((w) => get(mix, sessions, w.name));
      if (!one || !two) continue;
      console.log(
        `${mix.padEnd(9)} ${String(sessions).padStart(4)}   ${one.perSecond.toFixed(0).padStart(16)} ${f(one.cpuMsPerMessage.target).padStart(11)}    ${two.perSecond.toFixed(0).padStart(16)} ${f(two.cpuMsPerMessage.target).padStart(11)}    ${f(two.perSecond / one.perSecond).padStart(11)}   ${f(one.cpuMsPerMessage.clamd)} / ${f(two.cpuMsPerMessage.clamd)}`,
      );
    }
  }
}

/** Opens IDLE_CONNECTIONS sessions (greeting and EHLO each), holds them 2 s; RSS before, sampled peak, VmHWM. */
async function idleConnections(pid: number, port: number) {
  const baseKb = vm(pid).rssKb;
  const sessions: BenchSession[] = [];
  try {
    const peakKb = await peakRssDuring(pid, async () => {
      for (let i = 0; i < IDLE_CONNECTIONS; i += 100) {
        const batch = await Promise.all(Array.from({ length: Math.min(100, IDLE_CONNECTIONS - i) }, () => BenchSession.open(port, { timeoutMs: 30_000 })));
        sessions.push(...batch.map((b) => b.session));
      }
      await new Promise((r) => setTimeout(r, 2000));
    });
    return { baseKb, peakKb, hwmKb: vm(pid).hwmKb, sessions: sessions.length };
  } finally {
    for (const s of sessions) s.destroy();
  }
}

type MemoryResult =
  | { store: string; error: string }
  | {
      store: string;
      idle: { baseKb: number; peakKb: number; hwmKb: number; sessions: number };
      big: { bytes: number; baseKb: number; peakKb: number; hwmKb: number; code: number; seconds: number };
    };

/** Backstop's memory on each store; each measurement on a fresh node so one peak does not hide the other. */
async function measureMemory(dir: string, backstopConfig: (name: string, delay: number, store?: string) => Promise<Record<string, unknown>>): Promise<MemoryResult[]> {
  // ~50 MB on the wire: 36 MiB of random bytes as base64 lines (under the default 50 MiB maxMessageBytes).
  const big = encodeMessage(message(0, randomBytes(36 * 1024 * 1024), 'archive.bin', 'application/octet-stream'));
  const results: MemoryResult[] = [];
  const stores: { label: string; url: () => Promise<{ url: string; drop(): Promise<void> } | null> }[] = [
    { label: 'embedded PGlite store (default)', url: async () => null },
    { label: 'PostgreSQL store', url: () => createTestDatabase('bs_bench') },
  ];
  for (const [n, s] of stores.entries()) {
    let db: { url: string; drop(): Promise<void> } | null = null;
    try {
      db = await s.url();
      const idleNode = await startBackstop(join(dir, `mem${n}-idle`), await backstopConfig(`mem${n}-idle`, 100, db?.url));
      let idle;
      try {
        idle = await idleConnections(idleNode.child.pid!, idleNode.port);
      } finally {
        await idleNode.stop();
      }
      const bigNode = await startBackstop(join(dir, `mem${n}-big`), await backstopConfig(`mem${n}-big`, 0, db?.url));
      let bigResult;
      try {
        const pid = bigNode.child.pid!;
        const baseKb = vm(pid).rssKb;
        let code = 0;
        const t0 = process.hrtime.bigint();
        const peakKb = await peakRssDuring(pid, async () => {
          const { session } = await BenchSession.open(bigNode.port, { timeoutMs: 300_000 });
          try {
            code = (await session.transaction('bench@example.org', 'user@example.net', big)).code;
          } finally {
            await session.quit();
          }
        });
        bigResult = { bytes: big.length, baseKb, peakKb, hwmKb: vm(pid).hwmKb, code, seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
      } finally {
        await bigNode.stop();
      }
      results.push({ store: s.label, idle, big: bigResult });
      log(`  memory, ${s.label}: idle ${f(mb(idle.baseKb), 0)} MB, ${IDLE_CONNECTIONS} idle sessions peak ${f(mb(idle.peakKb), 0)} MB; ${(big.length / 1e6).toFixed(1)} MB message: reply ${bigResult.code}, peak ${f(mb(bigResult.peakKb), 0)} MB`);
    } catch (err) {
      results.push({ store: s.label, error: (err as Error).message.split('\n')[0]! });
      log(`  memory, ${s.label}: not measured: ${(err as Error).message.split('\n')[0]}`);
    } finally {
      await db?.drop().catch(() => {});
    }
  }
  return results;
}

/**
 * Postfix's smtp-source as a second client: 20 sessions, connections reused
 * (-d), one ~20 kB message file repeated N times. No pipelining, and the same
 * message each time (caches help), so it checks our client's numbers for
 * smtp-sink rather than replacing them.
 */
async function smtpSourceCrossCheck(dir: string, targets: { name: string; port: number }[]) {
  const file = join(dir, 'cross-check.eml');
  writeFileSync(file, uniqueMessage(0).toString('latin1').replace(/\r\n/g, '\n'));
  const out: { name: string; perSecond: number; error?: string }[] = [];
  for (const t of targets) {
    const t0 = process.hrtime.bigint();
    const error = await new Promise<string | undefined>((resolve) => {
      execFile(
        '/usr/sbin/smtp-source',
        ['-d', '-s', '20', '-m', String(N), '-F', file, '-f', 'bench@example.org', '-t', 'user@example.net', '-M', 'bench.example.org', `127.0.0.1:${t.port}`],
        { timeout: 600_000 },
        (err, _stdout, stderr) => resolve(err ? `${err.message.split('\n')[0]} ${stderr.trim().split('\n').pop() ?? ''}` : undefined),
      );
    });
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    out.push({ name: t.name, perSecond: N / seconds, ...(error ? { error } : {}) });
  }
  return out;
}

await main();
