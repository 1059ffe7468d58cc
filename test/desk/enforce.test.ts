/*
 * Enforcement outputs: the renderers, loaded into a real nft inside a
 * network namespace (check mode when namespaces are not allowed), the
 * publisher following lease changes with a signed webhook, and the plain
 * list over HTTP behind its token.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Fastify from 'fastify';
import { canonicalEntries, digestOf, normaliseCidr, publishEnforcement, registerRestrictedList, renderNftScript, renderNftSetFile, renderPlainList, sendWebhook, signWebhook, type EnforcementPolicy, type RestrictedEntry } from '../../src/desk/enforce.ts';
import { WEBHOOK_JOB } from '../../src/desk/incidents.ts';
import { configSchema } from '../../src/config/schema.ts';
import { openTestStore, STORE_KINDS } from '../helpers/pg.ts';

const policy: EnforcementPolicy = {
  table: 'backstop',
  smarthost: ['203.0.113.25', '2001:db8:ffff::25'],
  allowed: [
    { name: 'dns', to: [], proto: 'udp', ports: [53] },
    { name: 'dhcp', to: [], proto: 'udp', ports: [67, 547] },
    { name: 'submission', to: [], proto: 'tcp', ports: [587] },
  ],
  portal: ['203.0.113.80'],
  updateSites: ['192.0.2.128/25', '2001:db8:aaaa::/48'],
};
const entries: RestrictedEntry[] = [
  { cidr: '192.0.2.7', level: 'walled-garden' },
  { cidr: '198.51.100.3/29', level: 'port25-block' },
  { cidr: '2001:db8:1::/56', level: 'smarthost' },
  { cidr: '192.0.2.7/32', level: 'port25-block' }, // same address twice: the strictest level wins
  { cidr: 'not-an-address', level: 'walled-garden' },
];

function netnsAllowed(): boolean {
  const r = spawnSync('ip', ['netns', 'add', 'bs-probe'], { stdio: 'ignore' });
  if (r.status !== 0) return false;
  spawnSync('ip', ['netns', 'del', 'bs-probe'], { stdio: 'ignore' });
  return true;
}

test('addresses are normalised: host bits cleared, single addresses become /32 and /128, mapped IPv4 unwrapped', () => {
  assert.deepEqual(normaliseCidr('198.51.100.3/29'), { cidr: '198.51.100.0/29', family: 4 });
  assert.deepEqual(normaliseCidr('192.0.2.7'), { cidr: '192.0.2.7/32', family: 4 });
  assert.deepEqual(normaliseCidr('2001:DB8::1'), { cidr: '2001:db8::1/128', family: 6 });
  assert.deepEqual(normaliseCidr('::ffff:192.0.2.9'), { cidr: '192.0.2.9/32', family: 4 });
  assert.equal(normaliseCidr('192.0.2.256'), null);
  assert.equal(normaliseCidr('192.0.2.0/33'), null);
  assert.deepEqual(canonicalEntries(entries), [
    { cidr: '192.0.2.7/32', level: 'walled-garden' },
    { cidr: '198.51.100.0/29', level: 'port25-block' },
    { cidr: '2001:db8:1::/56', level: 'smarthost' },
  ]);
  assert.equal(renderPlainList(entries), '192.0.2.7/32\n198.51.100.0/29\n2001:db8:1::/56\n');
  assert.equal(digestOf(entries), digestOf([...entries].reverse()));
  assert.notEqual(digestOf(entries), digestOf(entries.slice(1)));
});

test('the script implements each level: port 25 dropped, port 25 only to the smarthost, walled garden only to allowed destinations', () => {
  const s = renderNftScript(entries, policy);
  assert.match(s, /ip saddr @backstop_port25_block_v4 tcp dport 25 drop/);
  assert.match(s, /ip saddr @backstop_smarthost_v4 ip daddr 203\.0\.113\.25\/32 tcp dport 25 accept/);
  assert.match(s, /ip6 saddr @backstop_smarthost_v6 ip6 daddr 2001:db8:ffff::25\/128 tcp dport 25 accept/);
  assert.match(s, /ip saddr @backstop_walled_garden_v4 drop/);
  // the holes come before the drops
  assert.ok(s.indexOf('dport 53 accept') < s.indexOf('@backstop_walled_garden_v4 drop'));
  assert.ok(s.indexOf('daddr 203.0.113.80/32 tcp dport { 80, 443 } accept') < s.indexOf('@backstop_walled_garden_v4 drop'));
  assert.match(s, /udp dport \{ 67, 547 \} accept comment "dhcp"/);
  assert.match(s, /tcp dport 587 accept comment "submission"/);
  // the IPv4 portal is not offered to IPv6 rules
  assert.doesNotMatch(s, /ip6 saddr [^\n]*203\.0\.113\.80/);
});

describe('loaded into a real nft', () => {
  const ns = `bs-desk-${process.pid}`;
  let useNetns = false;
  const dir = mkdtempSync(join(tmpdir(), 'bs-nft-'));
  const nft = (...args: string[]) => (useNetns ? execFileSync('ip', ['netns', 'exec', ns, 'nft', ...args], { encoding: 'utf8' }) : execFileSync('nft', args, { encoding: 'utf8' }));
  before(() => {
    useNetns = netnsAllowed();
    if (useNetns) execFileSync('ip', ['netns', 'add', ns]);
    else console.log('# network namespaces not allowed here: nft -c (check mode) only');
  });
  after(() => {
    if (useNetns) spawnSync('ip', ['netns', 'del', ns]);
  });

  test('the script loads and nft lists the addresses in their sets; the set file replaces them', () => {
    const script = join(dir, 'backstop.nft');
    writeFileSync(script, renderNftScript(entries, policy));
    if (!useNetns) {
      execFileSync('nft', ['-c', '-f', script]);
      return;
    }
    nft('-f', script);
    assert.match(nft('list', 'set', 'inet', 'backstop', 'backstop_walled_garden_v4'), /elements = \{ 192\.0\.2\.7 \}/);
    assert.match(nft('list', 'set', 'inet', 'backstop', 'backstop_port25_block_v4'), /elements = \{ 198\.51\.100\.0\/29 \}/);
    assert.match(nft('list', 'set', 'inet', 'backstop', 'backstop_smarthost_v6'), /2001:db8:1::\/56/);
    assert.match(nft('list', 'set', 'inet', 'backstop', 'backstop_restricted_v4'), /192\.0\.2\.7.*198\.51\.100\.0\/29/s);
    assert.match(nft('list', 'chain', 'inet', 'backstop', 'forward'), /tcp dport 25 drop/);
    // loading the script again replaces the table (no duplicate rules)
    nft('-f', script);
    assert.equal(nft('list', 'chain', 'inet', 'backstop', 'forward').match(/comment "walled-garden"/g)?.length, 2);

    // the set file: 192.0.2.7 released, 192.0.2.99 restricted; applied twice, same result
    const setFile = join(dir, 'sets.nft');
    writeFileSync(setFile, renderNftSetFile([{ cidr: '192.0.2.99', level: 'walled-garden' }, { cidr: '198.51.100.0/29', level: 'port25-block' }]));
    nft('-f', setFile);
    nft('-f', setFile);
    const wg = nft('list', 'set', 'inet', 'backstop', 'backstop_walled_garden_v4');
    assert.match(wg, /elements = \{ 192\.0\.2\.99 \}/);
    assert.doesNotMatch(wg, /192\.0\.2\.7\b/);
    assert.doesNotMatch(nft('list', 'set', 'inet', 'backstop', 'backstop_smarthost_v6'), /elements/);
    // an empty set file empties the sets
    writeFileSync(setFile, renderNftSetFile([]));
    nft('-f', setFile);
    assert.doesNotMatch(nft('list', 'set', 'inet', 'backstop', 'backstop_restricted_v4'), /elements/);
  });
});

test('webhook signature: HMAC-SHA256 over "<timestamp>.<body>", checked by a receiver', async () => {
  const secret = 'a-long-webhook-secret-0123456789';
  const got: { ts: string; sig: string; body: string }[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      got.push({ ts: String(req.headers['x-backstop-timestamp']), sig: String(req.headers['x-backstop-signature']), body });
      res.statusCode = got.length === 1 ? 204 : 500;
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/hook`;
  try {
    const now = new Date('2026-03-01T12:00:00Z');
    await sendWebhook({ url, secret }, { digest: 'abc', restricted: [] }, now);
    assert.equal(got[0]!.ts, String(now.getTime() / 1000));
    assert.equal(got[0]!.sig, signWebhook(secret, got[0]!.ts, got[0]!.body));
    assert.notEqual(got[0]!.sig, signWebhook('another-secret-xxxxxxxxxxxx', got[0]!.ts, got[0]!.body));
    assert.deepEqual(JSON.parse(got[0]!.body), { digest: 'abc', restricted: [] });
    await assert.rejects(sendWebhook({ url, secret }, {}, now), /answered 500/);
  } finally {
    server.close();
  }
});

for (const kind of STORE_KINDS) {
  describe(`publishing on ${kind}`, () => {
    let h: Awaited<ReturnType<typeof openTestStore>>;
    before(async () => {
      h = await openTestStore(kind, 'bs_enforce');
    });
    after(async () => h.close());

    test('follows the customer\'s leases, writes files atomically, queues one webhook per change, serves the list with its token', async () => {
      const db = h.store.db;
      const dir = mkdtempSync(join(tmpdir(), 'bs-publish-'));
      const desk = configSchema.parse({
        nextHop: 'smtp://127.0.0.1:25',
        store: 'pglite-memory:',
        desk: { enforcement: { nftSetFile: join(dir, 'set.nft'), nftScriptFile: join(dir, 'script.nft'), listFile: join(dir, 'list.txt'), listToken: 'list-token-0123456789abcdef', webhook: { url: 'http://127.0.0.1:9/x', secret: 'webhook-secret-0123456789' } } },
      }).desk!;
      const now = new Date('2026-03-01T12:00:00Z');
      await db.insertInto('incidents').values({ customer_id: 'c7', state: 'restricted', opened_at: now, state_since: now, restriction_level: 'port25-block', self_releases_left: 2, contact_snapshot: '{}', held_from: null, portal_token_hash: null }).execute();
      await db.insertInto('incidents').values({ customer_id: 'c8', state: 'notified', opened_at: now, state_since: now, restriction_level: null, self_releases_left: 2, contact_snapshot: '{}', held_from: null, portal_token_hash: null }).execute();
      let lease = '192.0.2.7';
      const currentAddresses = async (_db: unknown, id: string) => (id === 'c7' ? [lease] : ['192.0.2.8']);
      const r1 = await publishEnforcement(db, { desk, currentAddresses }, now);
      assert.equal(r1.changed, true);
      assert.equal(readFileSync(join(dir, 'list.txt'), 'utf8'), '192.0.2.7/32\n');
      assert.match(readFileSync(join(dir, 'set.nft'), 'utf8'), /add element inet backstop backstop_port25_block_v4 \{ 192\.0\.2\.7\/32 \}/);
      assert.match(readFileSync(join(dir, 'script.nft'), 'utf8'), /elements = \{ 192\.0\.2\.7\/32 \}/);
      // nothing changed: no second webhook
      assert.equal((await publishEnforcement(db, { desk, currentAddresses }, new Date(now.getTime() + 60_000))).changed, false);
      // the lease moved: the outputs follow
      lease = '192.0.2.44';
      const r3 = await publishEnforcement(db, { desk, currentAddresses }, new Date(now.getTime() + 120_000));
      assert.equal(r3.changed, true);
      assert.equal(readFileSync(join(dir, 'list.txt'), 'utf8'), '192.0.2.44/32\n');
      const hooks = await db.selectFrom('jobs').select(['payload']).where('kind', '=', WEBHOOK_JOB).orderBy('run_at').execute();
      assert.equal(hooks.length, 2);
      assert.deepEqual((hooks[1]!.payload as { restricted: RestrictedEntry[] }).restricted, [{ cidr: '192.0.2.44/32', level: 'port25-block' }]);

      const app = Fastify();
      registerRestrictedList(app, { db, token: desk.enforcement.listToken! });
      const ok = await app.inject({ url: '/desk/restricted.txt', headers: { authorization: 'Bearer list-token-0123456789abcdef' } });
      assert.equal(ok.statusCode, 200);
      assert.equal(ok.body, '192.0.2.44/32\n');
      assert.equal((await app.inject({ url: '/desk/restricted.txt' })).statusCode, 401);
      assert.equal((await app.inject({ url: '/desk/restricted.txt', headers: { authorization: 'Bearer list-token-0123456789abcdeX' } })).statusCode, 401);
      assert.equal((await app.inject({ url: '/desk/restricted.txt', headers: { authorization: 'Bearer list-token-0123456789abcdef0' } })).statusCode, 401);
      await app.close();
    });
  });
}
