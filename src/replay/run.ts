/*
 * replay/run — `backstop replay`: a mail worm outbreak replayed against a
 * running Backstop with real clamd and a real next hop, ending in the
 * mission's scoreboard.
 *
 * It starts its own world on loopback: clamd with a signature database made
 * by sigtool from Debian's clamav-testfiles (plus EICAR), Postfix's smtp-sink
 * as the next hop (our users' mailboxes) and as the outgoing relay (where
 * every notice, report and complaint Backstop sends is captured), and a
 * Backstop node on a generated configuration over a fresh PostgreSQL
 * database — PostgreSQL because the operator's `backstop` commands run
 * beside the node on the same store, as they do at an ISP (PGlite is one
 * process's). Then the operator imports the customers and their static
 * assignments; our users' mail goes out first (so the remote MTAs' real
 * bounces of it can quote what the node really sent: the signed sender and
 * the stamp), then the wave with those bounces interleaved; the outbox drains, the operator approves
 * the complaints held for review, and each infected customer goes through
 * the desk (replay/operator.ts). Then it counts.
 *
 * With `nodes` > 1 it runs that many nodes on the one database, the sources'
 * messages spread over them (traffic.ts spreadOverNodes), and counts the
 * crash guarantees too (replay/exactly-once.ts): every reply has its record
 * naming the node that gave it, one notice per name, one report per source,
 * every detection in one digest, nothing sent twice unflagged. `killNode`
 * SIGKILLs the second node a third of the way into the wave and restarts
 * it; its clients fail over to the next node, as a sender does to the next
 * MX.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createScratchDatabase, DEFAULT_ADMIN_URL, type ScratchDatabase } from '../store/scratch.ts';
import { openStore } from '../store/store.ts';
import { countExactlyOnce, exactlyOnceLines, firstCopies, header, outboxDrained, perNodeLines, type ExactlyOnce, type NodeShare } from './exactly-once.ts';
import { frontFor, modeNotes, type ReplayMode } from './front.ts';
import { approveHeldComplaints, exerciseCustomers, importCustomers } from './operator.ts';
import { freePort, startBackstop, startSmtpSink, type RunningProcess } from './processes.ts';
import { computeScoreboard, expectedReportSources, percentile, readComplaints, scoreLines, type Scoreboard } from './scoreboard.ts';
import { sendPlan, type SendResult } from './send.ts';
import { bindOriginals, buildRaw, planReplay, SIZES, spreadOverNodes, type PlanEntry } from './traffic.ts';

const POSTMASTER = 'postmaster@example.net';
/** Complaints to bouncing MTAs and the desk's notices to customers come from these (real mailboxes in life). */
const COMPLAINT_FROM = 'backscatter@example.net';
const DESK_FROM = 'abuse-desk@example.net';
/** The desk's per-IP alias domain (<ip>@ABUSE_DOMAIN): Backstop's SMTP route in every mode. */
const ABUSE_DOMAIN = 'abuse.example.net';
/** The desk's grace period; the operator's fake clock jumps past it. */
const GRACE_HOURS = 72;
/** Short digest windows so a replay of seconds sees its digests. */
const DIGEST_MINUTES = 0.05;
/** Reports wait this long after a source's first detection, counting what came meanwhile. */
const ABUSE_REPORT_DELAY_S = 2;
/**
 * With several nodes, the exactly-once lines check that each report counts
 * every detection of its source, so the report waits until the source is
 * done: a source's messages span the whole small wave (19 s at a load
 * average of 14 on the 2-core machine); in the large one sources take
 * turns, each over seconds to a minute. A report sent earlier would rightly
 * leave out what came after it (one report per window), and fail the line.
 */
const MULTI_NODE_REPORT_DELAY_S = { small: 60, large: 180 };
/** The most nodes a replay starts (each is a `backstop serve` process). */
export const MAX_REPLAY_NODES = 8;

/** Why a combination of options cannot run, or null. Shared by the CLI (a usage error) and runReplay. */
export function replayOptionsProblem(o: { nodes: number; mode: ReplayMode; killNode: boolean }): string | null {
  if (!Number.isInteger(o.nodes) || o.nodes < 1 || o.nodes > MAX_REPLAY_NODES) return `--nodes must be a whole number from 1 to ${MAX_REPLAY_NODES}`;
  if (o.nodes > 1 && o.mode !== 'direct') {
    return `--nodes ${o.nodes} runs with --mode direct only (the sources spread over the nodes' own listeners, as several MX records do); one front Postfix feeding several nodes is not built. Use --mode direct --nodes ${o.nodes}, or --mode ${o.mode} with one node`;
  }
  if (o.killNode && o.nodes < 2) return '--kill-node needs --nodes 2 or more (the killed node\'s clients fail over to another)';
  return null;
}

export interface ReplayOptions {
  size: 'small' | 'large';
  seed: number;
  concurrency: number;
  clamdUrl: string;
  output?: string;
  keep?: boolean;
  log?: (line: string) => void;
  /** Where the sources connect (replay/front.ts): Backstop itself (default), a Postfix with Backstop as its proxy filter, or as its milter. */
  mode?: ReplayMode;
  /** A PostgreSQL URL on which the replay may create (and drop) its own database; default the local server. */
  pgAdminUrl?: string;
  /** Backstop nodes on the one database (default 1), the sources' messages spread over them. */
  nodes?: number;
  /** SIGKILL the second node a third of the way into the wave, then restart it. */
  killNode?: boolean;
}

export interface ReplayOutcome {
  scoreboard: Scoreboard;
  lines: ReturnType<typeof scoreLines>;
  passed: boolean;
  mode: ReplayMode;
  /** What the mode changes about how the lines were reached (replay/front.ts modeNotes). */
  notes: string[];
  /** The front Postfix's log (postfix-proxy, milter modes): where its refusals of the wave show. */
  postfixLog?: string;
}

export async function runReplay(opts: ReplayOptions): Promise<ReplayOutcome> {
  const log = opts.log ?? (() => {});
  const nodeCount = opts.nodes ?? 1;
  const mode = opts.mode ?? 'direct';
  const problem = replayOptionsProblem({ nodes: nodeCount, mode, killNode: opts.killNode ?? false });
  if (problem) throw new Error(problem);
  const dir = mkdtempSync(join(tmpdir(), 'backstop-replay-'));
  const plan = planReplay(SIZES[opts.size], opts.seed);
  const pgAdmin = opts.pgAdminUrl ?? process.env.BACKSTOP_REPLAY_PG ?? DEFAULT_ADMIN_URL;
  let database: ScratchDatabase;
  try {
    database = await createScratchDatabase('bs_replay', pgAdmin);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`the replay needs a PostgreSQL server it may create a database on (${pgAdmin.replace(/\/\/[^@/]*@/, '//…@')}; set BACKSTOP_REPLAY_PG): ${(err as Error).message}`);
  }
  // Whatever was started is stopped again, in reverse order, however the run ends.
  const stops: (() => Promise<void>)[] = [];
  try {
    const nextHop = await startSmtpSink(join(dir, 'mailboxes'));
    stops.push(() => nextHop.stop());
    const relay = await startSmtpSink(join(dir, 'relay'));
    stops.push(() => relay.stop());
    const smtpPort = await freePort();
    const front = await frontFor(mode, { dir, smtpPort, capturePort: nextHop.port, domains: [plan.ourDomain], abuseDomain: ABUSE_DOMAIN });
    if (front.dispose) stops.push(async () => front.dispose!());
    const webPort = await freePort();
    const webUrl = `http://127.0.0.1:${webPort}`;
    const listToken = randomBytes(24).toString('base64url');
    const nodeConfig = (i: number, nodeSmtpPort: number, nodeWebPort: number) => ({
      nodeName: `replay-${i + 1}`,
      dataDir: join(dir, nodeDir(i), 'data'),
      // One process per node (smtp.workers: 1), so the replay's figures stay comparable with the README's earlier runs.
      smtp: { listen: `127.0.0.1:${nodeSmtpPort}`, hostname: 'mx.example.net', greetingDelayMs: 0, maxClients: 5000, workers: 1, ...front.smtp },
      ...(front.milter ? { milter: front.milter } : {}),
      domains: [plan.ourDomain],
      // Our customers' static lines and our users' office may relay through us: the ISP's smarthost.
      relayFrom: [...plan.customers.map((c) => c.network), plan.officeNetwork],
      nextHop: front.nextHop,
      clamd: opts.clamdUrl,
      store: database.url,
      web: { listen: `127.0.0.1:${nodeWebPort}` },
      actions: { infected: 'reject', banned: 'reject', unscannable: 'tempfail' },
      notify: { relay: `smtp://127.0.0.1:${relay.port}`, from: 'backstop@example.net', postmaster: POSTMASTER, digestMinutes: DIGEST_MINUTES },
      // The worm sources' desks are overrides (loopback has no registry); nothing may leave the machine.
      abuse: {
        reports: 'on', window: '24h', reportDelay: `${nodeCount > 1 ? MULTI_NODE_REPORT_DELAY_S[opts.size] : ABUSE_REPORT_DELAY_S}s`, hourlyCap: 100_000, overrides: plan.abuseOverrides,
        // Our own customers' space is the desk's, never an ARF report's.
        customerSpace: plan.customerSpace,
        rdap: { enabled: false }, dns: { zone: '' }, reverseFallback: false,
      },
      // The backscatter shield enforcing; complaints wait for review (the default), the operator approves them.
      backscatter: { mode: 'enforce', complaints: { mode: 'review', from: COMPLAINT_FROM } },
      desk: {
        graceHours: GRACE_HOURS,
        restriction: { level: 'walled-garden' },
        portal: { baseUrl: webUrl },
        enforcement: { listFile: join(dir, nodeDir(i), 'restricted.txt'), listToken },
        notice: { from: DESK_FROM },
        abuseDomain: ABUSE_DOMAIN,
      },
      // A killed node's claimed jobs go to another after 15 s (default 60 s): longer than a live node's hand-off and
      // `done` mark take at load 30 (test/helpers/cluster.ts found 3 s too short: a live node's job sent again, flagged).
      ...(nodeCount > 1 ? { outbox: { leaseMs: 15_000, pollMs: 200 } } : {}),
      log: { level: 'warn' },
    });
    // Node 1 keeps the ports and the web address the operator and the customers use.
    const nodes: ReplayNode[] = [{ config: nodeConfig(0, smtpPort, webPort), proc: null }];
    for (let i = 1; i < nodeCount; i++) nodes.push({ config: nodeConfig(i, await freePort(), await freePort()), proc: null });
    const startNode = async (i: number) => {
      nodes[i]!.proc = await startBackstop(join(dir, nodeDir(i)), nodes[i]!.config);
    };
    // Started together; each that came up is stopped again even when another failed to.
    const started = await Promise.allSettled(nodes.map((_, i) => startNode(i)));
    for (const n of nodes) if (n.proc) stops.push(() => n.proc!.stop());
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    const smtpPorts = nodes.map((n) => n.proc!.port);
    const { port: frontPort, postfix } = await front.start();
    if (postfix) stops.push(() => postfix.stop());
    const configFile = nodes[0]!.proc!.configFile;
    await importCustomers(configFile, dir, plan.customers);
    log(`replaying ${plan.entries.length} messages (${opts.size}, ${mode}) from ${new Set(plan.entries.map((e) => e.sourceIp)).size} sources${nodeCount > 1 ? ` over ${nodeCount} nodes` : ''}`);
    const spread = spreadOverNodes(plan.entries, nodeCount);
    const smtp = { host: '127.0.0.1', port: frontPort, concurrency: opts.concurrency, ...(nodeCount > 1 ? { ports: smtpPorts, nodeOf: (e: PlanEntry) => spread.get(e.seq) ?? 0 } : {}) };
    let sent = 0;
    let onReply = (_r: SendResult) => {};
    const progress = (_done: number, r: SendResult) => {
      if (++sent % 1000 === 0) log(`  ${sent} sent`);
      onReply(r);
    };
    const timed = async (entries: PlanEntry[]) => {
      const started = process.hrtime.bigint();
      const results = await sendPlan(entries, smtp, progress);
      return { results, seconds: Number(process.hrtime.bigint() - started) / 1e9 };
    };
    // 1. Our users' mail out, until the next hop has what was accepted (or 30 s): the originals the remote MTAs bounce.
    const outbound = await timed(plan.entries.filter((e) => e.kind === 'outbound'));
    const accepted = outbound.results.filter((r) => r.code === 250).length;
    const capturedOut = () => nextHop.envelopes().filter((m) => /^X-Replay-Kind: outbound/m.test(m.text));
    for (let waited = 0; capturedOut().length < accepted && waited < 30_000; waited += 200) await new Promise((r) => setTimeout(r, 200));
    // 2. The wave, with the real bounces of that mail (built from what the next hop captured) interleaved.
    const waveEntries = bindOriginals(plan.entries, capturedOut()).filter((e) => e.kind !== 'outbound');
    const kill = opts.killNode ? killMidWave(nodes, 1, Math.ceil(waveEntries.length / 3), () => startNode(1), log) : null;
    if (kill) onReply = kill.onReply;
    const wave = await timed(waveEntries);
    await kill?.restarted;
    const results = [...outbound.results, ...wave.results].sort((a, b) => a.seq - b.seq);
    const seconds = outbound.seconds + wave.seconds;
    // Let the outbox drain: the last digest window closes, then the worker's poll sends it.
    await new Promise((r) => setTimeout(r, Math.max(DIGEST_MINUTES * 60_000, ABUSE_REPORT_DELAY_S * 1000) + 3000));
    // Several nodes: wait until the outbox has sent what it will (a dead node's jobs wait out their lease), then a moment for any repeat.
    const store = nodeCount > 1 ? await openStore(database.url, { migrate: false, poolSize: 2 }) : null;
    if (store) stops.push(() => store.close());
    const sentEntries = [...plan.entries.filter((e) => e.kind === 'outbound'), ...waveEntries];
    const countNow = async (): Promise<{ counts: ExactlyOnce; flagged: string[] }> => {
      const records = await store!.db.selectFrom('messages').select(['message_id', 'reply', 'node', 'verdict', 'verdict_detail', 'client_ip']).execute();
      const flagged = (await store!.db.selectFrom('jobs').select(['id']).where('possible_duplicate', '=', true).execute()).map((j) => j.id);
      const counts = countExactlyOnce({
        replies: finalReplies(sentEntries, results, nodes),
        records: records.map((r) => ({ messageId: r.message_id, reply: r.reply, node: r.node, verdict: r.verdict, detail: r.verdict_detail, clientIp: r.client_ip })),
        relay: relay.messages(),
        flaggedJobIds: flagged,
        reportedSources: expectedReportSources(plan),
      });
      return { counts, flagged };
    };
    if (store) {
      for (let waited = 0; !outboxDrained((await countNow()).counts) && waited < (MULTI_NODE_REPORT_DELAY_S[opts.size] + 120) * 1000; waited += 500) await new Promise((r) => setTimeout(r, 500));
      await new Promise((r) => setTimeout(r, 2000));
    }
    // Behind a Postfix, what was accepted is in its queue until it reaches the capture.
    if (postfix && !(await postfix.drained())) log(`Postfix's queue did not drain:\n${await postfix.queue()}`);
    log('operator: approving the complaints held for review');
    await approveHeldComplaints(configFile, () => relay.envelopes().filter((m) => m.mailFrom.toLowerCase() === COMPLAINT_FROM).length, log);
    log(`operator: ${plan.customers.length} infected customers through the desk`);
    const customers = await exerciseCustomers(plan.customers, {
      configFile,
      smtp: { host: '127.0.0.1', port: smtpPort },
      webUrl,
      listToken,
      graceHours: GRACE_HOURS,
      relayed: () => relay.envelopes(),
      deskFrom: DESK_FROM,
      log,
    });
    const final = store ? await countNow() : null;
    // A flagged possible duplicate is judged by the exactly-once line; the other lines count it once.
    const outgoing = final ? firstCopies(relay.envelopes(), final.flagged) : relay.envelopes();
    const complaints = await readComplaints(outgoing.filter((m) => m.mailFrom.toLowerCase() === COMPLAINT_FROM));
    const scoreboard = computeScoreboard(
      plan,
      results,
      {
        nextHop: nextHop.messages(),
        outgoingRecipients: outgoing.flatMap((m) => m.rcptTo),
        outgoing,
        postmaster: POSTMASTER,
        complaintFrom: COMPLAINT_FROM,
        complaints,
        deskFrom: DESK_FROM,
        customers,
      },
      seconds,
      opts.size,
    );
    const peaks = nodes.map((n) => peakRssMb(n.proc?.child.pid)).filter((p): p is number => p !== null);
    if (peaks.length > 0) scoreboard.nodePeakRssMb = Math.max(...peaks);
    const lines = scoreLines(scoreboard);
    if (final) {
      const shares = nodeShares(nodes, results, final.counts, sentEntries, kill);
      scoreboard.nodes = shares;
      scoreboard.exactlyOnce = final.counts;
      lines.push(...perNodeLines(shares, seconds), ...exactlyOnceLines(final.counts));
    }
    const passed = lines.every((l) => l.holds);
    const notes = modeNotes(mode);
    if (opts.output) writeFileSync(opts.output, JSON.stringify({ mode, ...scoreboard, lines, notes, passed }, null, 2) + '\n');
    return { scoreboard, lines, passed, mode, notes, ...(postfix ? { postfixLog: postfix.log() } : {}) };
  } finally {
    for (const stop of stops.reverse()) await stop();
    if (opts.keep) log(`kept ${dir} and the database ${database.url}`);
    else {
      rmSync(dir, { recursive: true, force: true });
      await database.drop();
    }
  }
}

interface ReplayNode {
  config: Record<string, unknown> & { nodeName: string };
  proc: (RunningProcess & { configFile: string }) | null;
}

/** Node 1 lives in `node/` as it always has; the others beside it. */
const nodeDir = (i: number) => (i === 0 ? 'node' : `node-${i + 1}`);

/** The replies to end of DATA that have a record to find: each with its message's Message-ID and the node's name. */
function finalReplies(entries: readonly PlanEntry[], results: readonly SendResult[], nodes: readonly ReplayNode[]) {
  const messageIds = new Map(entries.map((e) => [e.seq, header(buildRaw(e).toString('latin1'), 'Message-ID') ?? '']));
  return results
    .filter((r) => r.endOfData && (r.code === 250 || r.code >= 500))
    .map((r) => ({ messageId: messageIds.get(r.seq) ?? '', code: r.code, node: nodes[r.node ?? 0]!.config.nodeName, seq: r.seq }));
}

/**
 * SIGKILLs node `victim` once `after` replies of the wave were given, waits
 * for its exit, and starts it again a second later; remembers what it had
 * answered before it died (the replies whose records must survive).
 */
function killMidWave(nodes: ReplayNode[], victim: number, after: number, restart: () => Promise<void>, log: (line: string) => void) {
  let replies = 0;
  const before: SendResult[] = [];
  let fire: () => void = () => {};
  const due = new Promise<void>((resolve) => (fire = resolve));
  const restarted = (async () => {
    await due;
    const child = nodes[victim]!.proc!.child;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    log(`${nodes[victim]!.config.nodeName} SIGKILLed after ${replies} replies of the wave (${before.length} of them its own); restarting it`);
    await new Promise((r) => setTimeout(r, 1000));
    await restart();
    log(`${nodes[victim]!.config.nodeName} restarted`);
  })();
  return {
    victim,
    before,
    restarted,
    onReply(r: SendResult) {
      if (replies >= after) return;
      if (r.node === victim && r.code > 0) before.push(r);
      if (++replies === after) fire();
    },
  };
}

/** Each node's share of the replies (both sending phases), its p99, and for the killed node what survived of its replies. */
function nodeShares(nodes: readonly ReplayNode[], results: readonly SendResult[], counts: ExactlyOnce, entries: readonly PlanEntry[], kill: ReturnType<typeof killMidWave> | null): NodeShare[] {
  const missing = new Set(counts.repliesWithoutRecord);
  const beforeKill = kill ? finalReplies(entries, kill.before, nodes) : [];
  return nodes.map((n, i) => {
    const own = results.filter((r) => (r.node ?? 0) === i && r.code > 0);
    return {
      node: n.config.nodeName,
      answered: own.length,
      p99Ms: percentile(own.map((r) => r.latencyMs).sort((a, b) => a - b), 99),
      ...(kill?.victim === i ? { killed: { answeredBefore: beforeKill.length, withoutRecord: beforeKill.filter((r) => missing.has(r.messageId)).length } } : {}),
    };
  });
}

/** A process's peak resident set size in MB (Linux /proc VmHWM), or null where there is none. */
function peakRssMb(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const kb = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb ? Math.round(Number(kb) / 1024) : null;
  } catch {
    return null;
  }
}
