/*
 * desk/enforce — the restriction as the network applies it (R9, RFC 6561 §6).
 *
 * Pure renderers first: from the restricted entries (CIDR + level) an
 * nftables set file (per level and family, flushed and refilled in one
 * `nft -f` transaction), a complete `nft -f` script (table, sets and a
 * forward chain per level: port 25 dropped; port 25 only to the smarthost;
 * walled garden: only the allowed destinations), and a plain list.
 *
 * Then the adapter: `computeRestricted` asks the store which customers are
 * fenced in and turns each into its *current* addresses through attribution's
 * `currentAddresses`, so the outputs follow the customer's leases as they
 * change (the publish job re-runs every minute). `publishEnforcement` writes
 * the files atomically (temp file + rename), records the set's digest in the
 * store, and on a change queues a webhook job signed with HMAC-SHA256
 * (X-Backstop-Timestamp, X-Backstop-Signature: sha256=hex over
 * "<timestamp>.<body>"). `registerRestrictedList` serves GET
 * /desk/restricted.txt behind a bearer token compared in constant time.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { rename, writeFile } from 'node:fs/promises';
import type { FastifyInstance } from 'fastify';
import ipaddr from 'ipaddr.js';
import type { Config } from '../config/schema.ts';
import { enqueue } from '../store/jobs.ts';
import type { Db } from '../store/store.ts';
import type { RestrictionLevel } from './lifecycle.ts';
import { ENFORCE_JOB, restrictedCustomers, WEBHOOK_JOB } from './incidents.ts';

export interface RestrictedEntry {
  cidr: string;
  level: RestrictionLevel;
}

export interface AllowedDestination {
  name: string;
  to: string[];
  proto: 'tcp' | 'udp';
  ports: number[];
}

export interface EnforcementPolicy {
  table: string;
  smarthost: string[];
  allowed: AllowedDestination[];
  portal: string[];
  updateSites: string[];
}

export const LEVELS: readonly RestrictionLevel[] = ['port25-block', 'smarthost', 'walled-garden'];
const setName = (level: RestrictionLevel | 'restricted', family: 4 | 6) => `backstop_${level.replace(/-/g, '_')}_v${family}`;

/** "192.0.2.7" → "192.0.2.7/32"; host bits cleared; null when not an address. */
export function normaliseCidr(value: string): { cidr: string; family: 4 | 6 } | null {
  try {
    const [addr, bits] = value.includes('/') ? ipaddr.parseCIDR(value) : [ipaddr.parse(value), undefined];
    let a = addr;
    if (a.kind() === 'ipv6' && (a as ipaddr.IPv6).isIPv4MappedAddress()) a = (a as ipaddr.IPv6).toIPv4Address();
    const family = a.kind() === 'ipv4' ? 4 : 6;
    const len = bits ?? (family === 4 ? 32 : 128);
    const net = family === 4 ? ipaddr.IPv4.networkAddressFromCIDR(`${a.toString()}/${len}`) : ipaddr.IPv6.networkAddressFromCIDR(`${a.toString()}/${len}`);
    return { cidr: `${net.toString()}/${len}`, family };
  } catch {
    return null;
  }
}

function byFamily(cidrs: readonly string[], family: 4 | 6): string[] {
  const out = new Set<string>();
  for (const c of cidrs) {
    const n = normaliseCidr(c);
    if (n && n.family === family) out.add(n.cidr);
  }
  return [...out].sort();
}

/** The entries sorted and deduplicated; an address under two levels keeps the strictest. */
export function canonicalEntries(entries: readonly RestrictedEntry[]): RestrictedEntry[] {
  const best = new Map<string, RestrictionLevel>();
  for (const e of entries) {
    const n = normaliseCidr(e.cidr);
    if (!n) continue;
    const prev = best.get(n.cidr);
    if (!prev || LEVELS.indexOf(e.level) > LEVELS.indexOf(prev)) best.set(n.cidr, e.level);
  }
  return [...best.entries()].map(([cidr, level]) => ({ cidr, level })).sort((a, b) => (a.cidr < b.cidr ? -1 : a.cidr > b.cidr ? 1 : 0));
}

const setDecl = (name: string, family: 4 | 6, elements: string[]) =>
  `    set ${name} {\n      type ipv${family}_addr; flags interval; auto-merge;\n${elements.length ? `      elements = { ${elements.join(', ')} }\n` : ''}    }`;

function allSets(entries: readonly RestrictedEntry[]): { name: string; family: 4 | 6; elements: string[] }[] {
  const sets: { name: string; family: 4 | 6; elements: string[] }[] = [];
  for (const family of [4, 6] as const) {
    sets.push({ name: setName('restricted', family), family, elements: byFamily(entries.map((e) => e.cidr), family) });
    for (const level of LEVELS) sets.push({ name: setName(level, family), family, elements: byFamily(entries.filter((e) => e.level === level).map((e) => e.cidr), family) });
  }
  return sets;
}

/**
 * The set file: declares the sets (harmless when they exist), flushes them
 * and fills them again, all in one nft transaction: `nft -f FILE`.
 */
export function renderNftSetFile(entries: readonly RestrictedEntry[], table = 'backstop'): string {
  const canon = canonicalEntries(entries);
  const sets = allSets(canon);
  const lines = [`# Backstop abuse desk: restricted lines (${canon.length} networks). Generated; do not edit.`];
  lines.push(`table inet ${table} {`, ...sets.map((s) => setDecl(s.name, s.family, [])), '}');
  for (const s of sets) lines.push(`flush set inet ${table} ${s.name}`);
  for (const s of sets) if (s.elements.length) lines.push(`add element inet ${table} ${s.name} { ${s.elements.join(', ')} }`);
  return `${lines.join('\n')}\n`;
}

const ports = (p: readonly number[]) => (p.length === 1 ? String(p[0]) : `{ ${[...new Set(p)].sort((a, b) => a - b).join(', ')} }`);
const addrSet = (cidrs: string[]) => (cidrs.length === 1 ? cidrs[0]! : `{ ${cidrs.join(', ')} }`);

/**
 * The whole ruleset: the table is replaced atomically (add + delete + define
 * in one transaction), sets filled, and a forward chain that implements
 * each level for the addresses in its set. Allowed destinations (DNS, DHCP,
 * submission, the portal, update sites) are accepted for every restricted
 * address before any drop.
 */
export function renderNftScript(entries: readonly RestrictedEntry[], policy: EnforcementPolicy): string {
  const canon = canonicalEntries(entries);
  const t = policy.table;
  const rules: string[] = [];
  const web: AllowedDestination[] = [
    ...(policy.portal.length ? [{ name: 'portal', to: policy.portal, proto: 'tcp' as const, ports: [80, 443] }] : []),
    ...(policy.updateSites.length ? [{ name: 'update sites', to: policy.updateSites, proto: 'tcp' as const, ports: [80, 443] }] : []),
  ];
  for (const family of [4, 6] as const) {
    const ip = family === 4 ? 'ip' : 'ip6';
    const restricted = `@${setName('restricted', family)}`;
    rules.push(`    # IPv${family}: what stays reachable for every restricted line`);
    for (const a of [...policy.allowed, ...web]) {
      const to = byFamily(a.to, family);
      if (a.to.length && to.length === 0) continue; // only the other family's destinations
      rules.push(`    ${ip} saddr ${restricted}${to.length ? ` ${ip} daddr ${addrSet(to)}` : ''} ${a.proto} dport ${ports(a.ports)} accept comment "${a.name.replace(/"/g, '')}"`);
    }
    rules.push(`    ${ip} saddr @${setName('port25-block', family)} tcp dport 25 drop comment "port25-block"`);
    const smart = byFamily(policy.smarthost, family);
    if (smart.length) rules.push(`    ${ip} saddr @${setName('smarthost', family)} ${ip} daddr ${addrSet(smart)} tcp dport 25 accept comment "smarthost"`);
    rules.push(`    ${ip} saddr @${setName('smarthost', family)} tcp dport 25 drop comment "smarthost: port 25 elsewhere"`);
    rules.push(`    ${ip} saddr @${setName('walled-garden', family)} drop comment "walled-garden"`);
  }
  const sets = allSets(canon);
  return [
    '#!/usr/sbin/nft -f',
    `# Backstop abuse desk: restriction ruleset (${canon.length} networks). Generated; do not edit.`,
    `table inet ${t}`,
    `delete table inet ${t}`,
    `table inet ${t} {`,
    ...sets.map((s) => setDecl(s.name, s.family, s.elements)),
    '    chain forward {',
    '      type filter hook forward priority filter; policy accept;',
    ...rules.map((r) => `  ${r}`),
    '    }',
    '}',
    '',
  ].join('\n');
}

/** One CIDR a line, for routers and RADIUS. */
export function renderPlainList(entries: readonly RestrictedEntry[]): string {
  return canonicalEntries(entries).map((e) => `${e.cidr}\n`).join('');
}

export function digestOf(entries: readonly RestrictedEntry[]): string {
  return createHash('sha256').update(canonicalEntries(entries).map((e) => `${e.cidr} ${e.level}`).join('\n')).digest('hex');
}

/** The webhook's signature over "<timestamp>.<body>". */
export function signWebhook(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

export type CurrentAddresses = (db: Db, customerId: string, at?: Date) => Promise<string[]>;

/** The restricted lines now, each at its customer's current addresses. */
export async function computeRestricted(db: Db, currentAddresses: CurrentAddresses, now: Date): Promise<RestrictedEntry[]> {
  const out: RestrictedEntry[] = [];
  for (const r of await restrictedCustomers(db)) {
    for (const cidr of await currentAddresses(db, r.customerId, now)) out.push({ cidr, level: r.level });
  }
  return canonicalEntries(out);
}

type DeskConfig = NonNullable<Config['desk']>;

export function enforcementPolicy(desk: DeskConfig | undefined): EnforcementPolicy {
  return {
    table: desk?.enforcement.table ?? 'backstop',
    smarthost: desk?.restriction.smarthost ?? [],
    allowed: desk?.restriction.allowed ?? [],
    portal: desk?.restriction.portal ?? [],
    updateSites: desk?.restriction.updateSites ?? [],
  };
}

async function writeAtomically(path: string, content: string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  await writeFile(tmp, content, { mode: 0o644 });
  await rename(tmp, path);
}

export interface PublishDeps {
  desk: DeskConfig | undefined;
  currentAddresses: CurrentAddresses;
  /** Re-run every this many ms so the outputs follow lease changes (default 60 s; 0: no re-run). */
  refreshMs?: number;
}

/**
 * Computes the set, writes the configured files, and when the set changed
 * records it and queues the signed webhook. Returns whether it changed.
 */
export async function publishEnforcement(db: Db, deps: PublishDeps, now: Date): Promise<{ changed: boolean; entries: RestrictedEntry[]; digest: string }> {
  const entries = await computeRestricted(db, deps.currentAddresses, now);
  const digest = digestOf(entries);
  const out = deps.desk?.enforcement;
  const policy = enforcementPolicy(deps.desk);
  if (out?.nftSetFile) await writeAtomically(out.nftSetFile, renderNftSetFile(entries, policy.table));
  if (out?.nftScriptFile) await writeAtomically(out.nftScriptFile, renderNftScript(entries, policy));
  if (out?.listFile) await writeAtomically(out.listFile, renderPlainList(entries));
  const changed = await db.transaction().execute(async (tx) => {
    const prev = await tx.selectFrom('desk_enforcement').select('digest').where('id', '=', 1).forUpdate().executeTakeFirst();
    if (prev?.digest === digest) return false;
    const addresses = entries.map((e) => `${e.cidr} ${e.level}`);
    await tx
      .insertInto('desk_enforcement')
      .values({ id: 1, digest, addresses, published_at: now })
      .onConflict((oc) => oc.column('id').doUpdateSet({ digest, addresses, published_at: now }))
      .execute();
    if (out?.webhook) {
      await enqueue(tx, {
        kind: WEBHOOK_JOB,
        payload: { digest, changedAt: now.toISOString(), restricted: entries },
        runAt: now,
        dedupeKey: `desk-webhook:${digest}:${now.toISOString()}`,
      });
    }
    return true;
  });
  const refresh = deps.refreshMs ?? 60_000;
  if (refresh > 0) {
    const at = new Date(Math.floor(now.getTime() / refresh) * refresh + refresh);
    await enqueue(db, { kind: ENFORCE_JOB, payload: { reason: 'refresh' }, runAt: at, dedupeKey: `desk-enforce-refresh:${at.toISOString()}` });
  }
  return { changed, entries, digest };
}

/** Sends one webhook job's payload, signed; throws (retry) unless the receiver answers 2xx. */
export async function sendWebhook(hook: { url: string; secret: string }, payload: unknown, now = new Date(), fetchFn: typeof fetch = fetch): Promise<void> {
  const body = JSON.stringify(payload);
  const ts = String(Math.floor(now.getTime() / 1000));
  const res = await fetchFn(hook.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-backstop-timestamp': ts, 'x-backstop-signature': signWebhook(hook.secret, ts, body) },
    body,
    signal: AbortSignal.timeout(10_000),
  });
  if (res.status < 200 || res.status > 299) throw new Error(`webhook answered ${res.status}`);
}

function sameSecret(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb) && a.length === b.length;
}

/** GET /desk/restricted.txt — the plain list as last published, for `Authorization: Bearer <listToken>`. */
export function registerRestrictedList(app: FastifyInstance, deps: { db: Db; token: string }): void {
  app.get('/desk/restricted.txt', async (request, reply) => {
    const auth = String(request.headers.authorization ?? '');
    const given = auth.startsWith('Bearer ') ? auth.slice(7).trim() : '';
    if (!given || !sameSecret(given, deps.token)) return reply.status(401).header('www-authenticate', 'Bearer').type('text/plain').send('unauthorised\n');
    const row = await deps.db.selectFrom('desk_enforcement').select(['addresses', 'digest', 'published_at']).where('id', '=', 1).executeTakeFirst();
    const list = (row?.addresses ?? []).map((a) => a.split(' ')[0]).join('\n');
    return reply
      .type('text/plain; charset=utf-8')
      .header('cache-control', 'no-store')
      .header('etag', `"${row?.digest ?? 'empty'}"`)
      .send(list ? `${list}\n` : '');
  });
}
