/*
 * cluster/ipc — the messages a node's primary and its workers exchange over
 * node:cluster's IPC channel (smtp.workers): a worker is ready (listening); a
 * worker asks whether one more connection from a client is admitted (the
 * node's per-client connection limits, counted once in the primary,
 * edge/anvil) and says when it ends; a worker asks for the node's metrics
 * (every worker's, gathered by the primary for a scrape).
 *
 * The channel carries prom-client's own messages too; ours are told apart by
 * their `bs` field. Both ends are this program's own processes, so a message
 * is checked for its shape, not distrusted.
 */
import type { Reply } from '../edge/replies.ts';

export type WorkerMessage =
  | { bs: 'ready' }
  | { bs: 'admit'; id: number; ip: string }
  | { bs: 'release'; id: number }
  | { bs: 'metrics'; id: number };

export type PrimaryMessage =
  | { bs: 'admitted'; id: number; refuse: Reply | null }
  | { bs: 'metrics'; id: number; text: string }
  | { bs: 'metrics'; id: number; error: string };

const WORKER_KINDS = new Set(['ready', 'admit', 'release', 'metrics']);
const PRIMARY_KINDS = new Set(['admitted', 'metrics']);

function tagged(m: unknown, kinds: Set<string>): boolean {
  return typeof m === 'object' && m !== null && typeof (m as { bs?: unknown }).bs === 'string' && kinds.has((m as { bs: string }).bs);
}

export const isWorkerMessage = (m: unknown): m is WorkerMessage => tagged(m, WORKER_KINDS);
export const isPrimaryMessage = (m: unknown): m is PrimaryMessage => tagged(m, PRIMARY_KINDS);

/** The environment the primary starts a worker with: which slot (1…N) of how many it is. */
export const WORKER_SLOT_ENV = 'BACKSTOP_WORKER';
export const WORKER_COUNT_ENV = 'BACKSTOP_WORKERS';
