/*
 * notify/lookup — the thin network and store adapters behind the contact
 * chain (notify/contact.ts decides; this fetches): an RDAP client driven by
 * the IANA bootstrap files, the DNS TXT abuse-contact zone, forward-confirmed
 * reverse DNS, and the contact cache in the store.
 *
 * Trusts nothing it receives: RDAP bodies are size-capped and parsed as
 * untrusted JSON, DNS answers are syntax-checked by contact.ts. Must never
 * hammer a registry: a 429 makes that registry wait for its Retry-After (RFC
 * 9110 §10.2.3; RDAP: RFC 7480 §5.5) before it is asked again, and the report
 * job is retried later instead of falling through to a weaker source.
 */
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Resolver } from 'node:dns/promises';
import { sql } from 'kysely';
import type { Db } from '../store/store.ts';
import { bootstrapBaseUrls, normalizeCidr, parseIp, abuseZoneName, rdapAbuseContact, rdapRange, txtContact, TransientLookupError, type ContactSources, type SourceAnswer } from './contact.ts';

const MAX_RDAP_BYTES = 1024 * 1024;

export interface RdapOptions {
  bootstrapV4: string;
  bootstrapV6: string;
  timeoutMs: number;
  placeholders?: readonly string[];
}

const SHIPPED_BOOTSTRAP = { ipv4: fileURLToPath(new URL('./data/iana-rdap-ipv4.json', import.meta.url)), ipv6: fileURLToPath(new URL('./data/iana-rdap-ipv6.json', import.meta.url)) };
export const IANA_BOOTSTRAP = { ipv4: 'https://data.iana.org/rdap/ipv4.json', ipv6: 'https://data.iana.org/rdap/ipv6.json' };

/** Where "builtin" reads from: the refreshed copy under dataDir if there is one, else the shipped file. */
export function bootstrapSource(setting: string, dataDir: string, family: 'ipv4' | 'ipv6'): string {
  if (setting !== 'builtin') return setting;
  const refreshed = join(dataDir, 'rdap', `${family}.json`);
  return existsSync(refreshed) ? refreshed : SHIPPED_BOOTSTRAP[family];
}

/** A bootstrap document has the RFC 9224 shape: a services array of [ranges, urls] pairs. */
export function isBootstrapDocument(doc: unknown): boolean {
  const services = (doc as { services?: unknown })?.services;
  return Array.isArray(services) && services.length > 0 && services.every((s) => Array.isArray(s) && Array.isArray(s[0]) && Array.isArray(s[1]));
}

/**
 * `backstop rdap refresh`: fetches the current files and replaces the copies
 * under dataDir/rdap only if each parses as a bootstrap document (a broken
 * download never replaces a working file).
 */
export async function refreshBootstrapFiles(dataDir: string, sources = IANA_BOOTSTRAP, timeoutMs = 30_000): Promise<Record<'ipv4' | 'ipv6', number>> {
  const dir = join(dataDir, 'rdap');
  mkdirSync(dir, { recursive: true });
  const counts = { ipv4: 0, ipv6: 0 };
  for (const family of ['ipv4', 'ipv6'] as const) {
    const doc = await loadJson(sources[family], timeoutMs);
    if (!isBootstrapDocument(doc)) throw new Error(`${sources[family]} is not an RDAP bootstrap document (no services list)`);
    const tmp = join(dir, `${family}.json.tmp`);
    writeFileSync(tmp, JSON.stringify(doc));
    renameSync(tmp, join(dir, `${family}.json`));
    counts[family] = (doc as { services: unknown[] }).services.length;
  }
  return counts;
}

/** Reads a bootstrap file from a path or an http(s) URL. */
async function loadJson(source: string, timeoutMs: number): Promise<unknown> {
  if (/^https?:\/\//.test(source)) {
    const res = await fetch(source, { signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) throw new Error(`bootstrap ${source}: HTTP ${res.status}`);
    return res.json();
  }
  return JSON.parse(await readFile(source, 'utf8'));
}

export class RdapClient {
  private bootstrap: { v4?: unknown; v6?: unknown } = {};
  /** Per registry base URL: not before this time (after a 429). */
  private readonly notBefore = new Map<string, number>();

  constructor(private readonly options: RdapOptions) {}

  /** (Re)loads the bootstrap files; called lazily, and again whenever the operator wants fresh ones. */
  async refreshBootstrap(): Promise<void> {
    const [v4, v6] = await Promise.all([
      loadJson(this.options.bootstrapV4, this.options.timeoutMs),
      loadJson(this.options.bootstrapV6, this.options.timeoutMs).catch(() => undefined),
    ]);
    this.bootstrap = { v4, v6 };
  }

  async lookup(ip: string): Promise<SourceAnswer> {
    const addr = parseIp(ip);
    if (!addr) return { contact: null, range: ip, detail: 'not an IP address' };
    const host = addr.toString();
    if (this.bootstrap.v4 === undefined) {
      try {
        await this.refreshBootstrap();
      } catch (err) {
        throw new TransientLookupError(`RDAP bootstrap unavailable: ${(err as Error).message}`);
      }
    }
    const bases = bootstrapBaseUrls(addr.kind() === 'ipv4' ? this.bootstrap.v4 : this.bootstrap.v6, host);
    const self = `${host}/${addr.kind() === 'ipv4' ? 32 : 128}`;
    if (bases.length === 0) return { contact: null, range: self, detail: 'RDAP: no registry in the IANA bootstrap for this address' };
    const base = bases[0]!.endsWith('/') ? bases[0]! : `${bases[0]}/`;
    const wait = (this.notBefore.get(base) ?? 0) - Date.now();
    if (wait > 0) throw new TransientLookupError(`RDAP ${base} asked us to wait (429)`, wait);
    const url = `${base}ip/${host}`;
    let res: Response;
    try {
      res = await fetch(url, { headers: { accept: 'application/rdap+json' }, redirect: 'follow', signal: AbortSignal.timeout(this.options.timeoutMs) });
    } catch (err) {
      throw new TransientLookupError(`RDAP ${url}: ${(err as Error).message}`);
    }
    if (res.status === 429) {
      const after = retryAfterMs(res.headers.get('retry-after'));
      this.notBefore.set(base, Date.now() + after);
      throw new TransientLookupError(`RDAP ${url}: 429 too many requests, retry after ${Math.round(after / 1000)} s`, after);
    }
    const where = res.url && res.url !== url ? `${url} → ${res.url}` : url;
    if (res.status === 404) return { contact: null, range: self, detail: `RDAP ${where}: 404 not found` };
    if (!res.ok) throw new TransientLookupError(`RDAP ${url}: HTTP ${res.status}`);
    const text = await boundedText(res);
    let obj: unknown;
    try {
      obj = JSON.parse(text);
    } catch {
      throw new TransientLookupError(`RDAP ${url}: not JSON`);
    }
    const found = rdapAbuseContact(obj, this.options.placeholders);
    const range = rdapRange(obj, host);
    const dropped = found.dropped.length ? `; placeholders dropped: ${found.dropped.slice(0, 3).join(', ')}` : '';
    return found.contact
      ? { contact: found.contact, range, detail: `RDAP ${where}, abuse entity ${found.handle ?? '(no handle)'}${dropped}` }
      : { contact: null, range, detail: `RDAP ${where}: no abuse entity with a usable email${dropped}` };
  }
}

/** Retry-After as delta-seconds or an HTTP date; 60 s when absent or odd; at most a day. */
export function retryAfterMs(value: string | null, now = Date.now()): number {
  if (value && /^\d+$/.test(value.trim())) return Math.min(86_400_000, Number(value.trim()) * 1000);
  const at = value ? Date.parse(value) : NaN;
  return Number.isFinite(at) ? Math.min(86_400_000, Math.max(0, at - now)) : 60_000;
}

async function boundedText(res: Response): Promise<string> {
  const reader = res.body?.getReader();
  if (!reader) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > MAX_RDAP_BYTES) {
      await reader.cancel();
      throw new TransientLookupError('RDAP answer larger than 1 MB');
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export interface DnsOptions {
  zone: string;
  servers?: readonly string[];
  timeoutMs: number;
  placeholders?: readonly string[];
}

function resolver(opts: { servers?: readonly string[]; timeoutMs: number }): Resolver {
  const r = new Resolver({ timeout: opts.timeoutMs, tries: 2 });
  if (opts.servers?.length) r.setServers([...opts.servers]);
  return r;
}

/** The TXT abuse-contact zone; NXDOMAIN/NODATA is a negative answer for this one address. */
export function dnsTxtLookup(opts: DnsOptions): (ip: string) => Promise<SourceAnswer> {
  const r = resolver(opts);
  return async (ip) => {
    const name = abuseZoneName(ip, opts.zone);
    const addr = parseIp(ip);
    const range = addr ? `${addr.toString()}/${addr.kind() === 'ipv4' ? 32 : 128}` : ip;
    if (!name) return { contact: null, range, detail: 'not an IP address' };
    try {
      const contact = txtContact(await r.resolveTxt(name), opts.placeholders);
      return { contact, range, detail: `DNS TXT ${name}${contact ? '' : ': no usable address'}` };
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'ENOTFOUND' || code === 'ENODATA') return { contact: null, range, detail: `DNS TXT ${name}: no record` };
      throw new Error(`DNS TXT ${name}: ${code ?? (err as Error).message}`);
    }
  };
}

/** Forward-confirmed reverse DNS (the PTR name only if it resolves back to the address). */
export function fcrdns(opts: { servers?: readonly string[]; timeoutMs: number }): (ip: string) => Promise<string | null> {
  const r = resolver(opts);
  return async (ip) => {
    const addr = parseIp(ip);
    if (!addr) return null;
    try {
      const names = (await r.reverse(addr.toString())).slice(0, 5);
      for (const name of names) {
        const back = addr.kind() === 'ipv4' ? await r.resolve4(name) : await r.resolve6(name);
        if (back.some((b) => parseIp(b)?.toString() === addr.toString())) return name;
      }
    } catch {
      // no PTR, or it does not resolve back: not verified
    }
    return null;
  };
}

/** The contact cache in the store: by the range an answer covers, longest prefix first, negative answers too. */
export function storeCache(db: Db, now: () => Date = () => new Date()): NonNullable<ContactSources['cache']> {
  return {
    async get(source, ip) {
      const addr = parseIp(ip);
      if (!addr) return null;
      const row = await sql<{ range: string; contact: string | null; detail: string }>`
        select range::text as range, contact, detail from abuse_contacts
        where source = ${source} and range >>= ${addr.toString()}::inet and expires_at > ${now()}
        order by masklen(range) desc, fetched_at desc limit 1`.execute(db);
      const hit = row.rows[0];
      return hit ? { contact: hit.contact, range: hit.range, detail: hit.detail } : null;
    },
    async put(source, answer, ttlMs) {
      const range = normalizeCidr(answer.range);
      if (!range) return;
      const at = now();
      await db.insertInto('abuse_contacts').values({ source, range, contact: answer.contact, detail: answer.detail.slice(0, 1000), fetched_at: at, expires_at: new Date(at.getTime() + ttlMs) }).execute();
    },
  };
}
