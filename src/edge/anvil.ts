/*
 * edge/anvil — per-client limits on connections, messages and recipients,
 * counted the way Postfix's anvil(8) counts them for smtpd: by the client's
 * IP address, over a fixed window, with exceptions for networks you trust.
 *
 * Which counts are per node and which are shared, and why:
 *   - concurrent connections and the connection rate are counted per node, in
 *     memory. They protect this node's sockets and memory, which is what a
 *     connection flood exhausts; one node cannot run out of another's sockets.
 *     A node of several worker processes (smtp.workers, cluster/) counts them
 *     once, in its primary: a worker asks it over IPC at each connection
 *     (cluster/worker), so the limit is the node's whatever worker the
 *     round-robin hands a connection to.
 *   - messages and recipients per window are shared by every node through the
 *     store (table edge_client_rates), so a worm that spreads its connections
 *     over all MX hosts meets one limit. Each node adds what it counted to the
 *     store every `flushMs` (500 ms) and reads the total back; in between it
 *     decides on that total plus its own unflushed count. A client can pass
 *     its limit by what the other nodes counted since this node's last flush
 *     — the price of not writing to the store for every message on the hot
 *     path; a per-node limit never lags.
 *
 * The decisions (`admitConnection`, `overRate`) are pure; the counters are
 * small adapters. Trusts nothing but the socket's peer address (connections)
 * and the transaction's client (messages, recipients: the real client behind
 * a trusted proxy). Never refuses with a 5xx: a limit is temporary trouble for
 * the sender (421 for connections, 450 for messages and recipients, as
 * Postfix answers), so nothing is lost, only delayed.
 */
import { sql } from 'kysely';
import type { Config } from '../config/schema.ts';
import type { Db } from '../store/store.ts';
import type { Reply } from './replies.ts';
import { compileNetworks, inNetworks, normaliseIp, type Networks } from './relay.ts';

export interface AnvilLimits {
  /** Simultaneous connections from one client to this node; 0 = no limit. */
  connectionsPerClient: number;
  /** Connections one client may open to this node per window; 0 = no limit. */
  connectionsPerWindow: number;
  /** Messages (MAIL FROM) one client may start per window, all nodes together; 0 = no limit. */
  messagesPerWindow: number;
  /** Recipients (RCPT TO) one client may ask for per window, all nodes together; 0 = no limit. */
  recipientsPerWindow: number;
  windowMs: number;
  /** Clients no limit applies to (CIDRs): your own networks, the MTA in front of a proxy. */
  exempt: readonly string[];
}

/** The limits as configured (smtp.limits). */
export function anvilLimits(config: Pick<Config, 'smtp'>): AnvilLimits {
  const { windowSeconds, ...rest } = config.smtp.limits;
  return { ...rest, windowMs: windowSeconds * 1000 };
}

/** What a limit answers (Postfix's texts; the client IP is ours to print: it is the socket's, already parsed). */
export const TOO_MANY_CONNECTIONS = (ip: string): Reply => ({ code: 421, message: `4.7.0 Error: too many connections from ${ip}` });
export const CONNECTING_TOO_FAST = (ip: string): Reply => ({ code: 421, message: `4.7.0 Error: too many connections from ${ip}, slow down` });
export const TOO_MUCH_MAIL = (ip: string): Reply => ({ code: 450, message: `4.7.1 Error: too much mail from ${ip}` });
export const TOO_MANY_RECIPIENTS = (ip: string): Reply => ({ code: 450, message: `4.7.1 Error: too many recipients from ${ip}` });

/** The start of the fixed window `now` falls in. */
export function windowStart(now: number, windowMs: number): number {
  return Math.floor(now / windowMs) * windowMs;
}

/** Pure: may one more connection be opened, given how many are open and how many were opened this window? */
export function admitConnection(limits: Pick<AnvilLimits, 'connectionsPerClient' | 'connectionsPerWindow'>, open: number, openedThisWindow: number): 'ok' | 'concurrency' | 'rate' {
  if (limits.connectionsPerClient > 0 && open >= limits.connectionsPerClient) return 'concurrency';
  if (limits.connectionsPerWindow > 0 && openedThisWindow >= limits.connectionsPerWindow) return 'rate';
  return 'ok';
}

/** Pure: is `count` (including the one being asked for) past `limit`? A limit of 0 is no limit. */
export function overRate(limit: number, count: number): boolean {
  return limit > 0 && count > limit;
}

/** The key one client is counted under: IPv4-mapped IPv6 is the IPv4 address, so one host is one client. */
function clientKey(ip: string): string {
  return normaliseIp(ip)?.toString() ?? ip;
}

/** Admitted (call release when the connection ends, once) or the reply to refuse it with. */
export type Admission = { release: () => void } | { refuse: Reply };

/** What the gateway asks at each connection: this process's counts, or the primary's for all its workers. */
export interface ConnectionAdmitter {
  admit(ip: string): Admission | Promise<Admission>;
}

/**
 * Per-node connection counts. `admit(ip)` answers a release (admitted; call
 * it when the connection ends) or the reply to refuse with.
 */
export class ConnectionCounter implements ConnectionAdmitter {
  private readonly open = new Map<string, number>();
  private opened = new Map<string, number>();
  private window = 0;
  private readonly exempt: Networks;

  constructor(
    private readonly limits: AnvilLimits,
    private readonly now: () => number = Date.now,
  ) {
    this.exempt = compileNetworks(limits.exempt);
  }

  admit(ip: string): Admission {
    if (inNetworks(ip, this.exempt)) return { release: () => {} };
    const key = clientKey(ip);
    const start = windowStart(this.now(), this.limits.windowMs);
    // A new window forgets the last one's counts, so the map never outgrows one window of clients.
    if (start !== this.window) {
      this.window = start;
      this.opened = new Map();
    }
    const open = this.open.get(key) ?? 0;
    const verdict = admitConnection(this.limits, open, this.opened.get(key) ?? 0);
    if (verdict === 'concurrency') return { refuse: TOO_MANY_CONNECTIONS(key) };
    if (verdict === 'rate') return { refuse: CONNECTING_TOO_FAST(key) };
    this.open.set(key, open + 1);
    this.opened.set(key, (this.opened.get(key) ?? 0) + 1);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        const left = (this.open.get(key) ?? 1) - 1;
        if (left > 0) this.open.set(key, left);
        else this.open.delete(key);
      },
    };
  }

  /** Open connections per client (for tests and the console). */
  openCount(ip: string): number {
    return this.open.get(clientKey(ip)) ?? 0;
  }
}

type Counted = 'messages' | 'recipients';

/**
 * Message and recipient counts shared by all nodes. `hit()` counts one event
 * and answers whether the client is now past its limit; it never waits for
 * the store (the flush runs on a timer), so a slow store slows no sender.
 */
export class SharedRateCounter {
  /** What the store said at the last flush: client → counts for `window`. */
  private known = new Map<string, Record<Counted, number>>();
  /** What this node counted since the last flush. */
  private pending = new Map<string, Record<Counted, number>>();
  private window = 0;
  private readonly exempt: Networks;
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;

  constructor(
    private readonly db: Db,
    private readonly limits: AnvilLimits,
    private readonly options: { flushMs?: number; now?: () => number; onError?: (err: Error) => void } = {},
  ) {
    this.exempt = compileNetworks(limits.exempt);
  }

  get enabled(): boolean {
    return this.limits.messagesPerWindow > 0 || this.limits.recipientsPerWindow > 0;
  }

  start(): void {
    if (!this.enabled || this.timer) return;
    this.timer = setInterval(() => void this.flush(), this.options.flushMs ?? 500);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.flush();
  }

  private roll(): void {
    const start = windowStart((this.options.now ?? Date.now)(), this.limits.windowMs);
    if (start === this.window) return;
    // Unflushed counts of the old window are dropped with it: they can no longer refuse anyone.
    this.window = start;
    this.known = new Map();
    this.pending = new Map();
  }

  /** Counts `n` events of `what` for `ip`; true when the client is past its limit for them. */
  hit(ip: string, what: Counted, n = 1): boolean {
    const limit = what === 'messages' ? this.limits.messagesPerWindow : this.limits.recipientsPerWindow;
    if (limit === 0 || inNetworks(ip, this.exempt)) return false;
    this.roll();
    const key = clientKey(ip);
    const mine = this.pending.get(key) ?? { messages: 0, recipients: 0 };
    const total = (this.known.get(key)?.[what] ?? 0) + mine[what] + n;
    if (overRate(limit, total)) return true;
    mine[what] += n;
    this.pending.set(key, mine);
    return false;
  }

  /** Adds this node's counts to the store's and reads the totals back. */
  flush(): Promise<void> {
    if (this.flushing) return this.flushing;
    this.flushing = this.write().finally(() => (this.flushing = null));
    return this.flushing;
  }

  private async write(): Promise<void> {
    if (this.pending.size === 0) return;
    const window = this.window;
    const batch = this.pending;
    this.pending = new Map();
    try {
      const rows = [...batch].map(([client, c]) => ({ client, window_start: new Date(window), messages: c.messages, recipients: c.recipients }));
      const totals = await this.db
        .insertInto('edge_client_rates')
        .values(rows)
        .onConflict((oc) =>
          oc.columns(['client', 'window_start']).doUpdateSet({
            messages: sql`edge_client_rates.messages + excluded.messages`,
            recipients: sql`edge_client_rates.recipients + excluded.recipients`,
          }),
        )
        .returning(['client', 'messages', 'recipients'])
        .execute();
      if (window !== this.window) return;
      for (const row of totals) this.known.set(row.client, { messages: Number(row.messages), recipients: Number(row.recipients) });
      // Old windows go now and then; nothing depends on them.
      if (Math.random() < 0.01) await this.db.deleteFrom('edge_client_rates').where('window_start', '<', new Date(window - this.limits.windowMs)).execute();
    } catch (err) {
      // Counts that could not be shared stay this node's own: the limit still holds here.
      if (window === this.window) {
        for (const [client, c] of batch) {
          const mine = this.pending.get(client) ?? { messages: 0, recipients: 0 };
          this.pending.set(client, { messages: mine.messages + c.messages, recipients: mine.recipients + c.recipients });
        }
      }
      this.options.onError?.(err as Error);
    }
  }
}
