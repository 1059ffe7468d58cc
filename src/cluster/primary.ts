/*
 * cluster/primary — a node of several worker processes (smtp.workers > 1,
 * PostgreSQL store): node:cluster's primary, a thin supervisor that does no
 * mail work and opens no store. It
 *   - starts N workers (`backstop serve` again, slot K of N in their
 *     environment), which share its listening sockets (SMTP, web, milter:
 *     round-robin, node:cluster's default on Linux); each worker is a whole
 *     node on the shared store, named NAME/wK in what it writes;
 *   - starts again a worker that dies, after a wait that doubles while it
 *     keeps dying young (cluster/plan), and logs why it died; a worker that
 *     dies before any worker of the node was ever ready is a node that
 *     cannot start: every worker is stopped and `serve` fails, as a
 *     one-process node does;
 *   - counts the node's connections per client (edge/anvil) for all
 *     workers, answering each worker's admission over IPC, and forgets a dead
 *     worker's connections with it;
 *   - gathers every worker's metrics for a scrape (prom-client's
 *     AggregatorRegistry), asked by whichever worker the scrape reached;
 *   - passes SIGTERM/SIGINT to every worker (each drains as `serve` does)
 *     and exits when all are gone: 0 when every one stopped cleanly.
 * It trusts its workers (its own children) and nothing else; it holds no
 * mail, so its own death loses none: the workers see the channel close and
 * stop gracefully.
 */
import cluster, { type Worker } from 'node:cluster';
import { fileURLToPath } from 'node:url';
import { AggregatorRegistry } from 'prom-client';
import type { Config } from '../config/schema.ts';
import { anvilLimits, ConnectionCounter } from '../edge/anvil.ts';
import { removeStaleSocket } from '../milter/server.ts';
import type { Logger } from '../obs/log.ts';
import { isWorkerMessage, WORKER_COUNT_ENV, WORKER_SLOT_ENV, type PrimaryMessage } from './ipc.ts';
import { RESTART_POLICY, restartDelay, workerIdentity, type RestartPolicy } from './plan.ts';

interface Slot {
  slot: number;
  worker: Worker | null;
  startedAt: number;
  quickDeaths: number;
  restart: NodeJS.Timeout | null;
  /** The connections this slot's worker holds, by its admission id: released when it dies. */
  leases: Map<number, () => void>;
}

export interface PrimaryOptions {
  config: Config;
  /** The node's name (config.nodeName or the host name). */
  nodeName: string;
  workers: number;
  /** The `backstop` arguments a worker runs with (serve and its options). */
  args: string[];
  logger: Logger;
  restart?: RestartPolicy;
}

/** Runs the node as primary until SIGTERM/SIGINT has stopped every worker; resolves with the exit code. */
export function runPrimary(options: PrimaryOptions): Promise<number> {
  const { config, nodeName, workers: count, logger } = options;
  const policy = options.restart ?? RESTART_POLICY;
  const log = logger.child({ role: 'primary', node: nodeName });
  cluster.setupPrimary({ exec: fileURLToPath(new URL('../../bin/backstop.js', import.meta.url)), args: options.args });
  // The workers share the primary's socket; a socket file a previous run left is removed once, here, before any listens.
  if (config.milter) removeStaleSocket(config.milter.listen);
  const connections = new ConnectionCounter(anvilLimits(config));
  const aggregator = new AggregatorRegistry();
  const slots: Slot[] = Array.from({ length: count }, (_, i) => ({ slot: i + 1, worker: null, startedAt: 0, quickDeaths: 0, restart: null, leases: new Map() }));
  let stopping = false;
  let everReady = false;
  let exitCode = 0;

  return new Promise<number>((resolve) => {
    const finishIfDone = () => {
      if (!stopping || slots.some((s) => s.worker || s.restart)) return;
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      log.info({ exitCode }, 'every worker has stopped');
      resolve(exitCode);
    };

    const stop = (why: string) => {
      if (!stopping) log.info({ why }, 'stopping every worker');
      stopping = true;
      for (const s of slots) {
        if (s.restart) clearTimeout(s.restart);
        s.restart = null;
        // Every time: a worker hears a second SIGTERM as nothing (it is already draining).
        s.worker?.process.kill('SIGTERM');
      }
      finishIfDone();
    };
    const onSignal = (signal: NodeJS.Signals) => stop(signal);
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);

    const reply = (w: Worker, m: PrimaryMessage) => {
      if (w.isConnected()) w.send(m);
    };

    const start = (s: Slot) => {
      const w = cluster.fork({ [WORKER_SLOT_ENV]: String(s.slot), [WORKER_COUNT_ENV]: String(count) });
      s.worker = w;
      s.startedAt = Date.now();
      w.on('error', (err) => log.warn({ worker: workerIdentity(nodeName, s.slot), err: err.message }, 'worker channel error'));
      w.on('message', (m: unknown) => {
        if (!isWorkerMessage(m)) return; // prom-client's replies go their own way
        switch (m.bs) {
          case 'ready':
            everReady = true;
            log.info({ worker: workerIdentity(nodeName, s.slot), pid: w.process.pid }, 'worker ready');
            break;
          case 'admit': {
            const admitted = connections.admit(m.ip);
            if ('refuse' in admitted) return reply(w, { bs: 'admitted', id: m.id, refuse: admitted.refuse });
            s.leases.set(m.id, admitted.release);
            return reply(w, { bs: 'admitted', id: m.id, refuse: null });
          }
          case 'release':
            s.leases.get(m.id)?.();
            s.leases.delete(m.id);
            break;
          case 'metrics':
            aggregator.clusterMetrics().then(
              (text) => reply(w, { bs: 'metrics', id: m.id, text }),
              (err: Error) => reply(w, { bs: 'metrics', id: m.id, error: err.message }),
            );
            break;
        }
      });
      w.once('exit', (code, signal) => {
        // Its connections died with it.
        for (const release of s.leases.values()) release();
        s.leases.clear();
        s.worker = null;
        const identity = workerIdentity(nodeName, s.slot);
        if (stopping) {
          if (code !== 0) {
            // The first failure's code stands (a worker that failed to start), else 1.
            if (exitCode === 0) exitCode = 1;
            log.warn({ worker: identity, code, signal }, 'worker did not stop cleanly');
          }
          return finishIfDone();
        }
        if (!everReady) {
          log.error({ worker: identity, code, signal }, 'worker failed to start: stopping the node (its error is above)');
          exitCode = code || 1;
          return stop('a worker failed to start');
        }
        const ranMs = Date.now() - s.startedAt;
        const next = restartDelay(policy, s.quickDeaths, ranMs);
        s.quickDeaths = next.quickDeaths;
        log.error({ worker: identity, pid: w.process.pid, code, signal, ranMs, restartInMs: next.waitMs }, `worker died (${signal ? `signal ${signal}` : `exit code ${code}`}): starting it again`);
        s.restart = setTimeout(() => {
          s.restart = null;
          if (!stopping) start(s);
        }, next.waitMs);
      });
    };

    log.info({ workers: count }, 'starting the workers');
    for (const s of slots) start(s);
  });
}
