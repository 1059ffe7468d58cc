/*
 * The public report form through the whole web app (inject): CSRF, the
 * per-address limit in the store, one answer whether the address is
 * assigned or not, the port question from the configured CGNAT ranges
 * only, and hostile input escaped. On PGlite and PostgreSQL.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DeskPorts } from '../../src/desk/intake.ts';
import type { EvidenceInput } from '../../src/desk/incidents.ts';
import { instantIn } from '../../src/desk/zones.ts';
import { inCgnat, THANKS } from '../../src/web/public-form.ts';
import { app, Client, csrfOf, onEachStore } from '../web/helpers.ts';

function ports(evidence: EvidenceInput[]): DeskPorts {
  return {
    async attribute(_db, q) {
      if (q.ip === '192.0.2.7') return { kind: 'customer', customerId: 'c-1' };
      if (q.ip === '203.0.113.9' && q.port === 40001) return { kind: 'customer', customerId: 'c-2' };
      return { kind: 'unknown' };
    },
    async recordEvidence(_db, e) {
      evidence.push(e);
      return { incidentId: `i-${evidence.length}`, opened: true };
    },
  };
}

const GOOD = { ip: '192.0.2.7', date: '2026-01-15', time: '09:13:14', zone: 'Europe/Berlin', port: '', what: 'It sent us a worm by mail, twice.', headers: '' };
const recentDate = () => new Date(Date.now() - 86_400_000).toISOString().slice(0, 10);

onEachStore('public report form', 'bs_form', (store) => {
  const evidence: EvidenceInput[] = [];
  const build = (max = 5) => app(store(), { publicForm: { ports: ports(evidence), settings: { cgnatRanges: ['203.0.113.0/26'], maxPerWindow: max, answerFloorMs: 150 } } });

  test('GET /report needs no session and shows the form with a CSRF field', async () => {
    const c = new Client(build(), '198.51.100.1');
    const res = await c.get('/report');
    assert.equal(res.statusCode, 200);
    assert.ok(csrfOf(res.body));
    assert.match(res.body, /name="ip"/);
    assert.match(String(res.headers['content-security-policy']), /default-src 'none'/);
  });

  test('POST without a token, or with a token from another browser, is refused and stores nothing', async () => {
    const a = build();
    const c = new Client(a, '198.51.100.2');
    const none = await c.post('/report', { ...GOOD, date: recentDate() });
    assert.equal(none.statusCode, 403);
    const other = new Client(a, '198.51.100.2');
    const token = csrfOf((await other.get('/report')).body);
    const stranger = new Client(a, '198.51.100.2');
    await stranger.get('/report');
    const crossed = await stranger.post('/report', { ...GOOD, date: recentDate(), _csrf: token + 'x' });
    assert.equal(crossed.statusCode, 403);
    const rows = await store().db.selectFrom('desk_reports').selectAll().where('reporter', '=', '198.51.100.2').execute();
    assert.equal(rows.length, 0);
  });

  test('assigned and unassigned addresses get exactly the same answer; the store knows the difference', async () => {
    const a = build();
    let t = Date.now();
    const one = await new Client(a, '198.51.100.3').submit('/report', '/report', { ...GOOD, date: recentDate() });
    const tookOne = Date.now() - t;
    t = Date.now();
    const two = await new Client(a, '198.51.100.4').submit('/report', '/report', { ...GOOD, ip: '198.51.100.200', date: recentDate() });
    const tookTwo = Date.now() - t;
    assert.ok(tookOne >= 150 && tookTwo >= 150, `both answers wait for the floor (${tookOne} ms, ${tookTwo} ms)`);
    assert.equal(one.statusCode, 200);
    assert.equal(two.statusCode, 200);
    const strip = (b: string) => b.replace(/value="[^"]*"/g, '');
    assert.equal(strip(one.body), strip(two.body));
    assert.ok(one.body.includes(THANKS.slice(0, 40)));
    const rows = await store().db.selectFrom('desk_reports').selectAll().where('via', '=', 'form').where('reporter', 'in', ['198.51.100.3', '198.51.100.4']).orderBy('reporter').execute();
    assert.deepEqual(rows.map((r) => r.state), ['attributed', 'unattributed']);
    assert.equal(rows[0]!.time_source, 'form');
    assert.equal(rows[0]!.zoneless, false);
    assert.match(rows[0]!.summary, /worm by mail/);
    assert.ok(evidence.some((e) => e.source === 'form' && e.ip === '192.0.2.7'));
  });

  test('the port is asked for exactly when the address is in a configured CGNAT range, whether assigned or not', async () => {
    const a = build();
    for (const ip of ['203.0.113.9', '203.0.113.10']) {
      const res = await new Client(a, '198.51.100.5').submit('/report', '/report', { ...GOOD, ip, date: recentDate() });
      assert.equal(res.statusCode, 200);
      assert.match(res.body, /Please give the source port/);
      assert.match(res.body, /name="port"[^>]*required/);
    }
    // Outside the ranges: never asked, even for an address no one holds.
    const outside = await new Client(a, '198.51.100.5').submit('/report', '/report', { ...GOOD, ip: '203.0.113.100', date: recentDate() });
    assert.doesNotMatch(outside.body, /Please give the source port/);
    // With the port: the same thanks, and the port reaches attribution.
    const withPort = await new Client(a, '198.51.100.6').submit('/report', '/report', { ...GOOD, ip: '203.0.113.9', port: '40001', date: recentDate() });
    assert.ok(withPort.body.includes(THANKS.slice(0, 40)));
    const row = await store().db.selectFrom('desk_reports').selectAll().where('reporter', '=', '198.51.100.6').executeTakeFirstOrThrow();
    assert.equal(row.port, 40001);
    assert.equal(row.state, 'attributed');
  });

  test('rate limit per client address, counted in the store (a second app = a second node shares it)', async () => {
    const nodeA = build(3);
    const nodeB = build(3);
    const ip = '198.51.100.7';
    const codes: number[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await new Client(i % 2 ? nodeB : nodeA, ip).submit('/report', '/report', { ...GOOD, date: recentDate() });
      codes.push(res.statusCode);
    }
    assert.deepEqual(codes, [200, 200, 200, 429]);
    const other = await new Client(nodeA, '198.51.100.8').submit('/report', '/report', { ...GOOD, date: recentDate() });
    assert.equal(other.statusCode, 200, 'another address is not limited');
  });

  test('hostile input: escaped when shown again, validated, headers kept as header lines only', async () => {
    const a = build(50);
    const c = new Client(a, '198.51.100.9');
    const evil = '<script>alert(1)</script>"><img src=x onerror=alert(2)>';
    const bad = await c.submit('/report', '/report', { ...GOOD, ip: evil, zone: evil, date: recentDate(), what: evil });
    assert.equal(bad.statusCode, 400);
    assert.doesNotMatch(bad.body, /<script>alert|<img src=x/);
    assert.match(bad.body, /&lt;script&gt;/);
    assert.match(bad.body, /not an IP address/);
    for (const ip of ['010.0.0.1', '192.0.2.7; drop table', '::ffff:zzzz', '1.2.3.4.5']) {
      const r = await c.submit('/report', '/report', { ...GOOD, ip, date: recentDate() });
      assert.equal(r.statusCode, 400, ip);
    }
    const badTime = await c.submit('/report', '/report', { ...GOOD, date: '2026-02-30' });
    assert.equal(badTime.statusCode, 400);
    const badZone = await c.submit('/report', '/report', { ...GOOD, date: recentDate(), zone: 'Mars/Olympus' });
    assert.equal(badZone.statusCode, 400);
    const future = await c.submit('/report', '/report', { ...GOOD, date: '2099-01-01' });
    assert.equal(future.statusCode, 400);
    const ok = await c.submit('/report', '/report', {
      ...GOOD,
      date: recentDate(),
      what: `Spam\u0000 with <b>markup</b> ${evil}`,
      headers: 'Received: from pc (pc [192.0.2.7]) by mx; Thu, 15 Jan 2026 09:13:14 +0100\nSubject: hi\n\nBODY TEXT THAT MUST GO',
    });
    assert.equal(ok.statusCode, 200);
    const row = await store().db.selectFrom('desk_reports').selectAll().where('reporter', '=', '198.51.100.9').executeTakeFirstOrThrow();
    assert.doesNotMatch(row.headers ?? '', /BODY TEXT/);
    assert.match(row.headers ?? '', /^Received: from pc/);
    assert.doesNotMatch(row.summary, /\u0000/);
  });

  test('without publicForm the route does not exist', async () => {
    const res = await new Client(app(store()), '198.51.100.10').get('/report');
    assert.equal(res.statusCode, 404);
  });
});

test('instantIn: zones, offsets, DST and impossible dates', () => {
  assert.equal(instantIn('2026-01-15', '09:13:14', 'Europe/Berlin')?.toISOString(), '2026-01-15T08:13:14.000Z');
  assert.equal(instantIn('2026-07-15', '09:13', 'Europe/Berlin')?.toISOString(), '2026-07-15T07:13:00.000Z');
  assert.equal(instantIn('2026-07-15', '09:13', '-05:30')?.toISOString(), '2026-07-15T14:43:00.000Z');
  assert.equal(instantIn('2026-07-15', '09:13', 'UTC')?.toISOString(), '2026-07-15T09:13:00.000Z');
  assert.equal(instantIn('2026-02-30', '09:13', 'UTC'), null);
  assert.equal(inCgnat('100.64.1.1', ['100.64.0.0/10']), true);
  assert.equal(inCgnat('100.128.0.1', ['100.64.0.0/10']), false);
  assert.equal(inCgnat('2001:db8::1', ['100.64.0.0/10', 'bogus']), false);
});

test('config: desk.cgnatRanges and desk.reportForm are checked, with key, value and what was expected', async () => {
  const { ConfigError, parseConfig } = await import('../../src/config/load.ts');
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ desk: { abuseDomain: 'abuse.example.net', cgnatRanges: ['100.64.0.0/33'] } }, /desk\.cgnatRanges\.0: got "100\.64\.0\.0\/33"/],
    [{ desk: { abuseDomain: 'abuse.example.net', reportForm: { maxPerHour: 0 } } }, /desk\.reportForm\.maxPerHour: got 0: maxPerHour must be greater than 0/],
    [{ desk: { abuseDomain: 'abuse.example.net', reportForm: { enable: true } } }, /desk\.reportForm\.enable: unknown key/],
  ];
  for (const [raw, message] of bad) {
    assert.throws(() => parseConfig(raw, 'test.yaml'), (err: unknown) => err instanceof ConfigError && message.test(err.message));
  }
  const ok = parseConfig({ desk: { abuseDomain: 'abuse.example.net' } });
  assert.deepEqual(ok.desk?.cgnatRanges, []);
  assert.deepEqual(ok.desk?.reportForm, { enabled: true, maxPerHour: 5 });
});
