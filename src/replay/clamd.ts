/*
 * replay/clamd — a private, real clamd for the tests, the replay and the benchmark, with a signature
 * database built on the spot by sigtool; and a counting proxy in front of it.
 *
 * There is no internet here, so no freshclam. The database is one unsigned
 * CVD (`sigtool --build --unsigned`, a .cud that clamd loads without a
 * signing key) so that it carries a version number: `reload(version)`
 * rebuilds it under a new number and clamd's VERSION answer changes, as it
 * does when freshclam brings new signatures.
 *
 * Its signatures, in three forms (`signatures`: one of them or `all`, the default), because ClamAV's
 * real databases use all three and clamd reaches them at different points of its unpacking:
 *   - BODY (.ndb): 180 distinctive bytes of Debian's clamav-testfiles clam.exe
 *     (its code at 0x40 and its import table up to "CLAMessageBoxA"), and
 *     EICAR anchored at offset 0 as the EICAR standard defines it. The packed
 *     and archived test files (UPX, FSG, ASPack, 7z, CAB, CHM, TNEF, RTF,
 *     mbox, binhex, …) are detected only if ClamAV really unpacks them.
 *     `rawlyContainsSignature()` tells which test files hold the bytes
 *     verbatim (stored, not packed), so a test can say how many detections
 *     prove unpacking.
 *   - MD5 (.hdb, `sigtool --md5`) and SHA-256 (.hsb, `sigtool --sha256`) of
 *     clam.exe and of the EICAR file, whole. Most of ClamAV's published
 *     signatures are of this form. They match only a file clamd holds byte
 *     for byte, never a part of one: clamd scanning a whole message reaches
 *     fewer of them than the same attachment sent on its own (clamav 1.4.6:
 *     clam_cache_emax.tgz, nine .tgz deep, is found alone and missed in a
 *     message), which is why the scanner hands clamd the decoded leaves too.
 * Every form names clam.exe `Backstop.Test.ClamExe` and EICAR
 * `Eicar-Test-Signature`: a test asks what clamd found, not with which form.
 *
 * Usage:
 *   const clamd = await startClamd();            // PONG-checked, ~1 s
 *   createScanner(parseConfig({ clamd: clamd.url }));   // or clamd.unixUrl
 *   clamd.hang(); … clamd.resume();              // SIGSTOP/SIGCONT: a hung clamd
 *   await clamd.reload(27002);                   // new signature version
 *   await clamd.stop();                          // in after()
 *   const proxy = await startClamdProxy(clamd.url); proxy.scans  // INSTREAMs seen
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClamdClient } from '../scan/clamd.ts';
import { freePort } from './processes.ts';

export const CLAMAV_TESTFILES = '/usr/share/clamav-testfiles';
/** clamd's name for anything carrying clam.exe (".UNOFFICIAL": the database is not signed). */
export const TEST_SIGNATURE_NAME = 'Backstop.Test.ClamExe.UNOFFICIAL';
export const EICAR_SIGNATURE_NAME = 'Eicar-Test-Signature.UNOFFICIAL';
export const EICAR = 'X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*';

/** The bytes of clam.exe the body signature is made of. */
export function signatureBytes(): Buffer {
  return readFileSync(join(CLAMAV_TESTFILES, 'clam.exe')).subarray(0x40, 0xf4);
}

/** True when the file holds the signature bytes as they are: its detection does not prove unpacking. */
export function rawlyContainsSignature(file: string): boolean {
  return readFileSync(file).includes(signatureBytes());
}

function hexDump(bytes: Uint8Array): string {
  return execFileSync('sigtool', ['--hex-dump'], { input: bytes }).toString().trim();
}

/**
 * Which signature forms the database holds. `body`: the .ndb body signatures of clam.exe and EICAR;
 * `md5` / `sha256`: .hdb / .hsb hash signatures (made with `sigtool --md5` / `--sha256`) of the same two
 * files, whole; `all`: the three together (the default).
 */
export type SignatureForm = 'body' | 'md5' | 'sha256';
export type SignatureSet = SignatureForm | 'all';
export const SIGNATURE_FORMS: readonly SignatureForm[] = ['body', 'md5', 'sha256'];

/**
 * `sigtool --md5 FILE` / `--sha256`: a `HASH:SIZE:NAME` line. Only clam.exe and the EICAR file are
 * hashed, not the packed or archived test files themselves: a hash of clam.exe matches only once clamd
 * has unpacked (or been handed) clam.exe byte for byte, which is what the tests must prove.
 */
function hashSignatures(form: 'md5' | 'sha256', staging: string): string {
  const eicar = join(staging, 'eicar.com');
  writeFileSync(eicar, EICAR);
  const line = (file: string, name: string) => {
    const [hash, size] = execFileSync('sigtool', [`--${form}`, file]).toString().trim().split(':');
    return `${hash}:${size}:${name}`;
  };
  const out = [line(join(CLAMAV_TESTFILES, 'clam.exe'), 'Backstop.Test.ClamExe'), line(eicar, 'Eicar-Test-Signature')].join('\n') + '\n';
  rmSync(eicar);
  return out;
}

/** Builds daily.cud (version `version`) in `dbDir`, atomically (clamd may be reading the directory). */
export function buildSignatureDatabase(dbDir: string, version: number, signatures: SignatureSet = 'all'): void {
  const staging = mkdtempSync(join(tmpdir(), 'backstop-sigs-'));
  const forms = new Set<SignatureForm>(signatures === 'all' ? SIGNATURE_FORMS : [signatures]);
  try {
    // One name per sample whatever the form: a test asks whether clamd found clam.exe, not with which signature.
    if (forms.has('body')) {
      const body = [`Backstop.Test.ClamExe:0:*:${hexDump(signatureBytes())}`, `Eicar-Test-Signature:0:0:${hexDump(Buffer.from(EICAR))}`];
      writeFileSync(join(staging, 'daily.ndb'), body.join('\n') + '\n');
    }
    if (forms.has('md5')) writeFileSync(join(staging, 'daily.hdb'), hashSignatures('md5', staging));
    if (forms.has('sha256')) writeFileSync(join(staging, 'daily.hsb'), hashSignatures('sha256', staging));
    writeFileSync(join(staging, 'COPYING'), 'Test signatures made by Backstop from Debian clamav-testfiles and EICAR.\n');
    // sigtool asks for a builder name on stdin.
    execFileSync('sigtool', ['--build=daily.cud', '--unsigned', `--cvd-version=${version}`, `--datadir=${staging}`], {
      cwd: staging,
      input: 'backstop-tests\n',
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    mkdirSync(dbDir, { recursive: true });
    renameSync(join(staging, 'daily.cud'), join(dbDir, 'daily.cud.tmp'));
    renameSync(join(dbDir, 'daily.cud.tmp'), join(dbDir, 'daily.cud'));
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

export interface RunningClamd {
  url: string;
  unixUrl: string;
  readonly pid: number;
  /** The temp directory: config, database, socket. */
  dir: string;
  readonly child: ChildProcess;
  /** SIGSTOP: clamd keeps accepting connections (the kernel does) but answers nothing. */
  hang(): void;
  /** SIGCONT. */
  resume(): void;
  /** clamd's VERSION answer. */
  version(): Promise<string>;
  /** New signature database version, RELOAD, and wait until VERSION shows it. Returns the new VERSION answer. */
  reload(version: number): Promise<string>;
  /** Kill and start again on the same port and socket (a crash or restart). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export interface ClamdOptions {
  /** clamd's StreamMaxLength: INSTREAM longer than this is refused with "size limit exceeded". */
  streamMaxLength?: string;
  /** clamd's MaxFileSize and MaxScanSize (the benchmark's 50 MB message needs more than the tests' defaults). */
  maxFileSize?: string;
  maxScanSize?: string;
  signatureVersion?: number;
  /** The signature forms in the database (default `all`: body, MD5 and SHA-256). */
  signatures?: SignatureSet;
  /** clamd's MaxQueue (its default 100): past it clamd accepts no more connections until one closes. */
  maxQueue?: number;
}

export async function startClamd(options: ClamdOptions = {}): Promise<RunningClamd> {
  const dir = mkdtempSync(join(tmpdir(), 'backstop-clamd-'));
  const dbDir = join(dir, 'db');
  buildSignatureDatabase(dbDir, options.signatureVersion ?? 27000, options.signatures);
  const port = await freePort();
  const socketPath = join(dir, 'clamd.sock');
  writeFileSync(
    join(dir, 'clamd.conf'),
    [
      'Foreground yes',
      `LocalSocket ${socketPath}`,
      'FixStaleSocket yes',
      `TCPSocket ${port}`,
      'TCPAddr 127.0.0.1',
      `DatabaseDirectory ${dbDir}`,
      `PidFile ${join(dir, 'clamd.pid')}`,
      'User root',
      // Small limits: tests stay fast, and the size-limit path is reachable with a few MB.
      `StreamMaxLength ${options.streamMaxLength ?? '5M'}`,
      `MaxFileSize ${options.maxFileSize ?? '5M'}`,
      `MaxScanSize ${options.maxScanSize ?? '20M'}`,
      'MaxRecursion 17', // clamd's default: clam_cache_emax.tgz nests nine .tgz deep
      // Past a limit clamd says so (Heuristics.Limits.Exceeded.*) instead of OK: Backstop answers unscannable.
      'AlertExceedsMax yes',
      // What production should set too: an archive clamd cannot open for a password is a finding
      // (Heuristics.Encrypted.*, which the scanner calls banned), not an OK.
      'AlertEncryptedArchive yes',
      'MaxFiles 1000',
      'MaxThreads 4',
      ...(options.maxQueue ? [`MaxQueue ${options.maxQueue}`] : []),
      'ReadTimeout 30',
      'CommandReadTimeout 30',
      'SelfCheck 3600',
      'LogTime no',
      '',
    ].join('\n'),
  );
  const url = `tcp://127.0.0.1:${port}`;
  const client = new ClamdClient(url, 2000, 100);
  let child!: ChildProcess;
  let output = '';
  const killOnExit = () => child?.kill('SIGKILL');
  process.once('exit', killOnExit);

  const launch = async () => {
    output = '';
    child = spawn('clamd', ['--config-file', join(dir, 'clamd.conf')], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.on('data', (d) => (output += d));
    child.stderr?.on('data', (d) => (output += d));
    const deadline = Date.now() + 60_000;
    while (!(await client.ping())) {
      if (child.exitCode !== null) throw new Error(`clamd exited during start-up:\n${output}`);
      if (Date.now() > deadline) throw new Error(`clamd did not answer PING within 60 s:\n${output}`);
      await new Promise((r) => setTimeout(r, 50));
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
    hang: () => void child.kill('SIGSTOP'),
    resume: () => void child.kill('SIGCONT'),
    version: () => client.version(),
    async reload(version: number) {
      buildSignatureDatabase(dbDir, version, options.signatures);
      await new Promise<void>((resolve, reject) => {
        const s = connect(port, '127.0.0.1', () => s.write('zRELOAD\0'));
        s.on('data', () => s.end());
        s.on('close', () => resolve());
        s.on('error', reject);
      });
      const deadline = Date.now() + 30_000;
      for (;;) {
        const answer = await client.version().catch(() => '');
        if (answer.split('/')[1] === String(version)) return answer;
        if (Date.now() > deadline) throw new Error(`clamd did not load signature version ${version} within 30 s (VERSION: ${answer})`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async restart() {
      await kill();
      await launch();
    },
    async stop() {
      await kill();
      process.off('exit', killOnExit);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface ClamdProxy {
  url: string;
  /** INSTREAM commands that passed through. */
  readonly scans: number;
  /** Every command seen, in order ("INSTREAM", "VERSION", "PING", …). */
  commands: string[];
  close(): Promise<void>;
}

/** A TCP proxy in front of clamd that records each connection's command: proof that a scan did or did not reach clamd. */
export async function startClamdProxy(targetUrl: string): Promise<ClamdProxy> {
  const [host, port] = targetUrl.slice('tcp://'.length).split(':');
  const commands: string[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    sockets.add(client);
    const upstream = connect(Number(port), host!);
    sockets.add(upstream);
    // Reads the client's side as clamd does: commands, and INSTREAM's length-prefixed chunks skipped,
    // so every command of an IDSESSION session is recorded, not only the first.
    let pending: Buffer = Buffer.alloc(0);
    let skip = 0; // bytes of the current chunk still to pass
    let inStream = false;
    client.on('data', (d: Buffer) => {
      pending = pending.length ? Buffer.concat([pending, d]) : d;
      for (;;) {
        if (skip > 0) {
          const n = Math.min(skip, pending.length);
          skip -= n;
          pending = pending.subarray(n);
          if (skip > 0) return;
        }
        if (inStream) {
          if (pending.length < 4) return;
          skip = pending.readUInt32BE(0);
          pending = pending.subarray(4);
          if (skip === 0) inStream = false;
          continue;
        }
        const end = pending.findIndex((b) => b === 0 || b === 0x0a);
        if (end < 0) return;
        const command = pending.subarray(0, end).toString('latin1').replace(/^[zn]/, '');
        commands.push(command);
        pending = pending.subarray(end + 1);
        if (command === 'INSTREAM') inStream = true;
      }
    });
    client.pipe(upstream).pipe(client);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop);
    upstream.on('error', drop);
    client.on('close', drop);
    upstream.on('close', drop);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port: own } = server.address() as { port: number };
  return {
    url: `tcp://127.0.0.1:${own}`,
    get scans() {
      return commands.filter((c) => c === 'INSTREAM').length;
    },
    commands,
    close: () =>
      new Promise<void>((resolve) => {
        sockets.forEach((s) => s.destroy());
        server.close(() => resolve());
      }),
  };
}
