/*
 * obs/metrics — the Prometheus metrics every role reports into, served at
 * GET /metrics. One registry per process; names follow Prometheus conventions.
 * A node of several worker processes (smtp.workers) answers a scrape with
 * every worker's series, gathered by its primary (cluster/), each labelled
 * worker="wK": sum by (node) gives the node.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export const registry = new Registry();
collectDefaultMetrics({ register: registry, prefix: 'backstop_process_' });

/** Every series this process reports carries node="NAME" (and worker="wK" in a node of several workers), so one Prometheus tells N nodes sharing a store apart. */
export function labelNode(node: string, worker: string | null = null): void {
  registry.setDefaultLabels(worker === null ? { node } : { node, worker });
}

export const messagesTotal = new Counter({
  name: 'backstop_messages_total',
  help: 'Messages that reached end of DATA, by verdict and action taken',
  labelNames: ['verdict', 'action'] as const,
  registers: [registry],
});

export const scanSeconds = new Histogram({
  name: 'backstop_scan_seconds',
  help: 'Time to scan one message (built-in policy and clamd)',
  buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  registers: [registry],
});

export const clamdErrorsTotal = new Counter({
  name: 'backstop_clamd_errors_total',
  help: 'clamd calls that failed (connection, timeout, protocol)',
  registers: [registry],
});

export const openSessions = new Gauge({
  name: 'backstop_smtp_sessions_open',
  help: 'SMTP sessions currently connected',
  registers: [registry],
});

export const nextHopErrorsTotal = new Counter({
  name: 'backstop_next_hop_errors_total',
  help: 'Failures talking to the next hop (connection or protocol), answered to the sender as 4xx',
  registers: [registry],
});

export const storeErrorsTotal = new Counter({
  name: 'backstop_store_errors_total',
  help: 'Store writes that failed',
  labelNames: ['what'] as const,
  registers: [registry],
});

/** The message log's group commit (store/message-log), read at each scrape: records ÷ commits = records per transaction. */
let groupCommit: (() => { groups: number; records: number }) | null = null;
export function reportGroupCommit(stats: () => { groups: number; records: number }): void {
  groupCommit = stats;
}

new Counter({
  name: 'backstop_record_commits_total',
  help: "Transactions of the message log's group commit",
  registers: [registry],
  collect() {
    this.reset();
    if (groupCommit) this.inc(groupCommit().groups);
  },
});

new Counter({
  name: 'backstop_records_committed_total',
  help: 'Message records committed by the group commit (÷ backstop_record_commits_total: records per transaction)',
  registers: [registry],
  collect() {
    this.reset();
    if (groupCommit) this.inc(groupCommit().records);
  },
});
