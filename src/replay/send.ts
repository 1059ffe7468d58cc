/*
 * replay/send — plays a replay plan against an SMTP server as many clients:
 * each plan entry is sent from its own source address (bound to 127.x.y.z),
 * with bounded concurrency, one connection per source kept open while that
 * source has mail to send (as an infected PC's worm engine does).
 *
 * With several nodes (`ports`, `nodeOf`), each entry goes to the node
 * nodeOf picks, the source keeping one connection per node it uses.
 *
 * Records what each client saw: the reply code and text, which node gave it,
 * whether it answered the end of DATA, and the latency from the end of DATA
 * to the reply. A temporary failure (4xx) is retried once after a short
 * pause, like a real MTA's first retry — on the next node when the
 * connection failed (a node that does not answer: the next MX, RFC 5321
 * 5.1); the scoreboard counts legitimate mail that still has no 250 after
 * that as lost or delayed.
 */
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { buildRaw, type PlanEntry } from './traffic.ts';

export interface SendResult {
  seq: number;
  code: number;
  response: string;
  latencyMs: number;
  retried: boolean;
  /** The index (in `ports`) of the node whose reply it was. */
  node?: number;
  /** The reply is to the end of DATA (250, or a refusal of the message itself), not to the envelope or the connection. */
  endOfData?: boolean;
}

export interface SendOptions {
  host: string;
  port: number;
  /** Several nodes: their ports (`port` is then unused) and the node each entry goes to (an index into `ports`). */
  ports?: number[];
  nodeOf?: (entry: PlanEntry) => number;
  concurrency: number;
  retryDelayMs?: number;
  /** Per-command timeout; a hung server becomes a recorded failure, not a hung replay. */
  timeoutMs?: number;
}

interface Client {
  connection: SMTPConnection;
  ready: Promise<void>;
}

function openClient(opts: SendOptions, port: number, localAddress: string, helo: string): Client {
  const connection = new SMTPConnection({
    host: opts.host,
    port,
    localAddress,
    name: helo,
    ignoreTLS: true,
    connectionTimeout: opts.timeoutMs ?? 30_000,
    greetingTimeout: opts.timeoutMs ?? 30_000,
    socketTimeout: opts.timeoutMs ?? 60_000,
  });
  const ready = new Promise<void>((resolve, reject) => {
    connection.once('error', reject);
    connection.connect(() => {
      connection.removeListener('error', reject);
      resolve();
    });
  });
  connection.on('error', () => {});
  return { connection, ready };
}

function envelopeOf(entry: PlanEntry): { from: string; to: string[] } {
  switch (entry.kind) {
    case 'worm':
      return { from: entry.mailFrom, to: [entry.rcpt] };
    case 'legit':
      return { from: entry.mailFrom, to: [entry.rcpt] };
    case 'backscatter':
      // '' (the null sender) for an MTA's bounce; a vendor's notice comes from its own address.
      return { from: entry.mailFrom ?? '', to: [entry.rcpt] };
    case 'outbound':
      return { from: entry.mailFrom, to: [entry.rcpt] };
    case 'real-bounce':
      // The null sender, to the address the original left with (BATV-signed by the node).
      return { from: '', to: [entry.original?.envelopeFrom ?? entry.rcpt] };
  }
}

type Reply = { code: number; response: string; latencyMs: number; endOfData: boolean };

function sendOne(client: Client, entry: PlanEntry): Promise<Reply> {
  const raw = buildRaw(entry);
  const started = process.hrtime.bigint();
  return new Promise((resolve) => {
    client.connection.send(envelopeOf(entry), raw, (err, info) => {
      const latencyMs = Number(process.hrtime.bigint() - started) / 1e6;
      if (err) {
        // nodemailer's EMESSAGE at DATA is the server's refusal of the message once it had it all.
        const e = err as Error & { responseCode?: number; response?: string; code?: string; command?: string };
        resolve({ code: e.responseCode ?? 0, response: e.response ?? e.message, latencyMs, endOfData: e.code === 'EMESSAGE' && e.command === 'DATA' && e.responseCode !== undefined });
      } else {
        resolve({ code: 250, response: info.response, latencyMs, endOfData: true });
      }
    });
  });
}

/** Sends every entry; returns one result per entry, in plan order. */
export async function sendPlan(entries: PlanEntry[], opts: SendOptions, onProgress?: (done: number, result: SendResult) => void): Promise<SendResult[]> {
  // Group by source so each source uses one connection for its messages, in plan order.
  const bySource = new Map<string, PlanEntry[]>();
  for (const e of entries) {
    const list = bySource.get(e.sourceIp) ?? [];
    list.push(e);
    bySource.set(e.sourceIp, list);
  }
  const queue = [...bySource.entries()];
  const results: SendResult[] = [];
  let done = 0;

  const ports = opts.ports ?? [opts.port];
  async function sendSource(sourceIp: string, list: PlanEntry[]) {
    // One open connection per node this source uses.
    const clients = new Map<number, Client>();
    for (const entry of list) {
      let attempt = 0;
      let node = opts.nodeOf ? opts.nodeOf(entry) % ports.length : 0;
      let outcome: Reply = { code: 0, response: 'not sent', latencyMs: 0, endOfData: false };
      while (attempt < 2) {
        try {
          let client = clients.get(node);
          if (!client) {
            client = openClient(opts, ports[node]!, sourceIp, entry.helo);
            clients.set(node, client);
            await client.ready;
          }
          outcome = await sendOne(client, entry);
        } catch (err) {
          outcome = { code: 0, response: (err as Error).message, latencyMs: 0, endOfData: false };
        }
        if (outcome.code === 0) {
          // A failed connection is not reused (a 4xx/5xx reply leaves it usable: nodemailer resets), and the retry goes to the next node.
          clients.get(node)?.connection.close();
          clients.delete(node);
          attempt += 1;
          if (attempt < 2) {
            node = (node + 1) % ports.length;
            await new Promise((r) => setTimeout(r, opts.retryDelayMs ?? 1000));
          }
          continue;
        }
        if (outcome.code >= 400 && outcome.code < 500) {
          attempt += 1;
          if (attempt < 2) await new Promise((r) => setTimeout(r, opts.retryDelayMs ?? 1000));
          continue;
        }
        break;
      }
      const result = { seq: entry.seq, ...outcome, retried: attempt > 0, node };
      results.push(result);
      onProgress?.(++done, result);
    }
    for (const client of clients.values()) client.connection.quit();
  }

  const workers = Array.from({ length: Math.max(1, opts.concurrency) }, async () => {
    for (let next = queue.shift(); next; next = queue.shift()) await sendSource(next[0], next[1]);
  });
  await Promise.all(workers);
  return results.sort((a, b) => a.seq - b.seq);
}
