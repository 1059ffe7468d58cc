/*
 * bench/lib/memory — what a Backstop node costs in memory, read from the
 * outside: /proc/PID/status (VmRSS now, VmHWM the lifetime high-water mark),
 * and the node's own /metrics for the split (V8 heap, external memory — where
 * PGlite's WASM linear memory is counted).
 *
 * `measureNode()` walks the life of one node the way a new user meets it:
 * start on a fresh data directory (the embedded store creates its database:
 * initdb and the migrations), idle, take N messages, idle again; then starts
 * a second node on the same directory (the database exists: the everyday
 * restart). VmHWM is exact, not sampled: the kernel keeps it.
 *
 * Trusts only the processes it started; a benchmark, so nothing is asserted:
 * the targets are printed beside the figures.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, startBackstop } from '../../src/replay/processes.ts';
import { BenchSession, encodeMessage } from './smtp.ts';
import { uniqueMessage } from './messages.ts';

/** Issue 16's targets for the embedded default, MB. */
export const MEMORY_TARGETS = { idleMb: 200, peakMb: 400 } as const;

export function vm(pid: number): { rssKb: number; hwmKb: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return { rssKb: Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]), hwmKb: Number(/VmHWM:\s+(\d+)/.exec(status)?.[1]) };
}

/** Samples a process's VmRSS every 10 ms while work runs; returns the highest seen (kB). */
export async function peakRssDuring(pid: number, work: () => Promise<unknown>): Promise<number> {
  let peak = vm(pid).rssKb;
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, vm(pid).rssKb);
    } catch {
      // the process is gone; the error shows elsewhere
    }
  }, 10);
  try {
    await work();
  } finally {
    clearInterval(timer);
  }
  return Math.max(peak, vm(pid).rssKb);
}

export const mb = (kb: number) => kb / 1024;

export interface Snapshot {
  rssMb: number;
  hwmMb: number;
  /** From the node's /metrics; null when it did not answer. */
  heapUsedMb: number | null;
  externalMb: number | null;
}

async function snapshot(pid: number, webPort: number): Promise<Snapshot> {
  const { rssKb, hwmKb } = vm(pid);
  let heapUsedMb: number | null = null;
  let externalMb: number | null = null;
  try {
    const text = await (await fetch(`http://127.0.0.1:${webPort}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
    // Default labels (the node name) may follow the metric's name.
    const metric = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)`, 'm').exec(text)?.[1] ?? NaN) / 2 ** 20;
    heapUsedMb = metric('backstop_process_nodejs_heap_size_used_bytes');
    externalMb = metric('backstop_process_nodejs_external_memory_bytes');
  } catch {
    // /metrics is a convenience for the split; RSS and HWM are the figures
  }
  // Read /proc after the scrape too: the scrape itself must not be the high-water mark we miss.
  const after = vm(pid);
  return { rssMb: mb(Math.max(rssKb, after.rssKb)), hwmMb: mb(Math.max(hwmKb, after.hwmKb)), heapUsedMb, externalMb };
}

export interface NodeMemory {
  store: string;
  /** Right after the SMTP port answers; hwmMb is the start-up peak (database creation included on a fresh directory). */
  ready: Snapshot;
  idle: Snapshot;
  messages: { count: number; replies: Record<string, number>; seconds: number; after: Snapshot };
  idleAfter: Snapshot;
  /** A second node on the same data directory: the database exists. */
  restart: { ready: Snapshot; idle: Snapshot };
}

export interface MeasureOptions {
  dir: string;
  nextHop: string;
  clamd?: string;
  /** Default: the embedded PGlite store in dir. */
  store?: string;
  idleSeconds: number;
  messages: number;
  log?: (line: string) => void;
  env?: Record<string, string>;
}

export async function measureNode(o: MeasureOptions): Promise<NodeMemory> {
  const log = o.log ?? (() => {});
  const store = o.store ?? `pglite:${join(o.dir, 'db')}`;
  const config = async () => ({
    nodeName: 'mem',
    dataDir: join(o.dir, 'data'),
    // One process: the figures are one node process's (on PostgreSQL the default would be a primary and a worker per core).
    smtp: { listen: `127.0.0.1:${await freePort()}`, hostname: 'mx.bench.example', workers: 1 },
    domains: ['example.net'],
    nextHop: o.nextHop,
    ...(o.clamd ? { clamd: o.clamd } : {}),
    store,
    web: { listen: `127.0.0.1:${await freePort()}` },
    log: { level: 'warn' },
  });
  const webPort = (c: { web: { listen: string } }) => Number(c.web.listen.split(':').pop());
  const sleep = (s: number) => new Promise((r) => setTimeout(r, s * 1000));

  const c1 = await config();
  const node = await startBackstop(join(o.dir, 'node1'), c1, o.env);
  let result: Omit<NodeMemory, 'restart'>;
  try {
    const pid = node.child.pid!;
    const ready = await snapshot(pid, webPort(c1));
    log(`    ready: RSS ${ready.rssMb.toFixed(0)} MB, VmHWM ${ready.hwmMb.toFixed(0)} MB`);
    await sleep(o.idleSeconds);
    const idle = await snapshot(pid, webPort(c1));
    log(`    idle ${o.idleSeconds} s: RSS ${idle.rssMb.toFixed(0)} MB`);
    const bodies = Array.from({ length: o.messages }, (_, i) => encodeMessage(uniqueMessage(i)));
    const replies: Record<string, number> = {};
    const t0 = process.hrtime.bigint();
    const { session } = await BenchSession.open(node.port, { timeoutMs: 60_000 });
    try {
      for (const body of bodies) {
        const { code } = await session.transaction('bench@example.org', 'user@example.net', body);
        replies[code] = (replies[code] ?? 0) + 1;
      }
    } finally {
      await session.quit();
    }
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const after = await snapshot(pid, webPort(c1));
    log(`    ${o.messages} messages (${JSON.stringify(replies)}): RSS ${after.rssMb.toFixed(0)} MB, VmHWM ${after.hwmMb.toFixed(0)} MB`);
    await sleep(Math.min(o.idleSeconds, 10));
    const idleAfter = await snapshot(pid, webPort(c1));
    result = { store, ready, idle, messages: { count: o.messages, replies, seconds, after }, idleAfter };
  } finally {
    await node.stop();
  }

  const c2 = await config();
  const again = await startBackstop(join(o.dir, 'node2'), c2, o.env);
  try {
    const pid = again.child.pid!;
    const ready = await snapshot(pid, webPort(c2));
    await sleep(Math.min(o.idleSeconds, 10));
    const idle = await snapshot(pid, webPort(c2));
    log(`    restart on the same directory: VmHWM ${ready.hwmMb.toFixed(0)} MB, idle RSS ${idle.rssMb.toFixed(0)} MB`);
    return { ...result, restart: { ready, idle } };
  } finally {
    await again.stop();
  }
}

/** The two figures issue 16 targets, from one fresh node: idle RSS, and the highest VmHWM of its life. */
export function targetFigures(m: NodeMemory): { idleMb: number; peakMb: number } {
  return { idleMb: m.idle.rssMb, peakMb: Math.max(m.ready.hwmMb, m.messages.after.hwmMb, m.idleAfter.hwmMb) };
}

export function targetLines(m: NodeMemory): string[] {
  const { idleMb, peakMb } = targetFigures(m);
  const line = (what: string, value: number, target: number) =>
    `  ${what.padEnd(44)} ${value.toFixed(0).padStart(5)} MB   target ≤ ${target} MB   ${(value / target).toFixed(2)}× the target: ${value <= target ? 'met' : 'NOT met'}`;
  return [line('idle RSS, fresh node after its idle wait', idleMb, MEMORY_TARGETS.idleMb), line('peak (VmHWM: creation, start, messages)', peakMb, MEMORY_TARGETS.peakMb)];
}
