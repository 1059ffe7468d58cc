/*
 * test/helpers/private-pg — a PostgreSQL cluster of the test's own (initdb +
 * pg_ctl from /usr/lib/postgresql/15/bin, run as the `postgres` user, in a
 * temp dir, on a free loopback port), for tests that stop and restart the
 * database under running nodes. The machine's shared server on 5432 is never
 * touched: other tests use it.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../src/replay/processes.ts';

const BIN = '/usr/lib/postgresql/15/bin';

export interface PrivatePostgres {
  url: string;
  port: number;
  /** Stops the server: `fast` (clean) or `immediate` (like a crash: no checkpoint, recovery at the next start). */
  stop(mode?: 'fast' | 'immediate'): void;
  start(): void;
  destroy(): void;
}

function asPostgres(args: string[]): void {
  const r = spawnSync('runuser', ['-u', 'postgres', '--', ...args], { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`${args.join(' ')} failed (${r.status}): ${r.stdout}${r.stderr}`);
}

export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const dir = mkdtempSync(join(tmpdir(), 'bs-pg-'));
  chmodSync(dir, 0o755);
  const pw = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).stdout.trim();
  chownSync(dir, Number(pw), -1);
  const data = join(dir, 'data');
  const port = await freePort();
  asPostgres([`${BIN}/initdb`, '-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
  const start = () => asPostgres([`${BIN}/pg_ctl`, '-D', data, '-l', join(dir, 'log'), '-w', '-t', '60', '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=on`, 'start']);
  start();
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    stop: (mode = 'fast') => asPostgres([`${BIN}/pg_ctl`, '-D', data, '-w', '-m', mode, 'stop']),
    start,
    destroy() {
      spawnSync('runuser', ['-u', 'postgres', '--', `${BIN}/pg_ctl`, '-D', data, '-w', '-m', 'immediate', 'stop'], { timeout: 60_000 });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
