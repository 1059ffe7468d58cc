/*
 * desk/smarthost — Backstop's own smarthost applies the desk's decisions
 * directly, as gateway hooks (edge/gateway GatewayHooks):
 *
 * - restrictionHook: at MAIL FROM (and RCPT, for clients that pipeline), a
 *   client address inside a line restricted at level port25-block or
 *   walled-garden is refused `550 5.7.1` with the portal hint. Lines at level
 *   `smarthost` are let through: their mail is scanned like all mail, which
 *   is the point of forcing it here. The set is the one last published
 *   (desk_enforcement, following the customer's current leases), read from
 *   the store at most every few seconds per node.
 * - deskDecidedHook: mail relayed for one of our customers (t.relayed) that
 *   the scan found infected or banned, from an address attributed to a
 *   customer, becomes incident evidence (source 'gateway'): header lines and
 *   the malware name only, never the body.
 */
import ipaddr from 'ipaddr.js';
import type { DecidedMessage, HookOutcome, TransactionView } from '../edge/gateway.ts';
import type { Db } from '../store/store.ts';
import type { RestrictionLevel } from './lifecycle.ts';
import type { EvidenceInput } from './incidents.ts';

type Net = { range: [ipaddr.IPv4 | ipaddr.IPv6, number]; level: RestrictionLevel };

export interface RestrictionHookOptions {
  /** How long a node trusts its copy of the published set (default 5 s). */
  cacheMs?: number;
  /** Where the customer reads about it (the portal's base URL). */
  hint?: string;
  clock?: () => Date;
}

function parseNets(addresses: readonly string[]): Net[] {
  const nets: Net[] = [];
  for (const a of addresses) {
    const [cidr, level] = a.split(' ');
    try {
      nets.push({ range: ipaddr.parseCIDR(cidr!), level: (level ?? 'walled-garden') as RestrictionLevel });
    } catch {
      // not ours to fix here: the publisher writes only normalised CIDRs
    }
  }
  return nets;
}

/** The restriction level that covers `ip` in the published set, if any. */
export function levelFor(nets: readonly Net[], ip: string): RestrictionLevel | null {
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    addr = ipaddr.process(ip);
  } catch {
    return null;
  }
  let found: RestrictionLevel | null = null;
  for (const n of nets) {
    if (n.range[0].kind() !== addr.kind()) continue;
    if (addr.match(n.range)) {
      if (n.level !== 'smarthost') return n.level;
      found = 'smarthost';
    }
  }
  return found;
}

export function restrictionHook(db: Db, opts: RestrictionHookOptions = {}) {
  const cacheMs = opts.cacheMs ?? 5000;
  const clock = opts.clock ?? (() => new Date());
  let cached: { at: number; nets: Net[] } | null = null;
  async function nets(): Promise<Net[]> {
    const now = clock().getTime();
    if (cached && now - cached.at < cacheMs) return cached.nets;
    const row = await db.selectFrom('desk_enforcement').select('addresses').where('id', '=', 1).executeTakeFirst();
    cached = { at: now, nets: parseNets(row?.addresses ?? []) };
    return cached.nets;
  }
  const hint = opts.hint ? ` see ${opts.hint.replace(/[^\x21-\x7e]/g, '')}` : '';
  const check = async (t: TransactionView): Promise<HookOutcome> => {
    const level = levelFor(await nets(), t.clientIp);
    if (level === 'port25-block' || level === 'walled-garden') {
      return { outcome: 'reply', action: 'desk-restricted', reply: { code: 550, message: `5.7.1 Mail from this connection is restricted because of an infection; the link in our notice to you lifts it once cleaned;${hint}` } };
    }
    return { outcome: 'continue' };
  };
  return {
    mail: check,
    rcpt: (t: TransactionView, _rcpt: string) => check(t),
  };
}

/** The header lines of a raw message (up to 32 kB), never its body. */
export function headerLines(raw: Uint8Array): string {
  const text = Buffer.from(raw.subarray(0, 65_536)).toString('latin1');
  const end = text.search(/\r?\n\r?\n/);
  return (end === -1 ? text : text.slice(0, end)).slice(0, 32_768);
}

export interface DecidedHookDeps {
  attribute(db: Db, q: { ip: string; at: Date; port?: number }): Promise<{ kind: string; customerId?: string | number }>;
  recordEvidence(db: Db, e: EvidenceInput): Promise<{ incidentId: string; opened: boolean }>;
}

export function deskDecidedHook(db: Db, deps: DecidedHookDeps) {
  return async (t: TransactionView, d: DecidedMessage): Promise<void> => {
    if (!t.relayed) return;
    if (d.verdict.kind !== 'infected' && d.verdict.kind !== 'banned') return;
    const a = await deps.attribute(db, { ip: t.clientIp, at: d.receivedAt, port: t.clientPort });
    if (a.kind !== 'customer' || a.customerId === undefined) return;
    const what = d.verdict.kind === 'infected' ? d.verdict.name : d.verdict.test;
    await deps.recordEvidence(db, {
      customerId: String(a.customerId),
      source: 'gateway',
      ip: t.clientIp,
      observedAt: d.receivedAt,
      summary: d.verdict.kind === 'infected' ? `Our mail gateway found ${what} in mail sent from this connection` : `Our mail gateway refused a banned attachment (${what}) in mail sent from this connection`,
      headers: headerLines(d.raw),
      malware: d.verdict.kind === 'infected' ? [what] : [],
    });
  };
}
