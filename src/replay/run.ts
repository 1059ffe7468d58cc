/*
 * replay/run — `backstop replay`: a mail worm outbreak replayed against a
 * running Backstop with real clamd and a real next hop, ending in the
 * mission's scoreboard.
 *
 * It starts its own world on loopback: clamd with a signature database made
 * by sigtool from Debian's clamav-testfiles (plus EICAR), Postfix's smtp-sink
 * as the next hop (our users' mailboxes) and as the outgoing relay (where
 * every notice, report and complaint Backstop sends is captured), and a
 * Backstop node on a generated configuration. Then it sends the plan, waits
 * for the outbox to drain, and counts.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startBackstop, startSmtpSink } from './processes.ts';
import { computeScoreboard, scoreLines, type Scoreboard } from './scoreboard.ts';
import { sendPlan } from './send.ts';
import { planReplay, SIZES } from './traffic.ts';

const POSTMASTER = 'postmaster@example.net';
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
}

export interface ReplayOutcome {
  scoreboard: Scoreboard;
  lines: ReturnType<typeof scoreLines>;
  passed: boolean;
}

export async function runReplay(opts: ReplayOptions): Promise<ReplayOutcome> {
  const log = opts.log ?? (() => {});
  const dir = mkdtempSync(join(tmpdir(), 'backstop-replay-'));
  const plan = planReplay(SIZES[opts.size], opts.seed);
  const nextHop = await startSmtpSink(join(dir, 'mailboxes'));
  const relay = await startSmtpSink(join(dir, 'relay'));
  const smtpPort = await freePort();
  const webPort = await freePort();
  const backstop = await startBackstop(join(dir, 'node'), {
    nodeName: 'replay-1',
    dataDir: join(dir, 'node', 'data'),
    smtp: { listen: `127.0.0.1:${smtpPort}`, hostname: 'mx.example.net', greetingDelayMs: 0, maxClients: 5000 },
    domains: [plan.ourDomain],
    nextHop: `smtp://127.0.0.1:${nextHop.port}`,
    clamd: opts.clamdUrl,
    store: `pglite:${join(dir, 'node', 'db')}`,
    web: { listen: `127.0.0.1:${webPort}` },
    actions: { infected: 'reject', banned: 'reject', unscannable: 'tempfail' },
    notify: { relay: `smtp://127.0.0.1:${relay.port}`, from: 'backstop@example.net', postmaster: POSTMASTER, digestMinutes: DIGEST_MINUTES },
    // The worm sources' desks are overrides (loopback has no registry); nothing may leave the machine.
    abuse: {
      reports: 'on', window: '24h', reportDelay: `${ABUSE_REPORT_DELAY_S}s`, hourlyCap: 100_000, overrides: plan.abuseOverrides,
      rdap: { enabled: false }, dns: { zone: '' }, reverseFallback: false,
    },
    // The backscatter shield enforcing; complaints wait for review, so nothing of it is sent.
    backscatter: { mode: 'enforce', complaints: { mode: 'review' } },
    log: { level: 'warn' },
  });
  try {
    log(`replaying ${plan.entries.length} messages (${opts.size}) from ${new Set(plan.entries.map((e) => e.sourceIp)).size} sources`);
    const started = process.hrtime.bigint();
    const results = await sendPlan(plan.entries, { host: '127.0.0.1', port: smtpPort, concurrency: opts.concurrency }, (done) => {
      if (done % 1000 === 0) log(`  ${done} sent`);
    });
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    // Let the outbox drain: the last digest window closes, then the worker's poll sends it.
    await new Promise((r) => setTimeout(r, Math.max(DIGEST_MINUTES * 60_000, ABUSE_REPORT_DELAY_S * 1000) + 3000));
    const outgoing = relay.envelopes();
    const scoreboard = computeScoreboard(
      plan,
      results,
      { nextHop: nextHop.messages(), outgoingRecipients: outgoing.flatMap((m) => m.rcptTo), outgoing, postmaster: POSTMASTER },
      seconds,
      opts.size,
    );
    const lines = scoreLines(scoreboard);
    const passed = lines.every((l) => l.holds);
    if (opts.output) writeFileSync(opts.output, JSON.stringify({ ...scoreboard, lines, passed }, null, 2) + '\n');
    return { scoreboard, lines, passed };
  } finally {
    await backstop.stop();
    await nextHop.stop();
    await relay.stop();
    if (!opts.keep) rmSync(dir, { recursive: true, force: true });
  }
}
