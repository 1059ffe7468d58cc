/*
 * notify/contact — who gets the abuse report for a connecting IP address (R6).
 *
 * The chain, first answer wins, every step recorded with its source:
 *   1. local overrides (abuse.overrides: CIDR → address, or "never")
 *   2. our own customer space (abuse.customerSpace: handed to the abuse desk,
 *      never mailed — the desk knows who held the address then, R8)
 *   3. RDAP (RFC 9082/9083) at the registry the IANA bootstrap (RFC 9224)
 *      names for the longest matching prefix; the entity with role `abuse`,
 *      nested at any depth, its vCard email; placeholders dropped
 *   4. a DNS TXT abuse-contact zone (Abusix style: reversed labels under a
 *      configurable zone, the TXT string is the address)
 *   5. last, abuse@ the registrable domain of the forward-confirmed reverse
 *      name (RFC 2142 §4 names abuse@ as the mailbox for it)
 * RDAP and DNS answers are cached in the store by the range they cover, with
 * a TTL; negative answers too.
 *
 * The decisions here are pure (this file); the network sits behind the
 * ContactSources interface (notify/lookup.ts). Trusts the configuration;
 * treats every registry and DNS answer as hostile data (bounded, syntax
 * checked, never a header without cleaning). Never looks at the envelope or
 * header domains, nor a Received: line someone else wrote: the key is the
 * address that connected to us.
 */
import ipaddr from 'ipaddr.js';
import { getDomain } from 'tldts';

export type StepSource = 'override' | 'customer' | 'rdap' | 'dns' | 'reverse';
export interface ContactStep {
  source: StepSource;
  outcome: 'found' | 'never' | 'desk' | 'none' | 'skipped' | 'error';
  contact?: string;
  cached?: boolean;
  detail: string;
}

export type ContactResult =
  | { kind: 'email'; address: string; source: StepSource; detail: string; steps: ContactStep[] }
  | { kind: 'never' | 'desk' | 'none'; detail: string; steps: ContactStep[] };

/** One answer of a looked-up source: the contact (null: none) for a range. */
export interface SourceAnswer {
  contact: string | null;
  /** The range the answer covers, as CIDR (the cache key). */
  range: string;
  detail: string;
}

export interface ContactSources {
  rdap?(ip: string): Promise<SourceAnswer>;
  dnsTxt?(ip: string): Promise<SourceAnswer>;
  /** The forward-confirmed reverse name, or null. */
  reverse?(ip: string): Promise<string | null>;
  cache?: {
    get(source: 'rdap' | 'dns', ip: string): Promise<SourceAnswer | null>;
    put(source: 'rdap' | 'dns', answer: SourceAnswer, ttlMs: number): Promise<void>;
  };
}

export interface ContactSettings {
  overrides: readonly { cidr: string; contact: string }[];
  customerSpace: readonly string[];
  placeholders: readonly string[];
  rdap: { enabled: boolean };
  dns: { zone: string };
  reverseFallback: boolean;
  cacheTtl: number;
  negativeCacheTtl: number;
}

/** A lookup that could not be answered now (RDAP 429, timeouts): the report job is retried later. */
export class TransientLookupError extends Error {
  constructor(message: string, readonly retryAfterMs = 0) {
    super(message);
  }
}

/** Parses an address (IPv4-mapped IPv6 becomes IPv4); null if it is not one. */
export function parseIp(ip: string): ipaddr.IPv4 | ipaddr.IPv6 | null {
  try {
    return ipaddr.process(ip);
  } catch {
    return null;
  }
}

function parseCidr(cidr: string): [ipaddr.IPv4 | ipaddr.IPv6, number] | null {
  try {
    return cidr.includes('/') ? ipaddr.parseCIDR(cidr) : [ipaddr.parse(cidr), ipaddr.parse(cidr).kind() === 'ipv4' ? 32 : 128];
  } catch {
    return null;
  }
}

/** The longest of `prefixes` that contains ip, with its index; null if none does. */
export function longestMatch(ip: string, prefixes: readonly string[]): { index: number; cidr: string } | null {
  const addr = parseIp(ip);
  if (!addr) return null;
  let best: { index: number; cidr: string; bits: number } | null = null;
  prefixes.forEach((cidr, index) => {
    const range = parseCidr(cidr);
    if (!range || range[0].kind() !== addr.kind()) return;
    if (addr.match(range as [ipaddr.IPv4, number]) && (!best || range[1] > best.bits)) best = { index, cidr, bits: range[1] };
  });
  return best ? { index: (best as { index: number }).index, cidr: (best as { cidr: string }).cidr } : null;
}

/** Steps 1 and 2, from configuration only: an override (longest prefix wins), or our customer space. */
export function localDecision(ip: string, settings: Pick<ContactSettings, 'overrides' | 'customerSpace'>): ContactStep[] {
  const steps: ContactStep[] = [];
  const o = longestMatch(ip, settings.overrides.map((x) => x.cidr));
  if (o) {
    const contact = settings.overrides[o.index]!.contact;
    steps.push(contact === 'never'
      ? { source: 'override', outcome: 'never', detail: `local override ${o.cidr}: never report` }
      : { source: 'override', outcome: 'found', contact: contact.toLowerCase(), detail: `local override ${o.cidr}` });
    return steps;
  }
  steps.push({ source: 'override', outcome: 'none', detail: 'no local override' });
  const c = longestMatch(ip, settings.customerSpace);
  steps.push(c
    ? { source: 'customer', outcome: 'desk', detail: `our customer space ${c.cidr}: handed to the abuse desk` }
    : { source: 'customer', outcome: 'none', detail: 'not our customer space' });
  return steps;
}

const ADDRESS = /^[a-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;
const PLACEHOLDER_LOCAL = new Set(['noreply', 'no-reply', 'donotreply', 'do-not-reply', 'nobody', 'none', 'null', 'unknown', 'invalid', 'placeholder', 'na', 'n.a', 'test', 'nomail', 'no-mail', 'no-email', 'noemail']);
// RFC 2606 §3's second-level names are what registries' fill-ins use; .invalid and
// .localhost can never take mail. (.example and .test are left to the operator's list.)
const PLACEHOLDER_DOMAIN = /(^|\.)(example\.(com|net|org)|invalid|localhost|local)$/;

/**
 * An address nobody reads or that cannot be one: bad syntax, reserved
 * documentation domains (RFC 2606), "noreply"-style local parts, or one of the operator's
 * `abuse.placeholders` (exact, or "*@domain").
 */
export function isPlaceholder(address: string, extra: readonly string[] = []): boolean {
  const a = address.trim().toLowerCase();
  if (!ADDRESS.test(a)) return true;
  const [local, domain] = a.split('@') as [string, string];
  if (PLACEHOLDER_LOCAL.has(local) || PLACEHOLDER_DOMAIN.test(domain)) return true;
  return extra.some((p) => p === a || (p.startsWith('*@') && (domain === p.slice(2) || domain.endsWith(`.${p.slice(2)}`))));
}

/** The email values of a jCard (RFC 7095: ["vcard", [[name, params, type, value…]…]]). */
export function vcardEmails(vcardArray: unknown): string[] {
  if (!Array.isArray(vcardArray) || vcardArray[0] !== 'vcard' || !Array.isArray(vcardArray[1])) return [];
  const out: string[] = [];
  for (const prop of vcardArray[1].slice(0, 200)) {
    if (!Array.isArray(prop) || String(prop[0]).toLowerCase() !== 'email') continue;
    for (const v of prop.slice(3)) if (typeof v === 'string' && v.length <= 320) out.push(v.trim().replace(/^mailto:/i, '').toLowerCase());
  }
  return out;
}

/**
 * The abuse mailbox of an RDAP IP network object (RFC 9083 §5.4): the
 * shallowest entity whose roles include `abuse` (RFC 9083 §10.2.4), looked
 * for through nested entities (registries put it under the registrant org),
 * whose vCard has an email that is not a placeholder. Bounded: 500 entities.
 */
export function rdapAbuseContact(obj: unknown, extraPlaceholders: readonly string[] = []): { contact: string | null; handle: string | null; dropped: string[] } {
  const dropped: string[] = [];
  let queue: unknown[] = [obj];
  let seen = 0;
  while (queue.length > 0 && seen < 500) {
    const next: unknown[] = [];
    for (const node of queue) {
      const entities = (node as { entities?: unknown })?.entities;
      if (!Array.isArray(entities)) continue;
      for (const e of entities) {
        if (++seen > 500) break;
        if (typeof e !== 'object' || e === null) continue;
        const roles = (e as { roles?: unknown }).roles;
        if (Array.isArray(roles) && roles.some((r) => String(r).toLowerCase() === 'abuse')) {
          for (const email of vcardEmails((e as { vcardArray?: unknown }).vcardArray)) {
            if (isPlaceholder(email, extraPlaceholders)) dropped.push(email);
            else {
              const handle = (e as { handle?: unknown }).handle;
              return { contact: email, handle: typeof handle === 'string' ? handle.slice(0, 100) : null, dropped };
            }
          }
        }
        next.push(e);
      }
    }
    queue = next;
  }
  return { contact: null, handle: null, dropped };
}

function toBig(a: ipaddr.IPv4 | ipaddr.IPv6): bigint {
  return a.toByteArray().reduce((n, b) => (n << 8n) | BigInt(b), 0n);
}

function fromBig(n: bigint, kind: 'ipv4' | 'ipv6'): string {
  const bytes = kind === 'ipv4' ? 4 : 16;
  const out: number[] = [];
  for (let i = 0; i < bytes; i++) out.unshift(Number((n >> BigInt(8 * i)) & 0xffn));
  return ipaddr.fromByteArray(out).toString();
}

/**
 * An address as registries really write it in startAddress/endAddress: RIPE
 * once appended a prefix length (`62.239.237.0/32`), ARIN zero-pads octets
 * (`074.125.000.000`, decimal — a general IP parser would read it as octal).
 * Both seen in captured answers (test/notify/fixtures/rdap-captured).
 */
function parseRdapAddress(text: string): ipaddr.IPv4 | ipaddr.IPv6 | null {
  const bare = text.trim().replace(/\/\d{1,3}$/, '');
  const quad = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(bare);
  if (quad) {
    const octets = quad.slice(1).map((o) => Number.parseInt(o, 10));
    return octets.every((o) => o <= 255) ? new ipaddr.IPv4(octets) : null;
  }
  return parseIp(bare);
}

/**
 * The range an RDAP network answer covers, as one CIDR containing ip: the
 * cidr0 extension's prefixes when present, else the largest CIDR around ip
 * inside startAddress–endAddress (RFC 9083 §5.4; such a range need not be
 * one CIDR). Falls back to the address itself.
 */
export function rdapRange(obj: unknown, ip: string): string {
  const addr = parseIp(ip);
  if (!addr) return ip;
  const host = `${addr.toString()}/${addr.kind() === 'ipv4' ? 32 : 128}`;
  const o = obj as { cidr0_cidrs?: unknown; startAddress?: unknown; endAddress?: unknown };
  if (Array.isArray(o?.cidr0_cidrs)) {
    const prefixes = o.cidr0_cidrs.flatMap((c: { v4prefix?: string; v6prefix?: string; length?: number }) => {
      const p = c?.v4prefix ?? c?.v6prefix;
      return typeof p === 'string' && Number.isInteger(c.length) ? [`${p}/${c.length}`] : [];
    });
    const m = longestMatch(addr.toString(), prefixes);
    if (m) return normalizeCidr(m.cidr) ?? host;
  }
  if (typeof o?.startAddress === 'string' && typeof o?.endAddress === 'string') {
    const start = parseRdapAddress(o.startAddress);
    const end = parseRdapAddress(o.endAddress);
    if (start && end && start.kind() === addr.kind() && end.kind() === addr.kind()) {
      const width = addr.kind() === 'ipv4' ? 32 : 128;
      const [s, e, a] = [toBig(start), toBig(end), toBig(addr)];
      if (s <= a && a <= e) {
        for (let bits = 0; bits <= width; bits++) {
          const size = 1n << BigInt(width - bits);
          const first = (a / size) * size;
          if (first >= s && first + size - 1n <= e) return `${fromBig(first, addr.kind())}/${bits}`;
        }
      }
    }
  }
  return host;
}

/** A CIDR with its host bits cleared ("192.0.2.7/24" → "192.0.2.0/24"), or null. */
export function normalizeCidr(cidr: string): string | null {
  const r = parseCidr(cidr);
  if (!r) return null;
  const width = r[0].kind() === 'ipv4' ? 32 : 128;
  const size = 1n << BigInt(width - r[1]);
  return `${fromBig((toBig(r[0]) / size) * size, r[0].kind())}/${r[1]}`;
}

/** The RFC 9224 bootstrap's base URLs for the longest prefix containing ip. */
export function bootstrapBaseUrls(bootstrap: unknown, ip: string): string[] {
  const services = (bootstrap as { services?: unknown })?.services;
  if (!Array.isArray(services)) return [];
  const prefixes: string[] = [];
  const urls: string[][] = [];
  for (const s of services) {
    if (!Array.isArray(s) || !Array.isArray(s[0]) || !Array.isArray(s[1])) continue;
    for (const p of s[0]) {
      if (typeof p !== 'string') continue;
      prefixes.push(p);
      urls.push(s[1].filter((u: unknown): u is string => typeof u === 'string' && /^https?:\/\//.test(u)));
    }
  }
  const m = longestMatch(ip, prefixes);
  if (!m) return [];
  // RFC 9224 §3: prefer https when a registry offers both.
  return [...urls[m.index]!].sort((a, b) => Number(b.startsWith('https:')) - Number(a.startsWith('https:')));
}

/** The name to ask in an Abusix-style zone: reversed octets, or reversed nibbles for IPv6 (like in-addr/ip6.arpa). */
export function abuseZoneName(ip: string, zone: string): string | null {
  const addr = parseIp(ip);
  if (!addr) return null;
  const labels = addr.kind() === 'ipv4'
    ? addr.toByteArray().map(String)
    : addr.toByteArray().flatMap((b) => [(b >> 4).toString(16), (b & 15).toString(16)]);
  return `${labels.reverse().join('.')}.${zone}`;
}

/** The first usable address among TXT records (each a list of strings, joined: RFC 7208 §3.3 style). */
export function txtContact(records: readonly (readonly string[])[], extraPlaceholders: readonly string[] = []): string | null {
  for (const rec of records.slice(0, 20)) {
    const text = rec.join('').trim().toLowerCase();
    for (const candidate of text.split(/[\s,;]+/)) if (candidate && !isPlaceholder(candidate, extraPlaceholders)) return candidate;
  }
  return null;
}

/** abuse@ the registrable domain (public suffix list) of a reverse name, or null. */
export function reverseAbuseAddress(name: string): string | null {
  const domain = getDomain(name.replace(/\.$/, '').toLowerCase());
  return domain ? `abuse@${domain}` : null;
}

/** Runs the chain for one address. RDAP trouble that will pass (429, timeouts) throws TransientLookupError. */
export async function lookupContact(ip: string, settings: ContactSettings, sources: ContactSources): Promise<ContactResult> {
  const steps = localDecision(ip, settings);
  const last = steps[steps.length - 1]!;
  if (last.outcome === 'found') return { kind: 'email', address: last.contact!, source: 'override', detail: last.detail, steps };
  if (last.outcome === 'never') return { kind: 'never', detail: last.detail, steps };
  if (last.outcome === 'desk') return { kind: 'desk', detail: last.detail, steps };

  for (const source of ['rdap', 'dns'] as const) {
    const ask = source === 'rdap' ? (settings.rdap.enabled ? sources.rdap : undefined) : settings.dns.zone ? sources.dnsTxt : undefined;
    if (!ask) {
      steps.push({ source, outcome: 'skipped', detail: `${source} lookup off` });
      continue;
    }
    let answer = await sources.cache?.get(source, ip) ?? null;
    const cached = answer !== null;
    if (!answer) {
      try {
        answer = await ask(ip);
      } catch (err) {
        if (err instanceof TransientLookupError && source === 'rdap') {
          steps.push({ source, outcome: 'error', detail: err.message });
          throw Object.assign(err, { steps });
        }
        steps.push({ source, outcome: 'error', detail: (err as Error).message.slice(0, 300) });
        continue;
      }
      await sources.cache?.put(source, answer, answer.contact ? settings.cacheTtl : settings.negativeCacheTtl);
    }
    const contact = answer.contact && !isPlaceholder(answer.contact, settings.placeholders) ? answer.contact : null;
    const detail = `${answer.detail} (range ${answer.range}${cached ? ', cached' : ''})`;
    if (contact) {
      steps.push({ source, outcome: 'found', contact, cached, detail });
      return { kind: 'email', address: contact, source, detail, steps };
    }
    steps.push({ source, outcome: 'none', cached, detail });
  }

  if (settings.reverseFallback && sources.reverse) {
    const name = await sources.reverse(ip).catch(() => null);
    const address = name ? reverseAbuseAddress(name) : null;
    if (address && !isPlaceholder(address, settings.placeholders)) {
      const detail = `abuse@ the registrable domain of the forward-confirmed reverse name ${name}`;
      steps.push({ source: 'reverse', outcome: 'found', contact: address, detail });
      return { kind: 'email', address, source: 'reverse', detail, steps };
    }
    steps.push({ source: 'reverse', outcome: 'none', detail: name ? `reverse name ${name} has no registrable domain` : 'no forward-confirmed reverse name' });
  } else {
    steps.push({ source: 'reverse', outcome: 'skipped', detail: 'reverse fallback off' });
  }
  return { kind: 'none', detail: 'no abuse contact found: nothing sent', steps };
}
