/*
 * replay/processes — starts and stops the real programs a replay (and the
 * end-to-end tests) run against: Postfix's smtp-sink as the next hop or as a
 * capturing relay, and a Backstop node as a child process on a config file.
 * Everything listens on loopback, on ports the kernel picks.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { join } from 'node:path';
import { stringify } from 'yaml';

export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts TCP connections on host:port, or rejects after timeoutMs. */
export async function waitForPort(port: number, host = '127.0.0.1', timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect({ port, host }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface RunningProcess {
  child: ChildProcess;
  port: number;
  /** Sends `signal`, waits up to graceMs (10 s) for the exit, then SIGKILL. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
  output(): string;
}

/** Keeps the last 100–200 kB of a child's stdout and stderr (for the error that says why it died) and its exit as a promise. */
export function track(child: ChildProcess): { output: () => string; exited: Promise<void> } {
  let text = '';
  const keep = (chunk: Buffer) => {
    text += chunk.toString();
    if (text.length > 200_000) text = text.slice(-100_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return { output: () => text, exited };
}

/** Stops a child: the signal, up to graceMs (10 s) for it to exit, then SIGKILL. */
export function stopper(child: ChildProcess, exited: Promise<void>) {
  return async (signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await Promise.race([exited, new Promise((r) => setTimeout(r, graceMs))]);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  };
}

/**
 * A port from freePort() is free only until someone else binds it: with test
 * files running in parallel, a program can lose that race and die on bind
 * while another program answers on its port. So: start, wait for the port,
 * make sure OUR process is still alive a moment later, and retry on a new
 * port if it is not.
 */
async function spawnOnFreePort(start: (port: number) => ChildProcess, attempts = 5): Promise<{ child: ChildProcess; port: number; output: () => string; exited: Promise<void> }> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const child = start(port);
    const { output, exited } = track(child);
    const died = exited.then(() => 'died' as const);
    const outcome = await Promise.race([waitForPort(port).then(() => 'listening' as const), died]);
    if (outcome === 'listening' && (await Promise.race([died, new Promise((r) => setTimeout(() => r('alive'), 150))])) === 'alive') {
      return { child, port, output, exited };
    }
    child.kill('SIGKILL');
    if (attempt >= attempts) throw new Error(`could not start ${child.spawnfile} on a free port:\n${output()}`);
  }
}

export interface SinkedMessage {
  mailFrom: string;
  rcptTo: string[];
  /** The whole dump: smtp-sink's X-* envelope lines, its Received line, then the message. */
  text: string;
}

export interface SmtpSink extends RunningProcess {
  dir: string | null;
  /** The messages smtp-sink has written, each as the text of its dump file. */
  messages(): string[];
  /** The same, with the envelope smtp-sink recorded (X-Mail-Args, X-Rcpt-Args). */
  envelopes(): SinkedMessage[];
}

export function parseSinkDump(text: string): SinkedMessage {
  const head = text.slice(0, text.search(/^Received: /m) >>> 0);
  const mailFrom = /^X-Mail-Args: <([^>]*)>/m.exec(head)?.[1] ?? '';
  const rcptTo = [...head.matchAll(/^X-Rcpt-Args: <([^>]*)>/gm)].map((m) => m[1]!);
  return { mailFrom, rcptTo, text };
}

/**
 * Postfix's smtp-sink, writing every transaction to a file under dir
 * (`-d`, one file per message). `-R` codes can make it refuse, for tests.
 */
export async function startSmtpSink(dir: string | null, extraArgs: string[] = []): Promise<SmtpSink> {
  if (dir) mkdirSync(dir, { recursive: true });
  // Without a directory smtp-sink keeps nothing: the fastest possible next hop, for benchmarks.
  const dump = dir ? ['-d', join(dir, '%Y%m%d%H%M%S.')] : [];
  const { child, port, output, exited } = await spawnOnFreePort((port) =>
    spawn('/usr/sbin/smtp-sink', ['-u', 'root', ...dump, ...extraArgs, `127.0.0.1:${port}`, '1000'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  // smtp-sink opens a dump file when a transaction starts and removes it if the transaction is
  // aborted (a sender killed mid-transaction), possibly between our listing and our read; only a
  // dump that reached DATA (smtp-sink's own Received line is there) is a delivery.
  const read = (f: string): string | null => {
    try {
      return readFileSync(join(dir!, f), 'latin1');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  };
  const delivered = () =>
    (dir ? readdirSync(dir) : [])
      .map(read)
      .filter((text): text is string => text !== null)
      .map(parseSinkDump)
      .filter((m) => /^Received: .*\r?\n\s+by smtp-sink /m.test(m.text));
  return {
    child,
    port,
    dir,
    output,
    stop: stopper(child, exited),
    messages: () => delivered().map((m) => m.text),
    envelopes: delivered,
  };
}

/** A Backstop node (`backstop serve`) as a child process on the given configuration. */
export async function startBackstop(dir: string, config: Record<string, unknown>, env: Record<string, string> = {}): Promise<RunningProcess & { configFile: string }> {
  mkdirSync(dir, { recursive: true });
  const configFile = join(dir, 'backstop.yaml');
  writeFileSync(configFile, stringify(config));
  const listen = (config.smtp as { listen: string }).listen;
  const port = Number(listen.slice(listen.lastIndexOf(':') + 1));
  const bin = new URL('../../bin/backstop.js', import.meta.url).pathname;
  const child = spawn(process.execPath, [bin, 'serve', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const { output, exited } = track(child);
  try {
    await Promise.race([
      waitForPort(port, '127.0.0.1', 60_000),
      exited.then(() => {
        throw new Error(`backstop exited during start-up:\n${output()}`);
      }),
    ]);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  return { child, port, configFile, output, stop: stopper(child, exited) };
}
