/*
 * notify/record — the one entry point the gateway calls after an infected or
 * banned verdict, and the job handlers a node runs for what it enqueues.
 *
 *   recordDetection(db, detection, policy)   one detection
 *   detectionWriter(policy)                   the same for a group, inside the gateway's
 *                                             group commit (store/message-log): a detection is
 *                                             committed with its message's record, before the reply
 *   notifyHandlers(db, config, hostname)      postmaster notices, digests, abuse reports
 *
 * Decides nothing itself: the postmaster policy (notify/postmaster) and the
 * abuse aggregation (notify/abuse) do, each in the store so all nodes agree.
 * Never enqueues anything addressed to the message's sender (R1); sender
 * notices (R2) are decided and enqueued by notify/sender's own hook.
 */
import type { Config } from '../config/schema.ts';
import { STORE_UNAVAILABLE } from '../edge/replies.ts';
import type { Job } from '../store/jobs.ts';
import { storeNow } from '../store/clock.ts';
import { MessageLog } from '../store/message-log.ts';
import type { Db, RowInserter } from '../store/store.ts';
import { abuseHandlers, recordAbuse, type AbuseHandlerOptions, type AbuseSettings, type WindowDecision } from './abuse.ts';
import type { ContactSources } from './contact.ts';
import { bootstrapSource, dnsTxtLookup, fcrdns, RdapClient, storeCache } from './lookup.ts';
import { detectionFrom } from './detection.ts';
import type { Detection } from './notice.ts';
import { postmasterHandlers, recordDetections as recordPostmaster } from './postmaster.ts';
import { senderNoticeHandlers } from './sender.ts';

export interface NotifyPolicy {
  /** Postmaster notices and digests; null: none. */
  digestMinutes: number | null;
  /** Abuse reports; null: none. */
  abuse: AbuseSettings | null;
}

/** What the configuration asks for: notices need notify:, reports need notify: (to send) and abuse:. */
export function notifyPolicy(config: Pick<Config, 'notify' | 'abuse'>): NotifyPolicy {
  return { digestMinutes: config.notify?.digestMinutes ?? null, abuse: config.notify && config.abuse ? config.abuse : null };
}

export interface Recorded {
  postmaster: ('notice' | 'digest')[];
  /** Decisions for the report windows this batch opened, by source IP. */
  abuse: Map<string, WindowDecision>;
}

export async function recordDetections(db: Db, ds: readonly Detection[], policy: NotifyPolicy, now = new Date()): Promise<Recorded> {
  const postmaster = policy.digestMinutes === null ? [] : await recordPostmaster(db, ds, policy.digestMinutes, now);
  const abuse = policy.abuse ? await recordAbuse(db, ds, policy.abuse, now) : new Map<string, WindowDecision>();
  return { postmaster, abuse };
}

/** The gateway's one line: record what was found, and let the policies enqueue what they decide. */
export function recordDetection(db: Db, d: Detection, policy: NotifyPolicy, now = new Date()): Promise<Recorded> {
  return recordDetections(db, [d], policy, now);
}

/**
 * Records a group's detections in the caller's transaction — the message
 * log's group commit — so a detection is committed exactly when its
 * message's record is, and the reply (550, or 250 for discard/quarantine)
 * waits for both.
 */
export function detectionWriter(policy: NotifyPolicy): (tx: Db, ds: Detection[]) => Promise<void> {
  // Windows (digest, abuse report, hourly cap) start by the store's clock, never this node's: a node
  // whose clock is minutes off would otherwise open a digest window or a report window of its own.
  return async (tx, ds) => void (await recordDetections(tx, ds, policy, await storeNow(tx)));
}

/**
 * A node's message log as the configuration asks (config.records), with the
 * detections riding in its transactions when notify: is on; `detect` is the
 * gateway's (and milter's) half of the same wiring.
 */
export function messageLogFor(
  db: Db,
  config: Pick<Config, 'records' | 'notify' | 'abuse'>,
  onError?: (err: Error, lost: number) => void,
  /** waitForCommit: bench only (`npm run bench`'s old-batching target); transactionDeadline: off on PGlite; insertRows: PGlite's (Store.insertRows). */
  options: { waitForCommit?: boolean; transactionDeadline?: boolean; insertRows?: RowInserter } = {},
): { messageLog: MessageLog<Detection>; detect?: typeof detectionFrom } {
  const messageLog = new MessageLog<Detection>(db, {
    ...options,
    ...config.records,
    ...(config.notify ? { writeExtra: detectionWriter(notifyPolicy(config)) } : {}),
    ...(onError ? { onError } : {}),
    late: { action: 'tempfail', reply: `${STORE_UNAVAILABLE.code} ${STORE_UNAVAILABLE.message} (record committed late)` },
  });
  return config.notify ? { messageLog, detect: detectionFrom } : { messageLog };
}

/** The contact sources the configuration names (RDAP, DNS, reverse DNS, the store cache). */
export function contactSources(db: Db, abuse: AbuseSettings, dataDir: string): ContactSources {
  const rdap = new RdapClient({
    ...abuse.rdap,
    bootstrapV4: bootstrapSource(abuse.rdap.bootstrapV4, dataDir, 'ipv4'),
    bootstrapV6: bootstrapSource(abuse.rdap.bootstrapV6, dataDir, 'ipv6'),
    placeholders: abuse.placeholders,
  });
  const dns = { servers: abuse.dns.servers, timeoutMs: abuse.dns.timeoutMs };
  return {
    rdap: (ip) => rdap.lookup(ip),
    dnsTxt: dnsTxtLookup({ ...dns, zone: abuse.dns.zone, placeholders: abuse.placeholders }),
    reverse: fcrdns(dns),
    cache: storeCache(db),
  };
}

/** Every job handler a node runs for notify: and abuse:. */
export function notifyHandlers(
  db: Db,
  config: Pick<Config, 'notify' | 'abuse' | 'dataDir'>,
  hostname: string,
  options: { sources?: ContactSources; reverse?: (ip: string) => Promise<string | null>; onOutcome?: AbuseHandlerOptions['onOutcome'] } = {},
): Record<string, (payload: unknown, job: Job) => Promise<void>> {
  if (!config.notify) return {};
  const handlers: Record<string, (payload: unknown, job: Job) => Promise<void>> = {
    ...postmasterHandlers(db, config.notify, hostname, options.reverse),
    ...(config.notify.sender.enabled ? senderNoticeHandlers(config.notify, hostname) : {}),
  };
  if (config.abuse) {
    Object.assign(handlers, abuseHandlers({ db, abuse: config.abuse, notify: config.notify, hostname, sources: options.sources ?? contactSources(db, config.abuse, config.dataDir), onOutcome: options.onOutcome }));
  }
  return handlers;
}
