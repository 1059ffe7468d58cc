/*
 * test/backscatter/exim — Debian's Exim (exim4-daemon-light) for the BATV
 * interoperability tests, without installing it: Exim conflicts with the
 * Postfix package the gateway tests use. The .deb files are fetched with
 * `apt-get download` and unpacked with `dpkg -x` into a cache directory; the
 * binary runs only `exim -be` (string expansion, no daemon, no spool work).
 *
 * Two things Debian's build needs that an unpacked copy lacks: libidn12 (not
 * installed beside Postfix; unpacked too and put on LD_LIBRARY_PATH) and the
 * compiled-in "Debian-exim" user (Exim looks it up at start and refuses uid
 * 0): libnss-wrapper, also unpacked, serves a passwd/group file that names it,
 * so nothing on the machine is changed.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const PACKAGES = ['exim4-daemon-light', 'exim4-base', 'libidn12', 'libnss-wrapper'];
const DIR = join(tmpdir(), 'backstop-exim');

export class EximUnavailable extends Error {}

let ready: ((expr: string) => string) | null = null;

/** The unpacked binary and the environment it runs in (nss_wrapper's passwd naming Debian-exim, libidn12). */
export interface EximInstall {
  exim: string;
  env: Record<string, string>;
}

let installed: EximInstall | null = null;

/** Fetches and unpacks Exim once (see the header); throws EximUnavailable with the reason. */
export function eximInstall(): EximInstall {
  installed ??= unpack();
  return installed;
}

function prepare(): (expr: string) => string {
  const { exim, env } = eximInstall();
  mkdirSync(join(DIR, 'spool'), { recursive: true });
  const conf = join(DIR, 'exim.conf');
  writeFileSync(conf, `primary_hostname = backstop.test\nspool_directory = ${DIR}/spool\nlog_file_path = ${DIR}/spool/%slog\n`);
  return (expr: string) => {
    const run = spawnSync(exim, ['-C', conf, '-be', expr], { env, encoding: 'utf8', timeout: 10_000 });
    if (run.status !== 0) throw new EximUnavailable(`exim -be failed (exit ${run.status}): ${(run.stderr || run.stdout).trim().slice(0, 300)}`);
    return run.stdout.replace(/\n$/, '');
  };
}

function unpack(): EximInstall {
  const root = join(DIR, 'root');
  const exim = join(root, 'usr/sbin/exim4');
  const lib = join(root, 'usr/lib/x86_64-linux-gnu');
  if (!existsSync(exim) || !existsSync(join(lib, 'libnss_wrapper.so'))) {
    mkdirSync(join(DIR, 'debs'), { recursive: true });
    const got = spawnSync('apt-get', ['download', ...PACKAGES], { cwd: join(DIR, 'debs'), encoding: 'utf8' });
    const debs = readdirSync(join(DIR, 'debs')).filter((f) => f.endsWith('.deb'));
    if (got.status !== 0 || debs.length < PACKAGES.length) {
      throw new EximUnavailable(
        `cannot get Exim for the BATV interop test: \`apt-get download ${PACKAGES.join(' ')}\` failed (exit ${got.status}): ${(got.stderr ?? '').trim().split('\n').slice(-2).join(' / ')}` +
          ' — run `apt-get update` first, or check that the Debian mirror is reachable',
      );
    }
    for (const deb of debs) execFileSync('dpkg', ['-x', join(DIR, 'debs', deb), root]);
  }
  const passwd = join(DIR, 'passwd');
  const group = join(DIR, 'group');
  writeFileSync(passwd, `${readFileSync('/etc/passwd', 'utf8').trimEnd()}\nDebian-exim:x:64999:64999::/nonexistent:/bin/false\n`);
  writeFileSync(group, `${readFileSync('/etc/group', 'utf8').trimEnd()}\nDebian-exim:x:64999:\n`);
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    LD_LIBRARY_PATH: lib,
    LD_PRELOAD: join(lib, 'libnss_wrapper.so'),
    NSS_WRAPPER_PASSWD: passwd,
    NSS_WRAPPER_GROUP: group,
  };
  return { exim, env };
}

/** Expands one Exim string expression (`exim -be`); throws EximUnavailable with the reason. */
export function eximExpand(expr: string): string {
  ready ??= prepare();
  return ready(expr);
}
