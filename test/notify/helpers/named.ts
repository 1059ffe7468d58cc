/*
 * test/notify/helpers/named — a real DNS server (BIND's named) on loopback
 * for one test file: writes the zones given, starts named in the foreground
 * on a free port, stops it and removes its directory after.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Resolver } from 'node:dns/promises';

/** A port free for both TCP and UDP on 127.0.0.1. */
async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      }).on('error', reject);
    });
    const ok = await new Promise<boolean>((resolve) => {
      const u = createSocket('udp4');
      u.once('error', () => resolve(false));
      u.bind(port, '127.0.0.1', () => u.close(() => resolve(true)));
    });
    if (ok) return port;
  }
}

export interface Named {
  server: string;
  stop(): Promise<void>;
}

/** zones: zone name → records (lines after $TTL/SOA/NS, relative or absolute names). */
export async function startNamed(zones: Record<string, string[]>): Promise<Named> {
  const dir = mkdtempSync(join(tmpdir(), 'bs-named-'));
  const port = await freePort();
  const zoneConf = Object.entries(zones).map(([zone, records], i) => {
    writeFileSync(join(dir, `z${i}.zone`), [
      '$TTL 60',
      `@ IN SOA ns.${zone}. hostmaster.${zone}. 1 60 60 600 60`,
      `@ IN NS ns.${zone}.`,
      'ns IN A 127.0.0.1',
      ...records,
      '',
    ].join('\n'));
    return `zone "${zone}" { type primary; file "${join(dir, `z${i}.zone`)}"; };`;
  });
  writeFileSync(join(dir, 'named.conf'), [
    'options {',
    `  directory "${dir}";`,
    `  pid-file "${join(dir, 'named.pid')}";`,
    `  listen-on port ${port} { 127.0.0.1; };`,
    '  listen-on-v6 { none; };',
    '  recursion no;',
    '  dnssec-validation no;',
    '  allow-query { any; };',
    '};',
    // No rndc channel: it would take port 953, which another test's named may hold.
    'controls { };',
    ...zoneConf,
    '',
  ].join('\n'));
  const child: ChildProcess = spawn('/usr/sbin/named', ['-g', '-c', join(dir, 'named.conf'), '-u', 'root', '-n', '1'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr!.on('data', (d) => (log += d));
  const server = `127.0.0.1:${port}`;
  const r = new Resolver({ timeout: 300, tries: 1 });
  r.setServers([server]);
  const first = Object.keys(zones)[0]!;
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      await r.resolveSoa(first);
      break;
    } catch {
      if (child.exitCode !== null || Date.now() > deadline) {
        child.kill('SIGKILL');
        rmSync(dir, { recursive: true, force: true });
        throw new Error(`named did not start:\n${log.slice(-2000)}`);
      }
      await new Promise((res) => setTimeout(res, 100));
    }
  }
  return {
    server,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((res) => child.once('exit', res));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
