/*
 * The smarthost applies the desk's decisions: a real gateway with the desk's
 * hooks, swaks as the customer's PC (127.0.0.1, in relayFrom), smtp-sink as
 * the next hop. Restricted at port25-block: MAIL refused 550 5.7.1 with the
 * portal hint; at level smarthost: relayed and scanned, and a worm in it
 * becomes incident evidence (headers and name, never the body).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { recordEvidence } from '../../src/desk/incidents.ts';
import { deskDecidedHook, levelFor, restrictionHook } from '../../src/desk/smarthost.ts';
import { openStore, type Store } from '../../src/store/store.ts';
import { EICAR, startTestGateway, swaks, waitFor, type TestGateway } from '../helpers/gateway.ts';
import ipaddr from 'ipaddr.js';

const to = ['--to', 'someone@example.org', '--from', 'pc@customer.example'];

test('levelFor: the strictest level covering the address; smarthost only when nothing stricter', () => {
  const nets = ['192.0.2.0/29 smarthost', '192.0.2.7/32 walled-garden', '2001:db8::/48 port25-block'].map((a) => {
    const [c, l] = a.split(' ');
    return { range: ipaddr.parseCIDR(c!), level: l as 'smarthost' | 'walled-garden' | 'port25-block' };
  });
  assert.equal(levelFor(nets, '192.0.2.7'), 'walled-garden');
  assert.equal(levelFor(nets, '192.0.2.3'), 'smarthost');
  assert.equal(levelFor(nets, '::ffff:192.0.2.7'), 'walled-garden');
  assert.equal(levelFor(nets, '2001:db8:0:1::5'), 'port25-block');
  assert.equal(levelFor(nets, '192.0.2.8'), null);
  assert.equal(levelFor(nets, 'garbage'), null);
});

describe('smarthost hooks in a real gateway', () => {
  let g: TestGateway;
  let store: Store;
  before(async () => {
    store = await openStore('pglite-memory:');
    const restriction = restrictionHook(store.db, { cacheMs: 0, hint: 'https://portal.isp.example' });
    const evidence = deskDecidedHook(store.db, {
      attribute: async (_db, q) => (q.ip === '127.0.0.1' ? { kind: 'customer', customerId: 'c-9' } : { kind: 'unknown' }),
      recordEvidence: (db, e) => recordEvidence(db, e, new Date()),
    });
    g = await startTestGateway({ relayFrom: ['127.0.0.0/8'] }, { store, hooks: { mail: [restriction.mail], rcpt: [restriction.rcpt], decided: [evidence] } });
  });
  after(async () => {
    await g.close();
    await store.close();
  });
  const publish = (addresses: string[]) =>
    store.db
      .insertInto('desk_enforcement')
      .values({ id: 1, digest: addresses.join(','), addresses, published_at: new Date() })
      .onConflict((oc) => oc.column('id').doUpdateSet({ digest: addresses.join(','), addresses }))
      .execute();

  test('not restricted: relayed', async () => {
    await publish([]);
    const r = await swaks(g.port, [...to, '--body', 'hello']);
    assert.match(r.last, /^250 /);
  });

  test('port25-block and walled-garden: MAIL refused 550 5.7.1 with the portal hint, nothing relayed', async () => {
    for (const level of ['port25-block', 'walled-garden']) {
      await publish([`127.0.0.1/32 ${level}`]);
      const before = g.sink!.messages().length;
      const r = await swaks(g.port, [...to, '--body', 'hello']);
      assert.match(r.last, /^550 5\.7\.1 .*restricted.*https:\/\/portal\.isp\.example/, r.transcript);
      assert.equal(g.sink!.messages().length, before);
    }
  });

  test('smarthost level: relayed after the scan; a worm is refused and recorded as evidence without its body', async () => {
    await publish(['127.0.0.0/30 smarthost']);
    const ok = await swaks(g.port, [...to, '--body', 'clean mail']);
    assert.match(ok.last, /^250 /);
    const worm = await swaks(g.port, [...to, '--header', 'Subject: invoice', '--attach-type', 'application/octet-stream', '--attach-name', 'eicar.com', '--attach', '-'], EICAR);
    assert.match(worm.last, /^5\d\d /);
    await waitFor(async () => (await store.db.selectFrom('incident_evidence').select('id').execute()).length === 1);
    const ev = await store.db.selectFrom('incident_evidence').selectAll().executeTakeFirstOrThrow();
    assert.equal(ev.source, 'gateway');
    assert.equal(ev.ip, '127.0.0.1');
    assert.match(ev.malware[0]!, /eicar/i);
    assert.match(ev.headers ?? '', /^Subject: invoice$/m);
    assert.doesNotMatch(ev.headers ?? '', /EICAR-STANDARD/);
    const inc = await store.db.selectFrom('incidents').selectAll().executeTakeFirstOrThrow();
    assert.equal(inc.customer_id, 'c-9');
    assert.equal(inc.state, 'suspected');
  });
});
