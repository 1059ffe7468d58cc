/*
 * cluster/worker — a worker process's end of node:cluster (smtp.workers):
 * what `serve` needs from its primary. The worker is otherwise a whole node
 * on the shared PostgreSQL store; through this link it only
 *   - says it is ready (its listeners are up), so the primary can tell a
 *     node that failed to start from a worker that died later;
 *   - asks the primary to admit each connection: the node's per-client
 *     connection limits are counted once, there, for all workers (the
 *     round-robin hands one client's connections to every worker);
 *   - answers a scrape with every worker's metrics, which the primary
 *     gathers (prom-client's AggregatorRegistry);
 *   - learns that the primary is gone (the channel closed: it was killed),
 *     and then stops as on SIGTERM, draining its sessions.
 * Never waits for the primary where it cannot answer: when the channel has
 * closed, a pending admission is a 421 (the node is stopping) and a scrape
 * an error.
 */
import cluster from 'node:cluster';
import { AggregatorRegistry } from 'prom-client';
import type { Admission, AnvilLimits, ConnectionAdmitter } from '../edge/anvil.ts';
import { compileNetworks, inNetworks } from '../edge/relay.ts';
import { SHUTTING_DOWN } from '../edge/replies.ts';
import { registry } from '../obs/metrics.ts';
import { isPrimaryMessage, WORKER_COUNT_ENV, WORKER_SLOT_ENV, type WorkerMessage } from './ipc.ts';

export interface PrimaryLink {
  /** This worker's slot, 1…count: the same after a restart. */
  slot: number;
  count: number;
  ready(): void;
  /** The node's connection counts, kept by the primary. */
  connections(limits: AnvilLimits): ConnectionAdmitter;
  /** The node's metrics: every worker's series. */
  metrics(): Promise<string>;
  /** Resolves when the primary is gone. */
  gone: Promise<void>;
  /** Closes the channel, so the process exits once its work is done. */
  close(): void;
}

/** The link to the primary when this process is a cluster worker, else null. */
export function joinPrimary(): PrimaryLink | null {
  if (!cluster.isWorker) return null;
  const slot = Number(process.env[WORKER_SLOT_ENV]);
  const count = Number(process.env[WORKER_COUNT_ENV]);
  if (!Number.isInteger(slot) || !Number.isInteger(count) || slot < 1 || slot > count) throw new Error(`a cluster worker needs ${WORKER_SLOT_ENV} and ${WORKER_COUNT_ENV} from its primary`);
  // prom-client's worker side: it answers the primary's gathering with this process's registry.
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([registry]);

  let nextId = 0;
  const admissions = new Map<number, (a: Admission) => void>();
  const scrapes = new Map<number, { resolve: (text: string) => void; reject: (err: Error) => void }>();
  const send = (m: WorkerMessage): boolean => {
    if (!process.connected || !process.send) return false;
    process.send(m, () => {}); // an error here is the channel closing: 'disconnect' settles what waits
    return true;
  };
  process.on('message', (m: unknown) => {
    if (!isPrimaryMessage(m)) return;
    if (m.bs === 'admitted') {
      const settle = admissions.get(m.id);
      admissions.delete(m.id);
      if (!settle) return;
      let released = false;
      settle(
        m.refuse
          ? { refuse: m.refuse }
          : {
              release: () => {
                if (released) return;
                released = true;
                send({ bs: 'release', id: m.id });
              },
            },
      );
    } else {
      const scrape = scrapes.get(m.id);
      scrapes.delete(m.id);
      if ('text' in m) scrape?.resolve(m.text);
      else scrape?.reject(new Error(`the primary could not gather the workers' metrics: ${m.error}`));
    }
  });
  const gone = new Promise<void>((resolve) =>
    process.once('disconnect', () => {
      for (const settle of admissions.values()) settle({ refuse: SHUTTING_DOWN });
      admissions.clear();
      for (const s of scrapes.values()) s.reject(new Error('the primary is gone'));
      scrapes.clear();
      resolve();
    }),
  );

  return {
    slot,
    count,
    gone,
    ready: () => void send({ bs: 'ready' }),
    connections(limits) {
      const exempt = compileNetworks(limits.exempt);
      const unlimited = limits.connectionsPerClient === 0 && limits.connectionsPerWindow === 0;
      return {
        admit(ip) {
          // What the primary would admit anyway is not asked for: no round trip for exempt or unlimited clients.
          if (unlimited || inNetworks(ip, exempt)) return { release: () => {} };
          const id = ++nextId;
          return new Promise<Admission>((resolve) => {
            admissions.set(id, resolve);
            if (!send({ bs: 'admit', id, ip })) {
              admissions.delete(id);
              resolve({ refuse: SHUTTING_DOWN });
            }
          });
        },
      };
    },
    metrics() {
      const id = ++nextId;
      return new Promise<string>((resolve, reject) => {
        scrapes.set(id, { resolve, reject });
        if (!send({ bs: 'metrics', id })) {
          scrapes.delete(id);
          reject(new Error('the primary is gone'));
        }
      });
    },
    close: () => cluster.worker?.disconnect(),
  };
}
