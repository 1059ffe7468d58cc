/*
 * bench/lib/haraka — Haraka 3 with haraka-plugin-clamd, the field's Node.js
 * MTA with its own clamd plugin, as the benchmark's comparison. Installed
 * from npm into a temporary folder (never a dependency of Backstop; pass
 * --haraka-dir DIR to keep and reuse an install) and configured in a
 * temporary directory (see bench/README.md for every file):
 *
 *   smtp.ini          listen on a free loopback port; nodes=0: one process,
 *                     no cluster (Backstop is measured as one process too)
 *   plugins           bench_no_rdns, rcpt_to.in_host_list, clamd,
 *                     queue/smtp_forward — nothing else, nothing doing DNS
 *   plugins/bench_no_rdns.js
 *                     answers Haraka's core lookup_rdns hook with "localhost"
 *                     (Backstop sets smtp-server's disableReverseLookup too)
 *   host_list         example.net (relay for the test domain only)
 *   clamd.ini         clamd_socket = the benchmark's clamd (HOST:PORT)
 *   smtp_forward.ini  the same smtp-sink Backstop relays to, no TLS
 *
 * npm 11 runs no install scripts unless approved; Haraka needs none: the
 * only package with one is modern-syslog (an optional native addon for the
 * syslog plugin, not used here).
 *
 * Haraka never sets TCP_NODELAY, so with Nagle's algorithm on, a reply
 * written right after another waits for the client's delayed ACK (~40 ms):
 * one session sees ~50 ms per message that are not Haraka's work. The
 * benchmark runs Haraka as shipped AND with a preload (haraka-nodelay.cjs)
 * that sets TCP_NODELAY on every socket, and compares against both.
 *
 * Haraka's clamd plugin lets messages over its max_size (25 MB) through
 * unscanned; irrelevant for 20 kB messages, and the hole Backstop does not copy.
 */
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, stopper, track, waitForPort, type RunningProcess } from '../../src/replay/processes.ts';

/** Installs Haraka 3 and haraka-plugin-clamd under prefix (unless already there); returns its versions. */
export function installHaraka(prefix: string, log: (s: string) => void): { haraka: string; clamd: string } {
  const pkg = (name: string) => join(prefix, 'node_modules', name, 'package.json');
  if (!existsSync(pkg('Haraka')) || !existsSync(pkg('haraka-plugin-clamd'))) {
    mkdirSync(prefix, { recursive: true });
    log(`installing Haraka 3 and haraka-plugin-clamd into ${prefix} (npm install)`);
    execFileSync('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', '--prefix', prefix, 'Haraka@3', 'haraka-plugin-clamd'], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
  }
  const version = (name: string) => (JSON.parse(readFileSync(pkg(name), 'utf8')) as { version: string }).version;
  return { haraka: version('Haraka'), clamd: version('haraka-plugin-clamd') };
}

const NO_RDNS_PLUGIN = `// Benchmark only: answer the core reverse-DNS lookup without DNS.
exports.hook_lookup_rdns = function (next) {
  next(OK, 'localhost')
}
`;

/** The preload that turns Nagle's algorithm off on every socket (the TCP_NODELAY variant). */
const NODELAY = fileURLToPath(new URL('./haraka-nodelay.cjs', import.meta.url));

export async function startHaraka(prefix: string, dir: string, clamdUrl: string, nextHopPort: number, opts: { noDelay?: boolean } = {}): Promise<RunningProcess> {
  const bin = join(prefix, 'node_modules', 'Haraka', 'bin', 'haraka');
  const config = join(dir, 'config');
  // Haraka's own defaults first (connection.ini and friends are required), then ours on top.
  cpSync(join(prefix, 'node_modules', 'Haraka', 'config'), config, { recursive: true });
  mkdirSync(join(dir, 'plugins'), { recursive: true });
  writeFileSync(join(dir, 'plugins', 'bench_no_rdns.js'), NO_RDNS_PLUGIN);
  const port = await freePort();
  const files: Record<string, string> = {
    // nodes=0: no cluster. Unset, Haraka 3 forks one worker behind a master, and
    // the PID we measure (CPU, RSS) would be the master's.
    'smtp.ini': `listen=127.0.0.1:${port}\nnodes=0\n`,
    plugins: 'bench_no_rdns\nrcpt_to.in_host_list\nclamd\nqueue/smtp_forward\n',
    host_list: 'example.net\n',
    'clamd.ini': `[main]\nclamd_socket=${clamdUrl.replace(/^tcp:\/\//, '')}\ntimeout=30\n`,
    'smtp_forward.ini': `host=127.0.0.1\nport=${nextHopPort}\nenable_tls=false\n`,
    'log.ini': '[main]\nlevel=warn\n',
    me: 'haraka.bench.example\n',
  };
  for (const [name, text] of Object.entries(files)) writeFileSync(join(config, name), text);
  const child = spawn(process.execPath, [...(opts.noDelay ? ['--require', NODELAY] : []), bin, '-c', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  const { output, exited } = track(child);
  await Promise.race([
    waitForPort(port, '127.0.0.1', 60_000),
    exited.then(() => {
      throw new Error(`haraka exited during start-up:\n${output()}`);
    }),
  ]);
  return { child, port, output, stop: stopper(child, exited) };
}
