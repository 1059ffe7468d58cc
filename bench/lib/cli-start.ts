/*
 * bench/lib/cli-start — how long the `backstop` command takes to start and
 * finish, the way an operator types it (issue 16's target: ≤ 0.25 s for
 * `backstop --help` and for `backstop scan FILE` on one file).
 *
 * Each command runs N times as its own process (`node bin/backstop.js …`,
 * so dist/ when it is built and fresh, else the sources through tsx, as the
 * installed command does). Wall time is from spawn to exit; CPU is the
 * child's user+system time, read as the growth of this process's
 * cutime+cstime in /proc/self/stat once the child is reaped (clock ticks:
 * 10 ms steps, which is why the median of several runs is printed). The scan
 * is of one small clean message with a clamd that answers (its PING and one
 * INSTREAM are part of the command), so the clamd must be running.
 *
 * A benchmark: the target is printed, never asserted. On a shared machine
 * the wall time carries the load; the CPU time much less.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';

/** Issue 16's target for `--help` and `scan FILE`, seconds. */
export const CLI_START_TARGET_S = 0.25;

export interface CliStart {
  command: string;
  runs: number;
  wallMedianS: number;
  cpuMedianS: number;
  /** What the command printed the last time (its exit code checked: a scan that failed would measure the wrong thing). */
  output: string;
}

const TICK_S = 0.01; // USER_HZ is 100 on Linux

/** cutime + cstime of this process: the CPU of the children it has reaped, seconds. */
function childrenCpuS(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  // Fields after the command name (which may hold spaces) start at ") "; cutime and cstime are fields 16 and 17.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[13]) + Number(fields[14])) * TICK_S;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

function time(args: string[], runs: number, expectStatus: number): CliStart {
  const bin = new URL('../../bin/backstop.js', import.meta.url).pathname;
  const walls: number[] = [];
  const cpus: number[] = [];
  let output = '';
  for (let i = 0; i < runs; i++) {
    const cpu0 = childrenCpuS();
    const t0 = process.hrtime.bigint();
    // No BACKSTOP_CONFIG: the command runs on the embedded defaults, as a first try does.
    const env = { ...process.env };
    delete env.BACKSTOP_CONFIG;
    const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env, timeout: 60_000 });
    walls.push(Number(process.hrtime.bigint() - t0) / 1e9);
    cpus.push(childrenCpuS() - cpu0);
    if (r.status !== expectStatus) throw new Error(`backstop ${args.join(' ')} exited ${r.status}: ${(r.stderr || r.stdout).trim().split('\n')[0]}`);
    output = r.stdout.trim();
  }
  return { command: `backstop ${args[0]}${args[0] === 'scan' ? ' FILE' : ''}`, runs, wallMedianS: median(walls), cpuMedianS: median(cpus), output };
}

/** `backstop --help` and `backstop scan --clamd URL FILE` (one small clean message, written in dir), N runs each. */
export function measureCliStart(dir: string, clamdUrl: string, runs: number): CliStart[] {
  const file = join(dir, 'cli-start.eml');
  writeFileSync(file, 'From: a@example.org\r\nTo: b@example.net\r\nSubject: start-up\r\nMessage-ID: <cli-start@example.org>\r\n\r\nhello\r\n');
  // One run first, not counted: the page cache holds node, dist/ and node_modules afterwards, as it does for an operator's second try.
  time(['--help'], 1, 0);
  return [time(['--help'], runs, 0), time(['scan', '--clamd', clamdUrl, file], runs, 0)];
}

export function cliStartLines(results: CliStart[]): string[] {
  return [
    `CLI start (node bin/backstop.js, median of ${results[0]?.runs ?? 0} runs; load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}):`,
    ...results.map(
      (r) =>
        `  ${r.command.padEnd(20)} wall ${r.wallMedianS.toFixed(2)} s, CPU ${r.cpuMedianS.toFixed(2)} s   target ≤ ${CLI_START_TARGET_S} s wall: ${r.wallMedianS <= CLI_START_TARGET_S ? 'met' : 'NOT met'}`,
    ),
  ];
}
