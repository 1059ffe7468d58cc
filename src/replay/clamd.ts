/*
 * replay/clamd — a private, real clamd for the replay, the benchmark and the
 * tests, with a signature database built on the spot by sigtool.
 *
 * There is no internet here, so no freshclam: the database holds a body
 * signature (.ndb) made with `sigtool --hex-dump` from distinctive bytes of
 * Debian's clamav-testfiles `clam.exe` (its import table), and EICAR. A body
 * signature, not a hash, on purpose: the packed and archived test files
 * (UPX, FSG, 7z, CAB, CHM, TNEF, mbox…) are only detected if ClamAV really
 * unpacks them, which is what the gateway relies on.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './processes.ts';

export const CLAMAV_TESTFILES = '/usr/share/clamav-testfiles';
export const TEST_SIGNATURE_NAME = 'Backstop-Test.ClamAV-Body.UNOFFICIAL';
export const EICAR_SIGNATURE_NAME = 'Eicar-Test-Signature.UNOFFICIAL';
const EICAR_TEXT = 'X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*';

function hexDump(bytes: Uint8Array): string {
  return execFileSync('sigtool', ['--hex-dump'], { input: bytes }).toString().trim();
}

/** Writes backstop-test.ndb into dir: the clam.exe body signature and EICAR. */
export function buildTestSignatures(dir: string): void {
  const clamExe = readFileSync(join(CLAMAV_TESTFILES, 'clam.exe'));
  // "KERNEL32.DLL\0\0ExitPr": the import table of clam.exe, present once unpacked.
  const body = hexDump(clamExe.subarray(0xc0, 0xc0 + 20));
  const eicar = hexDump(Buffer.from(EICAR_TEXT));
  writeFileSync(
    join(dir, 'backstop-test.ndb'),
    [`Backstop-Test.ClamAV-Body:0:*:${body}`, `Eicar-Test-Signature:0:*:${eicar}`].join('\n') + '\n',
  );
}

export interface RunningClamd {
  url: string;
  unixUrl: string;
  pid: number;
  dir: string;
  child: ChildProcess;
  /** SIGSTOP: clamd stays connected but answers nothing (a hung scanner). */
  hang(): void;
  resume(): void;
  stop(): Promise<void>;
  /** Restarts on the same port (a clamd reload or crash) — resolves once it answers again. */
  restart(): Promise<void>;
}

export async function ping(url: string, timeoutMs = 1000): Promise<boolean> {
  const target = url.startsWith('unix:') ? { path: url.slice(5) } : (() => {
    const [host, port] = url.slice('tcp://'.length).split(':');
    return { host: host!, port: Number(port) };
  })();
  return new Promise((resolve) => {
    const socket = connect(target);
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(false);
    }, timeoutMs);
    let text = '';
    socket.on('connect', () => socket.write('zPING\0'));
    socket.on('data', (d) => (text += d.toString()));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(text.startsWith('PONG'));
    });
    socket.on('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}

export async function startClamd(options: { streamMaxLength?: string } = {}): Promise<RunningClamd> {
  const dir = mkdtempSync(join(tmpdir(), 'backstop-clamd-'));
  buildTestSignatures(dir);
  const port = await freePort();
  const socketPath = join(dir, 'clamd.sock');
  writeFileSync(
    join(dir, 'clamd.conf'),
    [
      'Foreground yes',
      `LocalSocket ${socketPath}`,
      `TCPSocket ${port}`,
      'TCPAddr 127.0.0.1',
      `DatabaseDirectory ${dir}`,
      `PidFile ${join(dir, 'clamd.pid')}`,
      'User root',
      `StreamMaxLength ${options.streamMaxLength ?? '100M'}`,
      'MaxThreads 8',
      'ReadTimeout 30',
      'CommandReadTimeout 30',
      'SelfCheck 3600',
      'LogTime no',
      '',
    ].join('\n'),
  );
  const url = `tcp://127.0.0.1:${port}`;
  let child!: ChildProcess;
  let output = '';
  const launch = async () => {
    child = spawn('clamd', ['--config-file', join(dir, 'clamd.conf')], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.on('data', (d) => (output += d));
    child.stderr?.on('data', (d) => (output += d));
    const deadline = Date.now() + 60_000;
    while (!(await ping(url, 500))) {
      if (child.exitCode !== null) throw new Error(`clamd exited during start-up:\n${output}`);
      if (Date.now() > deadline) throw new Error(`clamd did not answer PING within 60 s:\n${output}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const kill = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGCONT');
    child.kill('SIGKILL');
    await exited;
  };
  await launch();
  return {
    url,
    unixUrl: `unix:${socketPath}`,
    get pid() {
      return child.pid!;
    },
    dir,
    get child() {
      return child;
    },
    hang: () => child.kill('SIGSTOP'),
    resume: () => child.kill('SIGCONT'),
    stop: async () => {
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
    restart: async () => {
      await kill();
      await launch();
    },
  };
}
