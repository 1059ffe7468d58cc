/*
 * bench/lib/haraka — Haraka 3 with haraka-plugin-clamd, the field's Node.js
 * MTA with its own clamd plugin, as the benchmark's comparison. Installed
 * from npm into a cache folder outside the project (never a dependency of
 * Backstop) and configured in a temporary directory:
 *
 *   plugins      rcpt_to.in_host_list, clamd, queue/smtp_forward
 *   host_list    example.net
 *   clamd.ini    clamd_socket = the benchmark's clamd
 *   smtp_forward forwards to the same smtp-sink Backstop relays to
 *
 * No DNS-dependent plugins: the comparison is scanning and forwarding only.
 * Haraka's clamd plugin skips messages over its max_size (25 MB) unscanned;
 * that does not matter for 20 kB messages but is the hole Backstop does not copy.
 */
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { freePort, waitForPort, type RunningProcess } from '../../src/replay/processes.ts';

const CACHE = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'backstop-bench', 'haraka');

export function installHaraka(): string {
  const bin = join(CACHE, 'node_modules', '.bin', 'haraka');
  if (!existsSync(bin)) {
    mkdirSync(CACHE, { recursive: true });
    execFileSync('npm', ['install', '--no-audit', '--no-fund', '--prefix', CACHE, 'Haraka@3', 'haraka-plugin-clamd'], { stdio: 'inherit' });
  }
  return bin;
}

export async function startHaraka(dir: string, clamdUrl: string, nextHopPort: number): Promise<RunningProcess> {
  const bin = installHaraka();
  const config = join(dir, 'config');
  // Haraka's own defaults first (connection.ini and friends are required), then ours on top.
  cpSync(join(CACHE, 'node_modules', 'Haraka', 'config'), config, { recursive: true });
  const port = await freePort();
  const clamd = clamdUrl.replace(/^tcp:\/\//, '');
  const files: Record<string, string> = {
    // One worker: Backstop is measured as one process too.
    'smtp.ini': `[main]\nlisten=127.0.0.1:${port}\nnodes=1\n`,
    plugins: 'rcpt_to.in_host_list\nclamd\nqueue/smtp_forward\n',
    host_list: 'example.net\n',
    'clamd.ini': `[main]\nclamd_socket=${clamd}\ntimeout=30\n`,
    'smtp_forward.ini': `host=127.0.0.1\nport=${nextHopPort}\nenable_tls=false\n`,
    'log.ini': '[main]\nlevel=WARN\n',
    me: 'haraka.bench.example\n',
  };
  for (const [name, text] of Object.entries(files)) writeFileSync(join(config, name), text);
  const child = spawn(process.execPath, [bin, '-c', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (d) => (out += d));
  child.stderr?.on('data', (d) => (out += d));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  await Promise.race([
    waitForPort(port, '127.0.0.1', 60_000),
    exited.then(() => {
      throw new Error(`haraka exited during start-up:\n${out}`);
    }),
  ]);
  return {
    child,
    port,
    output: () => out,
    stop: async () => {
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      child.kill('SIGKILL');
    },
  };
}
