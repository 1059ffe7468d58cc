/*
 * test/helpers/cluster — N real `backstop serve` processes on one PostgreSQL,
 * a capture relay for everything they send (smtp-sink), a next hop, and a
 * worm-wave client that binds each source to its own 127.x address and
 * retries like an MTA (a dropped connection or a 4xx is tried again; 250 and
 * 5xx are final). Then the counting (src/replay/exactly-once.ts, shared with
 * `backstop replay --nodes N`): what the clients were told against what the
 * store holds and what reached the relay.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { countExactlyOnce, exactlyOnceLines, outboxDrained } from '../../src/replay/exactly-once.ts';
import { freePort, startBackstop, startSmtpSink, type RunningProcess, type SmtpSink } from '../../src/replay/processes.ts';
import { EICAR } from './gateway.ts';

export interface Node {
  name: string;
  smtpPort: number;
  webPort: number;
  config: Record<string, unknown>;
  /** Extra environment for this node's process (a skewed clock, a migrations directory). */
  env: Record<string, string>;
  proc: (RunningProcess & { configFile: string }) | null;
}

export interface Cluster {
  dir: string;
  nodes: Node[];
  relay: SmtpSink;
  nextHop: SmtpSink;
  start(node: Node): Promise<void>;
  stop(): Promise<void>;
}

export const POSTMASTER = 'postmaster@example.net';
export const ABUSE_DESK = 'abuse@worms.example';

/** Node configs on `storeUrl`: discard worms, quarantine banned files, notices and reports through the capture relay. */
export async function startCluster(
  count: number,
  storeUrl: string,
  options: { reportDelay: string; digestMinutes: number; env?: (i: number) => Record<string, string>; configure?: (config: Record<string, unknown> & { smtp: Record<string, unknown> }) => void },
): Promise<Cluster> {
  const dir = mkdtempSync(join(tmpdir(), 'bs-cluster-'));
  const relay = await startSmtpSink(join(dir, 'relay'));
  const nextHop = await startSmtpSink(null);
  const nodes: Node[] = [];
  for (let i = 1; i <= count; i++) {
    const smtpPort = await freePort();
    const webPort = await freePort();
    nodes.push({
      name: `node-${i}`,
      smtpPort,
      webPort,
      proc: null,
      env: options.env?.(i) ?? {},
      config: {
        nodeName: `node-${i}`,
        dataDir: join(dir, `node-${i}`, 'data'),
        // One process per node unless a test asks for workers (smtp.workers; the default on PostgreSQL is one per core).
        smtp: { listen: `127.0.0.1:${smtpPort}`, hostname: 'mx.example.net', greetingDelayMs: 0, maxClients: 500, workers: 1 },
        domains: ['example.net'],
        nextHop: `smtp://127.0.0.1:${nextHop.port}`,
        store: storeUrl,
        web: { listen: `127.0.0.1:${webPort}` },
        actions: { infected: 'discard', banned: 'quarantine', unscannable: 'tempfail' },
        notify: { relay: `smtp://127.0.0.1:${relay.port}`, from: 'backstop@example.net', postmaster: POSTMASTER, digestMinutes: options.digestMinutes },
        // Loopback has no registry: every source's desk is an override, nothing leaves the machine.
        abuse: { reports: 'on', window: '24h', reportDelay: options.reportDelay, hourlyCap: 100_000, overrides: [{ cidr: '127.0.0.0/8', contact: ABUSE_DESK }], rdap: { enabled: false }, dns: { zone: '' }, reverseFallback: false },
        // A dead node's jobs are taken by another after 15 s: short for a test, yet longer than a hand-off and its
        // `done` mark take on a machine at load 30 (with 3 s a live node's job was taken and sent again, flagged).
        outbox: { leaseMs: 15_000, pollMs: 200 },
        log: { level: 'warn' },
      },
    });
    options.configure?.(nodes.at(-1)!.config as Record<string, unknown> & { smtp: Record<string, unknown> });
  }
  const cluster: Cluster = {
    dir,
    nodes,
    relay,
    nextHop,
    async start(node) {
      node.proc = await startBackstop(join(dir, node.name), node.config, node.env);
    },
    async stop() {
      for (const n of nodes) await n.proc?.stop();
      await relay.stop();
      await nextHop.stop();
    },
  };
  await Promise.all(nodes.map((n) => cluster.start(n)));
  return cluster;
}

/** A node process's environment that moves its wall clock by `offsetMs` (test/helpers/skewed-clock.mjs). */
export function skewedClockEnv(offsetMs: number): Record<string, string> {
  const preload = new URL('./skewed-clock.mjs', import.meta.url).pathname;
  return { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${preload}`.trim(), BACKSTOP_TEST_CLOCK_OFFSET_MS: String(offsetMs) };
}

export type Payload = 'eicar' | 'pif' | 'scr' | 'clean';

export interface WaveMessage {
  seq: number;
  sourceIp: string;
  node: number;
  payload: Payload;
  messageId: string;
}

/** The final answer a message got, or the last attempt's when it never got one. */
export interface Outcome {
  message: WaveMessage;
  code: number;
  text: string;
  attempts: number;
  /** The node whose reply it was. */
  answeredBy: number;
  at: number;
}

export function waveRaw(m: WaveMessage): string {
  const attachment = m.payload === 'clean' ? null : m.payload === 'eicar' ? { name: 'document.txt', body: EICAR } : { name: `photo.${m.payload}`, body: 'not really a program' };
  return [
    `From: friend${m.seq}@home.example`,
    'To: user@example.net',
    `Subject: wave ${m.seq}`,
    `Message-ID: ${m.messageId}`,
    'MIME-Version: 1.0',
    'Content-Type: multipart/mixed; boundary="w"',
    '',
    '--w',
    'Content-Type: text/plain',
    '',
    'see the attachment',
    ...(attachment ? ['--w', `Content-Type: application/octet-stream; name="${attachment.name}"`, `Content-Disposition: attachment; filename="${attachment.name}"`, '', attachment.body] : []),
    '--w--',
    '',
  ].join('\r\n');
}

/** One SMTP transaction from `localAddress` (to `to`): the reply to DATA (or to what failed); code 0 when the connection died first. */
export function sendOnce(port: number, localAddress: string, raw: string, to = 'user@example.net'): Promise<{ code: number; text: string }> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (r: { code: number; text: string }) => {
      if (done) return;
      done = true;
      resolve(r);
    };
    const c = new SMTPConnection({ host: '127.0.0.1', port, localAddress, name: 'home.example', ignoreTLS: true, socketTimeout: 20_000, connectionTimeout: 5000 });
    c.on('error', (err) => finish({ code: (err as { responseCode?: number }).responseCode ?? 0, text: err.message }));
    c.on('end', () => finish({ code: 0, text: 'connection closed' }));
    c.connect(() =>
      c.send({ from: 'friend@home.example', to: [to] }, raw, (err, info) => {
        if (err) finish({ code: (err as { responseCode?: number }).responseCode ?? 0, text: (err as { response?: string }).response ?? err.message });
        else finish({ code: 250, text: info.response });
        c.quit();
      }),
    );
  });
}

/** Sends every message with `concurrency` clients, retrying what got no final answer, for up to `deadlineMs`; `onAttempt` sees every reply, final or not. */
export async function sendWave(
  nodes: Node[],
  messages: WaveMessage[],
  concurrency: number,
  deadlineMs: number,
  onOutcome?: (o: Outcome) => void,
  onAttempt?: (m: WaveMessage, reply: { code: number; text: string }) => void,
): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  const queue = [...messages];
  const deadline = Date.now() + deadlineMs;
  const worker = async () => {
    for (let m = queue.shift(); m; m = queue.shift()) {
      let attempts = 0;
      let last = { code: 0, text: 'not sent' };
      while (Date.now() < deadline) {
        attempts++;
        last = await sendOnce(nodes[m.node]!.smtpPort, m.sourceIp, waveRaw(m));
        onAttempt?.(m, last);
        if (last.code === 250 || last.code >= 500) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      const o = { message: m, ...last, attempts, answeredBy: m.node, at: Date.now() };
      outcomes.push(o);
      onOutcome?.(o);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return outcomes;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export interface RunCount {
  records: { message_id: string | null; reply: string; node: string; verdict: string; verdict_detail: string | null; client_ip: string }[];
  /** Message-IDs that reached the relay more than once. */
  twice: string[];
  flagged: number;
}

/**
 * The counting every cluster test does once its wave is answered, the same
 * as `backstop replay --nodes N` does (src/replay/exactly-once.ts): every 250
 * has its committed record naming the node that gave it; then, once the
 * outbox has drained, one notice per name, one ARF per source IP counting
 * every detection of it, every detection in the first notice or in exactly
 * one digest, and no Message-ID at the relay twice unless its job is
 * flagged a possible duplicate. Throws (assert) on the first that fails.
 */
export async function verifyRun(cluster: Cluster, db: import('../../src/store/store.ts').Db, outcomes: Outcome[], assert: typeof import('node:assert/strict')): Promise<RunCount> {
  const unanswered = outcomes.filter((o) => o.code !== 250);
  assert.deepEqual(unanswered.map((o) => `${o.message.seq}: ${o.code} ${o.text}`), [], 'every message got its 250 in the end (the clients retried through the trouble)');
  const replies = outcomes.map((o) => ({ messageId: o.message.messageId, code: o.code, node: cluster.nodes[o.answeredBy]!.name }));
  const records = await db.selectFrom('messages').select(['message_id', 'reply', 'node', 'verdict', 'verdict_detail', 'client_ip']).execute();
  const count = async () => {
    const flagged = await db.selectFrom('jobs').select(['id']).where('possible_duplicate', '=', true).execute();
    return countExactlyOnce({
      replies,
      records: records.map((r) => ({ messageId: r.message_id, reply: r.reply, node: r.node, verdict: r.verdict, detail: r.verdict_detail, clientIp: r.client_ip })),
      relay: cluster.relay.messages(),
      flaggedJobIds: flagged.map((j) => j.id),
    });
  };
  const first = await count();
  assert.deepEqual(first.repliesWithoutRecord, [], 'every 250 a client saw has its committed record, naming the node that answered');

  const deadline = Date.now() + 150_000;
  for (let c = first; !outboxDrained(c); c = await count()) {
    if (Date.now() > deadline) assert.fail(`outbox not drained: ${c.notices}/${c.names} notices, ${c.reports}/${c.sources} reports, ${c.inNoticeOrDigest} of ${c.detections} in notices and digests`);
    await sleep(500);
  }
  await sleep(2000); // anything that would go out twice has had its chance
  const c = await count();
  assert.deepEqual(exactlyOnceLines(c).filter((l) => !l.holds).map((l) => `${l.name}: ${l.value} (${l.expectation})`), [], JSON.stringify(c));
  const all = cluster.relay.messages();
  assert.ok(all.every((m) => m.includes(`X-Rcpt-Args: <${POSTMASTER}>`) || m.includes(`X-Rcpt-Args: <${ABUSE_DESK}>`)), 'nothing to anyone but the postmaster and the abuse desk');
  const jobs = await db.selectFrom('jobs').select(['kind', 'state', 'sent_by']).where('kind', 'in', ['postmaster-notice', 'abuse-report']).execute();
  assert.ok(jobs.every((j) => j.state === 'done' && /^node-\d+(\/w\d+)?:\d+$/.test(j.sent_by ?? '')), `every notice and report is done and names the node that sent it: ${JSON.stringify(jobs)}`);
  const flagged = await db.selectFrom('jobs').select(['id']).where('possible_duplicate', '=', true).execute();
  return { records, twice: c.sentTwice, flagged: flagged.length };
}

const PAYLOADS: Payload[] = ['eicar', 'pif', 'clean', 'scr'];

/** `sources` × `perSource` messages; source s sends from `${subnet}.${s + 1}` to node s mod `nodes`; payloads rotate per round. */
export function planWave(sources: number, perSource: number, nodes: number, subnet: string, tag: string): WaveMessage[] {
  return Array.from({ length: sources * perSource }, (_, i) => {
    const source = i % sources;
    return { seq: i, sourceIp: `${subnet}.${source + 1}`, node: source % nodes, payload: PAYLOADS[Math.floor(i / sources) % PAYLOADS.length]!, messageId: `<${tag}-${i}@home.example>` };
  });
}
