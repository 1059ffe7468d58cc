/*
 * The abuse-contact chain: pure decisions as tables; RDAP against a local
 * HTTP server serving our written fixtures; the DNS TXT zone and reverse
 * names from a real named on loopback; the cache in both stores.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, describe, test } from 'node:test';
import {
  abuseZoneName, bootstrapBaseUrls, isPlaceholder, localDecision, longestMatch, lookupContact, rdapAbuseContact, rdapRange,
  reverseAbuseAddress, TransientLookupError, txtContact, type ContactSettings, type ContactSources,
} from '../../src/notify/contact.ts';
import { dnsTxtLookup, fcrdns, RdapClient, retryAfterMs, storeCache } from '../../src/notify/lookup.ts';
import { openTestStore } from '../helpers/pg.ts';
import { apnicPlaceholder, arinStyle, bootstrapV4, bootstrapV6, ripeStyle, ripeV6 } from './fixtures/rdap.ts';
import { startNamed, type Named } from './helpers/named.ts';

const settings = (o: Partial<ContactSettings> = {}): ContactSettings => ({
  overrides: [], customerSpace: [], placeholders: [], rdap: { enabled: true }, dns: { zone: 'abuse-contacts.test' },
  reverseFallback: true, cacheTtl: 7 * 86_400_000, negativeCacheTtl: 86_400_000, ...o,
});

test('longest prefix wins, families never mix, IPv4-mapped IPv6 counts as IPv4', () => {
  const prefixes = ['192.0.2.0/24', '192.0.2.0/28', '0.0.0.0/0', '::/0'];
  assert.deepEqual(longestMatch('192.0.2.7', prefixes), { index: 1, cidr: '192.0.2.0/28' });
  assert.deepEqual(longestMatch('192.0.2.77', prefixes), { index: 0, cidr: '192.0.2.0/24' });
  assert.deepEqual(longestMatch('::ffff:192.0.2.7', prefixes), { index: 1, cidr: '192.0.2.0/28' });
  assert.deepEqual(longestMatch('2001:db8::1', prefixes), { index: 3, cidr: '::/0' });
  assert.equal(longestMatch('not-an-ip', prefixes), null);
});

const local: [string, string, Partial<ContactSettings>, string, string?][] = [
  ['an override names the contact', '192.0.2.7', { overrides: [{ cidr: '192.0.2.0/24', contact: 'Abuse@Example.com' }] }, 'found', 'abuse@example.com'],
  ['"never" suppresses', '192.0.2.7', { overrides: [{ cidr: '192.0.2.0/24', contact: 'never' }] }, 'never'],
  ['the more specific override wins', '192.0.2.7', { overrides: [{ cidr: '192.0.2.0/24', contact: 'never' }, { cidr: '192.0.2.0/29', contact: 'a@isp.example' }] }, 'found', 'a@isp.example'],
  ['our customer space goes to the desk', '198.51.100.7', { customerSpace: ['198.51.100.0/24'] }, 'desk'],
  ['an override beats our customer space', '198.51.100.7', { customerSpace: ['198.51.100.0/24'], overrides: [{ cidr: '198.51.100.7/32', contact: 'never' }] }, 'never'],
  ['nothing local', '203.0.113.1', { overrides: [{ cidr: '192.0.2.0/24', contact: 'never' }] }, 'none'],
];
for (const [name, ip, s, outcome, contact] of local) {
  test(`local decision: ${name}`, () => {
    const steps = localDecision(ip, settings(s));
    const last = steps[steps.length - 1]!;
    assert.equal(last.outcome, outcome);
    assert.equal(last.contact, contact);
  });
}

const placeholders: [string, boolean][] = [
  ['abuse@isp-a.example', false], ['noreply@isp.example', true], ['abuse@example.com', true], ['abuse@mail.example.net', true],
  ['abuse@host.invalid', true], ['not an address', true], ['abuse@isp', true], [`${'a'.repeat(70)}@isp.example`, true], ['a@b@c.example', true],
];
for (const [address, expected] of placeholders) {
  test(`placeholder: ${address.slice(0, 40)} → ${expected}`, () => assert.equal(isPlaceholder(address), expected));
}
test('the operator can add placeholders, exact or by domain', () => {
  assert.equal(isPlaceholder('abuse@rir.example', ['*@rir.example']), true);
  assert.equal(isPlaceholder('x@sub.rir.example', ['*@rir.example']), true);
  assert.equal(isPlaceholder('hostmaster@isp.example', ['hostmaster@isp.example']), true);
  assert.equal(isPlaceholder('abuse@isp.example', ['*@rir.example']), false);
});

test('RDAP: the abuse entity nested under the registrant, its vCard email in lower case', () => {
  assert.deepEqual(rdapAbuseContact(arinStyle), { contact: 'abuse@isp-a.example', handle: 'ISPA-ABUSE', dropped: [] });
});
test('RDAP: a placeholder abuse mailbox is dropped and the next abuse entity used', () => {
  assert.deepEqual(rdapAbuseContact(ripeStyle), { contact: 'abuse-desk@isp-b.example', handle: 'AR-B', dropped: ['noreply@isp-b.example'] });
  assert.deepEqual(rdapAbuseContact(apnicPlaceholder), { contact: null, handle: null, dropped: ['abuse@example.com'] });
});
test('RDAP: hostile shapes are survived', () => {
  for (const bad of [null, 'x', { entities: 'x' }, { entities: [null, 1, { roles: 'abuse' }, { roles: ['abuse'], vcardArray: ['vcard', 'x'] }] }]) {
    assert.equal(rdapAbuseContact(bad).contact, null);
  }
  let deep: Record<string, unknown> = { roles: ['abuse'], vcardArray: ['vcard', [['email', {}, 'text', 'deep@isp.example']]] };
  for (let i = 0; i < 2000; i++) deep = { entities: [deep] };
  assert.equal(rdapAbuseContact(deep).contact, null, 'bounded at 500 entities');
});

test('RDAP range: cidr0 first, else the largest CIDR around the address inside start–end', () => {
  assert.equal(rdapRange(arinStyle, '198.51.100.7'), '198.51.100.0/24');
  assert.equal(rdapRange(ripeStyle, '192.0.2.7'), '192.0.2.0/25');
  assert.equal(rdapRange(ripeStyle, '192.0.2.150'), '192.0.2.128/26');
  assert.equal(rdapRange(ripeV6, '2001:db8:1234::1'), '2001:db8:1000::/36');
  assert.equal(rdapRange({ startAddress: '10.0.0.0', endAddress: '10.0.0.255' }, '192.0.2.1'), '192.0.2.1/32', 'outside: the address alone');
  assert.equal(rdapRange({}, '2001:db8::1'), '2001:db8::1/128');
});

test('bootstrap: longest prefix, https first', () => {
  const b = bootstrapV4('http://x');
  assert.deepEqual(bootstrapBaseUrls(b, '198.51.100.7'), ['http://x/arin/', 'http://unused.invalid/rdap/']);
  assert.deepEqual(bootstrapBaseUrls(b, '198.51.7.7'), ['http://x/wrong/']);
  assert.deepEqual(bootstrapBaseUrls(b, '10.0.0.1'), []);
  assert.deepEqual(bootstrapBaseUrls({ services: [[['192.0.2.0/24'], ['http://a/', 'https://a/']]] }, '192.0.2.1'), ['https://a/', 'http://a/']);
});

test('DNS zone names: reversed octets, reversed nibbles for IPv6', () => {
  assert.equal(abuseZoneName('192.0.2.7', 'abuse-contacts.test'), '7.2.0.192.abuse-contacts.test');
  assert.equal(abuseZoneName('2001:db8::1', 'z.test'), `1.0.0.0.${'0.'.repeat(20)}8.b.d.0.1.0.0.2.z.test`);
  assert.equal(txtContact([['abuse@isp', '.example']]), 'abuse@isp.example');
  assert.equal(txtContact([['noreply@x.example'], ['abuse@y.example']]), 'abuse@y.example');
});

test('reverse fallback: abuse@ the registrable domain by the public suffix list', () => {
  assert.equal(reverseAbuseAddress('pc9.dsl.provider-c.co.uk.'), 'abuse@provider-c.co.uk');
  assert.equal(reverseAbuseAddress('host-7.pool.isp.example'), 'abuse@isp.example');
  assert.equal(reverseAbuseAddress('co.uk'), null);
});

test('Retry-After: seconds or a date, bounded', () => {
  assert.equal(retryAfterMs('120'), 120_000);
  assert.equal(retryAfterMs('Wed, 21 Oct 2015 07:28:30 GMT', Date.parse('Wed, 21 Oct 2015 07:28:00 GMT')), 30_000);
  assert.equal(retryAfterMs(null), 60_000);
  assert.equal(retryAfterMs('99999999'), 86_400_000);
});

describe('against a local RDAP server and a real named', () => {
  let http: Server;
  let base = '';
  let named: Named;
  const hits: string[] = [];
  before(async () => {
    http = createServer((req, res) => {
      hits.push(req.url!);
      const send = (status: number, body?: unknown, headers: Record<string, string> = {}) => {
        res.writeHead(status, { 'content-type': 'application/rdap+json', ...headers });
        res.end(body === undefined ? '' : JSON.stringify(body));
      };
      const u = req.url!;
      if (u === '/bootstrap/ipv4.json') return send(200, bootstrapV4(base));
      if (u === '/bootstrap/ipv6.json') return send(200, bootstrapV6(base));
      if (u.startsWith('/arin/ip/198.51.100.')) return send(200, arinStyle);
      if (u === '/arin/ip/203.0.113.9') return send(302, undefined, { location: `${base}/ripe/ip/203.0.113.9` });
      if (u.startsWith('/ripe/ip/192.0.2.')) return send(200, ripeStyle);
      if (u.startsWith('/ripe/ip/2001:db8:')) return send(200, ripeV6);
      if (u.startsWith('/apnic/ip/')) return send(200, apnicPlaceholder);
      if (u.startsWith('/busy/')) return send(429, { errorCode: 429 }, { 'retry-after': '120' });
      if (u.startsWith('/huge/')) return send(200, { pad: 'x'.repeat(2 * 1024 * 1024) });
      return send(404, { errorCode: 404, title: 'Not Found' });
    });
    // fetch keeps connections alive; a server closing an idle one (5 s default) races a reuse and fails the fetch.
    http.keepAliveTimeout = 120_000;
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(http.address() as { port: number }).port}`;
    named = await startNamed({
      'abuse-contacts.test': ['5.0.252.233 IN TXT "abuse@dns-listed.example"', '6.0.252.233 IN TXT "noreply@isp.example"'],
      '113.0.203.in-addr.arpa': ['9 IN PTR pc9.dsl.provider-c.co.uk.', '10 IN PTR liar.provider-c.co.uk.'],
      'provider-c.co.uk': ['pc9.dsl IN A 203.0.113.9', 'liar IN A 203.0.113.99'],
    });
  });
  after(async () => {
    await new Promise((r) => http.close(r));
    await named.stop();
  });

  const sources = (extra: Partial<ContactSources> = {}): ContactSources => {
    const rdap = new RdapClient({ bootstrapV4: `${base}/bootstrap/ipv4.json`, bootstrapV6: `${base}/bootstrap/ipv6.json`, timeoutMs: 2000 });
    return {
      rdap: (ip) => rdap.lookup(ip),
      dnsTxt: dnsTxtLookup({ zone: 'abuse-contacts.test', servers: [named.server], timeoutMs: 1000 }),
      reverse: fcrdns({ servers: [named.server], timeoutMs: 1000 }),
      ...extra,
    };
  };

  test('RDAP, ARIN style: found with its source and range', async () => {
    const r = await lookupContact('198.51.100.7', settings(), sources());
    assert.equal(r.kind, 'email');
    assert.equal(r.kind === 'email' && r.address, 'abuse@isp-a.example');
    assert.equal(r.kind === 'email' && r.source, 'rdap');
    assert.match(r.detail, /^RDAP http:\/\/127\.0\.0\.1:\d+\/arin\/ip\/198\.51\.100\.7, abuse entity ISPA-ABUSE \(range 198\.51\.100\.0\/24\)$/);
    assert.deepEqual(r.steps.map((s) => `${s.source}:${s.outcome}`), ['override:none', 'customer:none', 'rdap:found']);
  });

  test('RDAP over IPv6 and a RIPE-style range with a placeholder dropped', async () => {
    const v6 = await lookupContact('2001:db8:1234::1', settings(), sources());
    assert.equal(v6.kind === 'email' && v6.address, 'abuse@v6.isp-b.example');
    const v4 = await lookupContact('192.0.2.7', settings(), sources());
    assert.equal(v4.kind === 'email' && v4.address, 'abuse-desk@isp-b.example');
    assert.match(v4.detail, /placeholders dropped: noreply@isp-b\.example \(range 192\.0\.2\.0\/25\)/);
  });

  test('a placeholder-only RDAP answer falls through to the DNS TXT zone served by named', async () => {
    const r = await lookupContact('233.252.0.5', settings(), sources());
    assert.equal(r.kind === 'email' && r.address, 'abuse@dns-listed.example');
    assert.deepEqual(r.steps.map((s) => `${s.source}:${s.outcome}`), ['override:none', 'customer:none', 'rdap:none', 'dns:found']);
    assert.match(r.detail, /^DNS TXT 5\.0\.252\.233\.abuse-contacts\.test \(range 233\.252\.0\.5\/32\)$/);
  });

  test('a redirect to a 404 and no TXT record end at abuse@ the forward-confirmed reverse name', async () => {
    const r = await lookupContact('203.0.113.9', settings(), sources());
    assert.equal(r.kind === 'email' && r.address, 'abuse@provider-c.co.uk');
    assert.equal(r.kind === 'email' && r.source, 'reverse');
    assert.match(r.steps[2]!.detail, /arin\/ip\/203\.0\.113\.9 → .*\/ripe\/ip\/203\.0\.113\.9: 404/);
    assert.equal(r.steps[3]!.outcome, 'none');
  });

  test('a reverse name that does not resolve back is not used: nothing found, nothing sent', async () => {
    const r = await lookupContact('203.0.113.10', settings(), sources());
    assert.equal(r.kind, 'none');
    assert.match(r.steps.at(-1)!.detail, /no forward-confirmed reverse name/);
  });

  test('429: the job is retried later and the registry is not asked again before Retry-After', async () => {
    const s = sources();
    const before = hits.filter((h) => h.startsWith('/busy/')).length;
    await assert.rejects(lookupContact('100.64.0.1', settings(), s), (err: unknown) => err instanceof TransientLookupError && err.retryAfterMs === 120_000);
    await assert.rejects(lookupContact('100.64.0.2', settings(), s), /asked us to wait/);
    assert.equal(hits.filter((h) => h.startsWith('/busy/')).length, before + 1);
  });

  test('an RDAP answer over 1 MB is refused, not parsed', async () => {
    const rdap = new RdapClient({ bootstrapV4: `${base}/bootstrap/ipv4.json`, bootstrapV6: `${base}/bootstrap/ipv6.json`, timeoutMs: 2000 });
    await rdap.refreshBootstrap();
    (rdap as unknown as { bootstrap: unknown }).bootstrap = { v4: { services: [[['192.0.2.0/24'], [`${base}/huge/`]]] } };
    await assert.rejects(rdap.lookup('192.0.2.1'), /larger than 1 MB/);
  });

  test('DNS TXT placeholder and DNS off', async () => {
    const r = await lookupContact('233.252.0.6', settings({ reverseFallback: false }), sources());
    assert.equal(r.kind, 'none');
    assert.match(r.steps.find((s) => s.source === 'dns')!.detail, /no usable address/);
    const off = await lookupContact('233.252.0.5', settings({ dns: { zone: '' }, reverseFallback: false }), sources());
    assert.equal(off.kind, 'none');
    assert.equal(off.steps.find((s) => s.source === 'dns')!.outcome, 'skipped');
  });

  for (const kind of ['pglite', 'postgres'] as const) {
    test(`the cache on ${kind} answers for the whole returned range, negative answers too`, async () => {
      const { store, close } = await openTestStore(kind, 'bs_contact');
      try {
        const s = sources({ cache: storeCache(store.db) });
        const count = () => hits.filter((h) => /^\/(arin|apnic)\/ip\//.test(h)).length;
        const start = count();
        assert.equal((await lookupContact('198.51.100.7', settings(), s)).kind, 'email');
        const again = await lookupContact('198.51.100.200', settings(), s);
        assert.equal(again.kind === 'email' && again.address, 'abuse@isp-a.example');
        assert.equal(again.steps.at(-1)!.cached, true);
        await lookupContact('233.252.0.5', settings(), s);
        const neg = await lookupContact('233.252.0.77', settings({ dns: { zone: '' }, reverseFallback: false }), s);
        assert.equal(neg.steps.find((x) => x.source === 'rdap')!.cached, true, 'negative RDAP answer cached for 233.252.0.0/24');
        assert.equal(count(), start + 2, 'two RDAP queries for four lookups');
        const expired = sources({ cache: storeCache(store.db, () => new Date(Date.now() + 8 * 86_400_000)) });
        await lookupContact('198.51.100.7', settings(), expired);
        assert.equal(count(), start + 3, 'expired entries are asked again');
      } finally {
        await close();
      }
    });
  }
});
