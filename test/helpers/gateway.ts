/*
 * test/helpers/gateway — an in-process gateway on free ports in front of a
 * real next hop (Postfix's smtp-sink), with PGlite in memory, and swaks as
 * the client. What the sender saw is parsed from swaks' transcript.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/load.ts';
import type { Config } from '../../src/config/schema.ts';
import { startGateway, type Gateway, type GatewayHooks, type LocalRoute } from '../../src/edge/gateway.ts';
import { createLogger, silentLogger } from '../../src/obs/log.ts';
import { startSmtpSink, type SmtpSink } from '../../src/replay/processes.ts';
import { createScanner } from '../../src/scan/scanner.ts';
import { messageLogFor } from '../../src/notify/record.ts';
import type { MessageLog } from '../../src/store/message-log.ts';
import { openStore, type Store } from '../../src/store/store.ts';

export interface TestGateway {
  gateway: Gateway;
  port: number;
  sink: SmtpSink | null;
  store: Store;
  messageLog: MessageLog;
  config: Config;
  dir: string;
  close(): Promise<void>;
}

export async function startTestGateway(
  overrides: Record<string, unknown> = {},
  options: { sinkArgs?: string[]; noSink?: boolean; hooks?: Partial<GatewayHooks>; routes?: LocalRoute[]; store?: Store } = {},
): Promise<TestGateway> {
  const dir = mkdtempSync(join(tmpdir(), 'bs-edge-'));
  const sink = options.noSink ? null : await startSmtpSink(join(dir, 'sink'), options.sinkArgs);
  const config = parseConfig({
    dataDir: join(dir, 'data'),
    // Port 0: the kernel picks, so parallel test files never race for a port.
    smtp: { listen: '127.0.0.1:0', hostname: 'mx.example.net', greetingDelayMs: 0, ...((overrides.smtp as object) ?? {}) },
    domains: ['example.net'],
    // Port 1 (tcpmux) is never served here: a next hop that refuses connections.
    nextHop: sink ? `smtp://127.0.0.1:${sink.port}` : 'smtp://127.0.0.1:1',
    store: 'pglite-memory:',
    ...Object.fromEntries(Object.entries(overrides).filter(([k]) => k !== 'smtp')),
  });
  const store = options.store ?? (await openStore('pglite-memory:'));
  // As `backstop serve` wires it: config.records, and the detections in the same commits when notify: is on.
  const { messageLog, detect } = messageLogFor(store.db, config);
  const gateway = await startGateway({ config, store, scanner: createScanner(config), logger: process.env.BACKSTOP_TEST_LOG ? createLogger(process.env.BACKSTOP_TEST_LOG) : silentLogger, messageLog, nodeName: 'test', hooks: options.hooks, routes: options.routes, ...(detect ? { detect } : {}) });
  return {
    gateway,
    port: gateway.address.port,
    sink,
    store,
    messageLog,
    config,
    dir,
    async close() {
      await gateway.close();
      await messageLog.flush();
      await sink?.stop();
      if (!options.store) await store.close();
    },
  };
}

/** Every message record so far, oldest first (the log's pending group committed first). */
export async function messageRecords(on: { messageLog: MessageLog; store: Store }) {
  await on.messageLog.flush();
  return on.store.db.selectFrom('messages').selectAll().orderBy('received_at').execute();
}

export interface SwaksResult {
  exitCode: number;
  transcript: string;
  /** Every reply line the server sent, e.g. "250 2.0.0 Ok". */
  replies: string[];
  /** The last reply (to the end of DATA, or the command that failed). */
  last: string;
}

export function swaks(port: number, args: string[], input?: string | Buffer): Promise<SwaksResult> {
  return new Promise((resolve) => {
    const child = spawn('swaks', ['--server', `127.0.0.1:${port}`, '--timeout', '30', '--hide-informational', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.stdin.end(input ?? '');
    child.on('close', (code) => {
      const replies = out
        .split('\n')
        .filter((l) => /^(<-|<~|<\*\*|<~\*)\s+\d{3}[ -]/.test(l))
        .map((l) => l.replace(/^(<-|<~|<\*\*|<~\*)\s+/, ''));
      const meaningful = replies.filter((r) => !/^221 /.test(r));
      resolve({ exitCode: code ?? -1, transcript: out, replies, last: meaningful[meaningful.length - 1] ?? '' });
    });
  });
}

export const EICAR = 'X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*';

export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
