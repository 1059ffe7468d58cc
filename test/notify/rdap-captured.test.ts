/*
 * The contact chain's RDAP step on answers the five RIRs really gave
 * (fixtures/rdap-captured, from the ipwhois project): the shipped IANA
 * bootstrap must send each address to the registry that answered it, and
 * the abuse contact and cached range must be what a person reading the
 * answer would take from it.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { lookupContact, rdapAbuseContact, rdapRange, type ContactSettings } from '../../src/notify/contact.ts';
import { RdapClient } from '../../src/notify/lookup.ts';

const captured = JSON.parse(readFileSync(new URL('./fixtures/rdap-captured/ipwhois-rdap.json', import.meta.url), 'utf8')) as Record<string, { response: { port43?: string } }>;
const shippedV4 = JSON.parse(readFileSync(new URL('../../src/notify/data/iana-rdap-ipv4.json', import.meta.url), 'utf8')) as { services: [string[], string[]][] };
const shippedV6 = JSON.parse(readFileSync(new URL('../../src/notify/data/iana-rdap-ipv6.json', import.meta.url), 'utf8')) as { services: [string[], string[]][] };

/** What the answer says, read by hand: the registry (by its port43), the abuse address, the range to cache. */
const EXPECTED: { ip: string; rir: string; contact: string | null; handle: string | null; range: string }[] = [
  { ip: '62.239.237.1', rir: 'ripe', contact: 'zzdnsr@bt.com', handle: 'BTCR3-RIPE', range: '62.239.237.0/24' },
  { ip: '2a00:2381:ffff::1', rir: 'ripe', contact: 'zzdnsr@bt.com', handle: 'BTCR3-RIPE', range: '2a00:2381:ffff::/64' },
  { ip: '74.125.225.229', rir: 'arin', contact: 'arin-contact@google.com', handle: 'ZG39-ARIN', range: '74.125.0.0/16' },
  { ip: '2001:4860:4860::8888', rir: 'arin', contact: 'arin-contact@google.com', handle: 'ZG39-ARIN', range: '2001:4860::/32' },
  { ip: '210.107.73.73', rir: 'apnic', contact: 'hostmaster@nic.or.kr', handle: 'IRT-KRNIC-KR', range: '210.107.0.0/17' },
  { ip: '2001:240:10c:1::ca20:9d1d', rir: 'apnic', contact: null, handle: null, range: '2001:240::/32' },
  { ip: '200.57.141.161', rir: 'lacnic', contact: 'operacion.redes@triara.com', handle: 'RYT2', range: '200.57.141.161/32' },
  { ip: '2801:10:c000::', rir: 'lacnic', contact: 'sistemas.red@uco.edu.co', handle: 'JDM7', range: '2801:10:c000::/128' },
  { ip: '196.11.240.215', rir: 'afrinic', contact: null, handle: null, range: '196.11.240.0/22' },
  { ip: '2001:43f8:7b0::', rir: 'afrinic', contact: null, handle: null, range: '2001:43f8:7b0::/48' },
];

const RIR_OF_URL: [RegExp, string][] = [
  [/rdap\.arin\.net/, 'arin'],
  [/rdap\.db\.ripe\.net/, 'ripe'],
  [/rdap\.apnic\.net/, 'apnic'],
  [/rdap\.lacnic\.net/, 'lacnic'],
  [/rdap\.afrinic\.net/, 'afrinic'],
];

function rirOfWhois(port43: string | undefined): string {
  return /whois\.(\w+)\.net/.exec(port43 ?? '')?.[1] ?? 'unknown';
}

test('every captured answer is covered by a row here, and each row names the registry that answered', () => {
  assert.deepEqual(Object.keys(captured).sort(), EXPECTED.map((e) => e.ip).sort());
  for (const e of EXPECTED) assert.equal(rirOfWhois(captured[e.ip]!.response.port43), e.rir, e.ip);
});

test('abuse entity and range read from each real answer', () => {
  for (const e of EXPECTED) {
    const answer = captured[e.ip]!.response;
    const { contact, handle } = rdapAbuseContact(answer);
    assert.equal(contact, e.contact, `${e.ip} contact`);
    assert.equal(handle, e.handle, `${e.ip} handle`);
    assert.equal(rdapRange(answer, e.ip), e.range, `${e.ip} range`);
  }
});

describe('the shipped bootstrap routes each address to the registry that answered it', () => {
  let http: Server;
  let base = '';
  const asked: { rir: string; ip: string }[] = [];
  /** The shipped bootstrap with each registry's URL moved onto loopback, path kept per registry. */
  const onLoopback = (doc: { services: [string[], string[]][] }) => ({
    ...doc,
    services: doc.services.map(([ranges, urls]) => [ranges, [`${base}/${RIR_OF_URL.find(([re]) => re.test(urls[0]!))![1]}/`]]),
  });
  before(async () => {
    http = createServer((req, res) => {
      const u = decodeURIComponent(req.url!);
      const json = (status: number, body: unknown) => {
        res.writeHead(status, { 'content-type': 'application/rdap+json' });
        res.end(JSON.stringify(body));
      };
      if (u === '/bootstrap/ipv4.json') return json(200, onLoopback(shippedV4));
      if (u === '/bootstrap/ipv6.json') return json(200, onLoopback(shippedV6));
      const m = /^\/(\w+)\/ip\/(.+)$/.exec(u);
      if (!m) return json(404, { errorCode: 404 });
      asked.push({ rir: m[1]!, ip: m[2]! });
      const hit = Object.entries(captured).find(([ip, v]) => ip === m[2] && rirOfWhois(v.response.port43) === m[1]);
      // A registry that did not hold the address answers 404, as the real ones do.
      return hit ? json(200, hit[1].response) : json(404, { errorCode: 404, title: 'Not Found' });
    });
    http.keepAliveTimeout = 120_000;
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(http.address() as { port: number }).port}`;
  });
  after(() => new Promise<void>((r) => http.close(() => r())));

  test('each lookup goes to the right RIR and finds what the answer holds, or falls through', async () => {
    const rdap = new RdapClient({ bootstrapV4: `${base}/bootstrap/ipv4.json`, bootstrapV6: `${base}/bootstrap/ipv6.json`, timeoutMs: 2000 });
    // RDAP only: the later steps (DNS zone, reverse name) are not asked, so a missing abuse entity ends in 'none'.
    const settings: ContactSettings = {
      overrides: [], customerSpace: [], placeholders: [], rdap: { enabled: true }, dns: { zone: 'abuse-contacts.invalid' },
      reverseFallback: false, cacheTtl: 86_400_000, negativeCacheTtl: 3_600_000,
    };
    for (const e of EXPECTED) {
      const r = await lookupContact(e.ip, settings, { rdap: (ip) => rdap.lookup(ip) });
      const last = asked.at(-1)!;
      assert.equal(last.rir, e.rir, `${e.ip} asked of ${last.rir}`);
      if (e.contact) {
        assert.equal(r.kind, 'email', `${e.ip}: ${r.detail}`);
        assert.equal(r.kind === 'email' && r.address, e.contact);
        assert.ok(r.detail.includes(`(range ${e.range})`), `${e.ip}: ${r.detail}`);
      } else {
        assert.equal(r.kind, 'none', `${e.ip}: no abuse entity, nothing sent (${r.detail})`);
        assert.equal(r.steps.find((s) => s.source === 'rdap')?.outcome, 'none');
      }
    }
  });
});
