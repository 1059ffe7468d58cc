/*
 * cli/commands/serve — runs a Backstop node: the SMTP gateway (and, when
 * milter: is configured, the milter) and the web side over one store. Any number of nodes may share one PostgreSQL.
 *
 * With smtp.workers above 1 (the default on PostgreSQL: one per core) this
 * process is the node's primary (cluster/primary): it runs no role itself
 * and starts the workers, each `serve` again as a whole node named NAME/wK,
 * sharing the listening sockets. See cluster/plan for the count.
 *
 * Start-up order matters: the store (and its migrations) first, so a node that
 * cannot record or quarantine never takes mail; the SMTP listener last.
 * Shutdown is the reverse, and flushes the message log.
 */
import cluster from 'node:cluster';
import { availableParallelism, hostname } from 'node:os';
import { effectiveWorkers, workerIdentity } from '../../cluster/plan.ts';
import { runPrimary } from '../../cluster/primary.ts';
import { joinPrimary, type PrimaryLink } from '../../cluster/worker.ts';
import { anvilLimits } from '../../edge/anvil.ts';
import { splitHostPort } from '../../config/listen.ts';
import { startShield } from '../../backscatter/serve.ts';
import { startGateway, type GatewayHooks } from '../../edge/gateway.ts';
import { createJudge } from '../../edge/judge.ts';
import { startMilter, type MilterServer } from '../../milter/server.ts';
import { messageLogFor, notifyHandlers, notifyPolicy } from '../../notify/record.ts';
import { senderNoticeHook } from '../../notify/sender.ts';
import { StoreClock } from '../../store/clock.ts';
import { runWorker } from '../../store/jobs.ts';
import { createLogger } from '../../obs/log.ts';
import { clamdErrorsTotal, labelNode, reportGroupCommit, storeErrorsTotal } from '../../obs/metrics.ts';
import { createScanner } from '../../scan/scanner.ts';
import { buildWebApp } from '../../web/server.ts';
import { deskIntake } from '../../desk/wiring.ts';
import { deskRuntime } from '../../desk/runtime.ts';
import { parseCommandArgs } from '../args.ts';
import { CONFIG_OPTION, commandConfig, withConfigStore } from '../store.ts';
import type { Command } from '../command.ts';
import type { Config } from '../../config/schema.ts';
import type { Store } from '../../store/store.ts';

export const command: Command = {
  summary: 'Run a Backstop node (SMTP gateway and web) on the given configuration, or on the embedded defaults.',
  usage: 'backstop serve [--config FILE]',
  async run(args) {
    const { values } = parseCommandArgs(args, CONFIG_OPTION);
    const config = commandConfig(values.config);
    const nodeName = config.nodeName ?? hostname();
    const workers = effectiveWorkers(config.smtp.workers, config.store, availableParallelism());
    if (cluster.isPrimary && workers > 1) return runPrimary({ config, nodeName, workers, args: ['serve', ...args], logger: createLogger(config.log.level) });
    const link = joinPrimary();
    try {
      // withConfigStore opens the store first (a node that cannot record or quarantine never takes mail) and closes it last, also when start-up fails.
      return await withConfigStore(config, (store) => serveNode(store, config, nodeName, link, link ? workers : 1));
    } finally {
      link?.close();
    }
  },
};

/**
 * One node, or one worker of a node (`link`: its primary, `processes`: its workers), until SIGTERM/SIGINT
 * (or its primary's end) and its graceful stop.
 */
async function serveNode(store: Store, config: Config, node: string, link: PrimaryLink | null, processes: number): Promise<number> {
  const logger = createLogger(config.log.level);
  // What this process writes in records, jobs and logs: the node, and which of its workers.
  const nodeName = workerIdentity(node, link?.slot ?? null);
  labelNode(node, link ? `w${link.slot}` : null);
  // The store's time without a round trip per message: a record's received_at and the shared rate and
  // backscatter windows are dated by it, so a node whose own clock is off dates them as the others do.
  const clock = await StoreClock.start(store.db, { onError: (err) => logger.warn({ err: err.message }, 'could not read the store\'s clock: dating by the last reading') });
  const storeTime = () => clock.now();

  // Every message's record, and with it the detection behind notices and reports, is committed
  // before the reply to DATA (group commit, config.records); a store that fails or is slow is a 451.
  // BACKSTOP_BENCH_REPLY_BEFORE_COMMIT=1 brings back the old batching (reply first, record up to 1 s later)
  // for `npm run bench` to measure what waiting costs, side by side. Never for mail that matters.
  const replyFirst = process.env.BACKSTOP_BENCH_REPLY_BEFORE_COMMIT === '1';
  if (replyFirst) logger.warn('BACKSTOP_BENCH_REPLY_BEFORE_COMMIT=1: replies go out before their records are committed (benchmark only): a crash loses the records of answered mail');
  const { messageLog, detect } = messageLogFor(
    store.db,
    config,
    (err, lost) => {
      storeErrorsTotal.inc({ what: 'message-log' });
      logger.error({ err: err.message, lost }, 'message log record could not be written');
    },
    { waitForCommit: !replyFirst, transactionDeadline: store.kind === 'postgres', ...(store.insertRows ? { insertRows: store.insertRows } : {}) },
  );
  reportGroupCommit(() => messageLog.stats);
  const scanner = createScanner(config, { onClamdError: () => clamdErrorsTotal.inc() }, { processes });
  if (!config.clamd) logger.warn('no clamd configured: scanning with the built-in policy only (EICAR, banned names and types, archives)');
  if (config.domains.length === 0 && config.relayFrom.length === 0) {
    logger.warn('no domains and no relayFrom configured: every recipient will be refused (Backstop is never an open relay)');
  }

  const hooks: Partial<GatewayHooks> = { decided: [] };
  const stopWorkers = new AbortController();
  const workers: Promise<void>[] = [];
  // The backscatter shield (R7): hooks in the gateway, complaint jobs in this node's worker.
  const shield = await startShield(config, store, logger, storeTime);
  if (shield) Object.assign(hooks, shield.hooks);
  // The abuse desk's intake (R8): per-IP aliases and abuse@ as a gateway route, forwards in the worker, the public form.
  const desk = deskIntake(config, store, logger);
  // The desk's incidents (R9): smarthost hooks, timers and enforcement in their own worker, the portal on the web app.
  const incidents = deskRuntime(config, store.db, logger);
  if (incidents) {
    hooks.mail = [...(hooks.mail ?? []), ...incidents.hooks.mail];
    hooks.rcpt = [...(hooks.rcpt ?? []), ...incidents.hooks.rcpt];
    hooks.decided!.push(...incidents.hooks.decided);
    await incidents.start();
    workers.push(
      runWorker({
        db: store.db,
        worker: `${nodeName}:${process.pid}:desk`,
        hostname: config.smtp.hostname,
        leaseMs: config.outbox.leaseMs,
        pollMs: config.outbox.pollMs,
        handlers: incidents.handlers,
        signal: stopWorkers.signal,
        onError: (job, err, outcome) => logger.warn({ job: job.id, kind: job.kind, err: err.message, outcome }, 'desk job failed'),
      }),
    );
  }
  if (desk && !config.notify) logger.warn('desk: reports are taken in, but forwards to customers wait until notify.relay is configured');
  if (config.notify) {
    const policy = notifyPolicy(config);
    workers.push(
      runWorker({
        db: store.db,
        worker: `${nodeName}:${process.pid}`,
        hostname: config.smtp.hostname,
        leaseMs: config.outbox.leaseMs,
        pollMs: config.outbox.pollMs,
        handlers: { ...notifyHandlers(store.db, config, config.smtp.hostname), ...shield?.handlers, ...desk?.handlers },
        signal: stopWorkers.signal,
        onError: (job, err, outcome) => logger.warn({ job: job.id, kind: job.kind, err: err.message, outcome }, 'outbox job failed'),
      }),
    );
    logger.info({ postmaster: config.notify.postmaster, abuseReports: policy.abuse ? policy.abuse.reports : 'not configured' }, 'notify: postmaster notices on; abuse reports per abuse:');
    if (config.notify.sender.enabled) {
      logger.warn(
        { nonForging: config.notify.sender.nonForging },
        'notify.sender is enabled and acknowledged: authenticated senders of banned files (and of the non-forging names listed) get one notice a day; senders of worms never do (R1, R2)',
      );
      hooks.decided!.push(senderNoticeHook(store.db, config.notify, config.smtp.hostname, (d, e) => logger.info({ id: d.id, ok: e.ok, why: e.ok ? e.via : e.reason }, 'sender notice decision')));
    }
  } else {
    logger.info('notify: not configured, no postmaster notices or abuse reports are sent');
  }

  const gateway = await startGateway({ config, store, scanner, logger, messageLog, nodeName, hooks, clock: storeTime, ...(link ? { connections: link.connections(anvilLimits(config)) } : {}), ...(detect ? { detect } : {}), ...(desk ? { routes: [desk.route] } : {}) });
  // The milter role: the same checks and the same judge as the gateway, for an MTA that asks (smtpd_milters).
  let milter: MilterServer | null = null;
  if (config.milter) {
    const all: GatewayHooks = { mail: [], rcpt: [], data: [], decided: [], ...hooks };
    const judge = createJudge({ config, store, scanner, logger: logger.child({ role: 'milter' }), messageLog, nodeName, hooks: all, hookTimeoutMs: 30_000, clock: storeTime, ...(detect ? { detect } : {}) });
    milter = await startMilter({ config: { ...config, milter: config.milter }, judge, hooks: all, hookTimeoutMs: 30_000, logger, sharedSocket: link !== null });
  }
  // The console shows this configuration (secrets masked) and releases quarantined mail through its next hop.
  const web = buildWebApp({ store, logger, nodeName, config, ...(link ? { metrics: () => link.metrics() } : {}), ...(desk?.publicForm ? { publicForm: desk.publicForm } : {}), ...(incidents ? { routes: [incidents.web] } : {}) });
  const { host, port } = splitHostPort(config.web.listen);
  await web.listen({ host, port });
  logger.info({ smtp: gateway.address, ...(milter ? { milter: milter.address } : {}), web: config.web.listen, store: store.kind, nextHop: config.nextHop, node: nodeName }, 'backstop is running');
  link?.ready();

  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'shutting down');
      resolve();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    if (link) {
      // A worker hears a stop twice (a terminal's SIGINT reaches the whole process group, then the primary's SIGTERM): the second must not kill it mid-drain.
      process.on('SIGINT', () => {});
      process.on('SIGTERM', () => {});
      void link.gone.then(() => stop('the primary is gone'));
    }
  });
  await milter?.close();
  await gateway.close();
  await shield?.close();
  stopWorkers.abort();
  await Promise.all(workers);
  await web.close();
  await messageLog.flush();
  await scanner.close();
  clock.stop();
  return 0;
}
