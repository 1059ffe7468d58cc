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
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createScratchDatabase, DEFAULT_ADMIN_URL, type ScratchDatabase } from '../store/scratch.ts';
import { frontFor, modeNotes, type ReplayMode } from './front.ts';
import { approveHeldComplaints, exerciseCustomers, importCustomers } from './operator.ts';
import { freePort, startBackstop, startSmtpSink } from './processes.ts';
import { computeScoreboard, readComplaints, scoreLines, type Scoreboard } from './scoreboard.ts';
import { sendPlan } from './send.ts';
import { bindOriginals, planReplay, SIZES, type PlanEntry } from './traffic.ts';

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
    const mode = opts.mode ?? 'direct';
    const front = await frontFor(mode, { dir, smtpPort, capturePort: nextHop.port, domains: [plan.ourDomain], abuseDomain: ABUSE_DOMAIN });
    if (front.dispose) stops.push(async () => front.dispose!());
    const webPort = await freePort();
    const webUrl = `http://127.0.0.1:${webPort}`;
    const listToken = randomBytes(24).toString('base64url');
    const backstop = await startBackstop(join(dir, 'node'), {
      nodeName: 'replay-1',
      dataDir: join(dir, 'node', 'data'),
      // One process (smtp.workers: 1), so the replay's figures stay comparable with the README's earlier runs.
      smtp: { listen: `127.0.0.1:${smtpPort}`, hostname: 'mx.example.net', greetingDelayMs: 0, maxClients: 5000, workers: 1, ...front.smtp },
      ...(front.milter ? { milter: front.milter } : {}),
      domains: [plan.ourDomain],
      // Our customers' static lines and our users' office may relay through us: the ISP's smarthost.
      relayFrom: [...plan.customers.map((c) => c.network), plan.officeNetwork],
      nextHop: front.nextHop,
      clamd: opts.clamdUrl,
      store: database.url,
      web: { listen: `127.0.0.1:${webPort}` },
      actions: { infected: 'reject', banned: 'reject', unscannable: 'tempfail' },
      notify: { relay: `smtp://127.0.0.1:${relay.port}`, from: 'backstop@example.net', postmaster: POSTMASTER, digestMinutes: DIGEST_MINUTES },
      // The worm sources' desks are overrides (loopback has no registry); nothing may leave the machine.
      abuse: {
        reports: 'on', window: '24h', reportDelay: `${ABUSE_REPORT_DELAY_S}s`, hourlyCap: 100_000, overrides: plan.abuseOverrides,
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
        enforcement: { listFile: join(dir, 'node', 'restricted.txt'), listToken },
        notice: { from: DESK_FROM },
        abuseDomain: ABUSE_DOMAIN,
      },
      log: { level: 'warn' },
    });
    stops.push(() => backstop.stop());
    const { port: frontPort, postfix } = await front.start();
    if (postfix) stops.push(() => postfix.stop());
    const configFile = backstop.configFile;
    await importCustomers(configFile, dir, plan.customers);
    log(`replaying ${plan.entries.length} messages (${opts.size}, ${mode}) from ${new Set(plan.entries.map((e) => e.sourceIp)).size} sources`);
    const smtp = { host: '127.0.0.1', port: frontPort, concurrency: opts.concurrency };
    let sent = 0;
    const progress = () => {
      if (++sent % 1000 === 0) log(`  ${sent} sent`);
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
    const wave = await timed(bindOriginals(plan.entries, capturedOut()).filter((e) => e.kind !== 'outbound'));
    const results = [...outbound.results, ...wave.results].sort((a, b) => a.seq - b.seq);
    const seconds = outbound.seconds + wave.seconds;
    // Let the outbox drain: the last digest window closes, then the worker's poll sends it.
    await new Promise((r) => setTimeout(r, Math.max(DIGEST_MINUTES * 60_000, ABUSE_REPORT_DELAY_S * 1000) + 3000));
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
    const outgoing = relay.envelopes();
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
    const peak = peakRssMb(backstop.child.pid);
    if (peak !== null) scoreboard.nodePeakRssMb = peak;
    const lines = scoreLines(scoreboard);
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
