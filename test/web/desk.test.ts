/*
 * The abuse desk's console page through the whole app, on PGlite and on
 * PostgreSQL: incidents by state with their timers, one incident's contact,
 * evidence and history, the desk's state changes (admin only, CSRF-checked,
 * decided by the lifecycle, audited; a refusal is a 409 that changes
 * nothing), the attribution lookup with its input errors, the queue of
 * unattributed reports and the lease imports — with hostile values (markup,
 * CRLF, a right-to-left override, 5,000-character strings) from evidence,
 * header lines, reporters, file names and the customer's own record.
 */
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { DEFAULT_SETTINGS, getIncident } from '../../src/desk/incidents.ts';
import { importLeaseRecords } from '../../src/desk/leases.ts';
import { parseLookup, timerOf } from '../../src/desk/web.ts';
import type { Store } from '../../src/store/store.ts';
import { duration, fromNow, utc } from '../../src/web/html.ts';
import { app, assertInert, Client, csrfOf, loggedIn, onEachStore } from './helpers.ts';
import { hostileCustomer, incidentIn, queuedReport, restrictedIncident, staticImport } from './desk-fixtures.ts';

const H = 3_600_000;

test('duration and fromNow: two units at most, future and past', () => {
  const now = new Date('2026-03-01T12:00:00Z');
  assert.equal(duration(30_000), 'under 1 min');
  assert.equal(duration(13 * 60_000), '13 min');
  assert.equal(duration(2 * H + 13 * 60_000 + 59_000), '2 h 13 min');
  assert.equal(duration(3 * H), '3 h');
  assert.equal(duration(3 * 24 * H + 4 * H + 5 * 60_000), '3 d 4 h');
  assert.equal(fromNow(new Date(now.getTime() + 2 * H + 13 * 60_000), now), 'in 2 h 13 min');
  assert.equal(fromNow(new Date(now.getTime() - 26 * H), now), '1 d 2 h ago');
});

test('timerOf: the timer each state runs', () => {
  const at = new Date('2026-03-04T10:00:00Z');
  const base = { grace_until: null, probation_until: null, held_from: null, closed_at: null };
  assert.deepEqual(timerOf({ ...base, state: 'notified', grace_until: at }), { label: 'grace ends', at });
  assert.deepEqual(timerOf({ ...base, state: 'probation', probation_until: at }), { label: 'probation ends', at });
  assert.equal(timerOf({ ...base, state: 'restricted' }).at, null);
  assert.match(timerOf({ ...base, state: 'evidence-hold', held_from: 'restricted' }).label, /on hold \(from restricted\)/);
});

test('parseLookup: zones, ports and clear errors', () => {
  const ok = (raw: Record<string, string>) => {
    const r = parseLookup(raw);
    assert.ok(r.ok, JSON.stringify(r));
    return r.q;
  };
  const bad = (raw: Record<string, string>) => {
    const r = parseLookup(raw);
    assert.ok(!r.ok, JSON.stringify(raw));
    return r.errors.join(' | ');
  };
  assert.deepEqual(ok({ ip: ' ::ffff:192.0.2.7 ', at: '2026-03-01T10:05:00+01:00', port: '4711' }), { ip: '192.0.2.7', at: new Date('2026-03-01T09:05:00Z'), zoneless: false, port: 4711 });
  assert.deepEqual(ok({ ip: '192.0.2.7', at: '2026-03-01T10:05' }), { ip: '192.0.2.7', at: new Date('2026-03-01T10:05:00Z'), zoneless: true, port: undefined });
  assert.deepEqual(ok({ ip: '192.0.2.7', at: '2026-07-01 10:05:00', zone: 'Europe/Berlin' }).at, new Date('2026-07-01T08:05:00Z'));
  assert.deepEqual(ok({ ip: '192.0.2.7', at: '2026-07-01T10:05', zone: '-05:30' }).at, new Date('2026-07-01T15:35:00Z'));
  assert.deepEqual(ok({ ip: '2001:db8::1', at: '', zone: '' }), { ip: '2001:db8::1', at: null, zoneless: false, port: undefined });
  assert.match(bad({ ip: '10.1' }), /not an IP address/);
  assert.match(bad({ ip: '192.0.2.0/24' }), /not an IP address/);
  assert.match(bad({ ip: '' }), /Give the IP address/);
  assert.match(bad({ ip: '192.0.2.7', at: 'yesterday 5pm' }), /ISO 8601/);
  assert.match(bad({ ip: '192.0.2.7', at: '2026-02-30T10:00' }), /ISO 8601/);
  assert.match(bad({ ip: '192.0.2.7', at: '2026-03-01T10:00Z', zone: 'Europe/Berlin' }), /already has a zone/);
  assert.match(bad({ ip: '192.0.2.7', at: '2026-03-01T10:00', zone: 'Mars/Olympus' }), /zone as a name/);
  assert.match(bad({ ip: '192.0.2.7', port: '70000' }), /port is a number/);
  assert.match(bad({ ip: 'nope', port: 'x' }), /not an IP address.*\|.*port is a number/);
});

onEachStore('abuse desk page', 'bs_web_desk', (current) => {
  let restricted = '';
  let notified = '';
  let graceUntil: Date;

  before(async () => {
    const store = current();
    await hostileCustomer(store, 'c-evil');
    restricted = await restrictedIncident(store, 'c-evil');
    // Notified so that its grace ends 2 h 13 min (and a half) from now.
    const noticeAt = new Date(Date.now() - DEFAULT_SETTINGS.graceMs + 2 * H + 13.5 * 60_000);
    notified = await incidentIn(store, 'c-calm', 'notified', noticeAt, '198.51.100.20');
    graceUntil = new Date(noticeAt.getTime() + DEFAULT_SETTINGS.graceMs);
    await queuedReport(store);
    await staticImport(store, 'c-evil');
  });

  const stateOf = async (store: Store, id: string) => (await getIncident(store.db, id))!.incident.state;
  const historyOf = async (store: Store, id: string) => (await getIncident(store.db, id))!.events.length;

  test('/desk: incidents by state with counts and timers, the queue and the imports, all escaped', async () => {
    const c = await loggedIn(app(current()), 'ana');
    const res = await c.get('/desk');
    assert.equal(res.statusCode, 200);
    assertInert(res.body, '/desk');
    assert.match(res.body, /<a href="\/desk" class="on" aria-current="page">Abuse desk<\/a>/, 'in the navigation, lit');
    assert.match(res.body, /data-state="open">open \(2\)/);
    assert.match(res.body, /data-state="restricted">restricted \(1\)/);
    assert.match(res.body, /data-state="notified">notified \(1\)/);
    // The notified incident's grace timer: absolute UTC and how long from now.
    const row = res.body.slice(res.body.indexOf(`data-incident="${notified}"`), res.body.indexOf('</tr>', res.body.indexOf(`data-incident="${notified}"`)));
    assert.ok(row.includes(`grace ends <time datetime="${graceUntil.toISOString()}">${utc(graceUntil)}</time>`), row);
    assert.match(row, /\(in 2 h 13 min\)/);
    assert.match(row, /c-calm/);
    const restrictedRow = res.body.slice(res.body.indexOf(`data-incident="${restricted}"`));
    assert.match(restrictedRow, /walled-garden/);
    assert.match(restrictedRow, /restricted until the customer attests or the desk releases/);
    assert.match(restrictedRow, /&lt;script&gt;alert\(&quot;name&quot;\)/, 'the customer name, escaped');
    assert.ok(!res.body.includes('N'.repeat(2100)), 'a 5,000-character name is cut in the list');
    // The queue: the reason, the escaped reporter and a lookup link for the address.
    assert.match(res.body, /Reports nobody could be named for \(1\)/);
    assert.match(res.body, /unknown: no customer held the address then/);
    assert.match(res.body, /&quot;&gt;&lt;script&gt;alert\(&#39;reporter&#39;\)&lt;\/script&gt;\uFFFD@evil\.example/);
    assert.match(res.body, /href="\/desk\/attribute\?ip=203\.0\.113\.9&amp;at=/);
    // The imports: the run, its counts, the hostile file name as text.
    assert.match(res.body, /Last good import: <span class="mono">static-csv<\/span>/);
    assert.match(res.body, /&lt;img src=x onerror=alert\(&#39;file&#39;\)&gt;\uFFFD\.csv/);

    const only = (await c.get('/desk?state=restricted')).body;
    assert.ok(only.includes(restricted) && !only.includes(notified), 'the state tab filters');
    assert.equal((await c.get('/desk?state=exploded')).statusCode, 400);
  });

  test('an incident: contact, evidence with inert header lines, history; an analyst gets no buttons', async () => {
    const c = await loggedIn(app(current()), 'ana');
    const res = await c.get(`/desk/incidents/${restricted}`);
    assert.equal(res.statusCode, 200);
    assertInert(res.body, 'incident');
    assert.match(res.body, /<pre class="headers">Received: from pc \(\[192\.0\.2\.50\]\)\nSubject: &lt;script&gt;alert\(&quot;hdr&quot;\)&lt;\/script&gt; \uFFFDgpj\.exe\nX-Long: H{5000}\n<\/pre>/);
    assert.match(res.body, /Worm\.&lt;b&gt;Mydoom&lt;\/b&gt;\uFFFDtxt\.exe, Win\.Worm\.Mydoom/);
    assert.match(res.body, /&lt;script&gt;alert\(&quot;summary&quot;\)&lt;\/script&gt; X-Injected: 1 \uFFFDtxt\.exe S+/, 'the summary on one line, escaped');
    assert.match(res.body, /&quot;&gt;&lt;img src=x onerror=alert\(1\)&gt;@evil\.example/, 'the contact email, escaped');
    assert.match(res.body, /Europe\/Berlin/);
    for (const kind of ['opened', 'notice-sent', 'grace-expired']) assert.match(res.body, new RegExp(`<td class="mono">${kind}</td>`), kind);
    assert.match(res.body, /notified → restricted/);
    assert.doesNotMatch(res.body, /\/transition"/, 'no state-change form for an analyst');
    assert.match(res.body, /State changes need the admin role\./);
    assert.equal((await c.get('/desk/incidents/00000000-0000-4000-8000-000000000000')).statusCode, 404);
    assert.equal((await c.get('/desk/incidents/not-an-id')).statusCode, 400);
  });

  test('an analyst cannot change a state (403); no session is sent to the login (GET) or refused (POST)', async () => {
    const store = current();
    const web = app(store);
    const ana = await loggedIn(web, 'ana');
    const before = await historyOf(store, restricted);
    const res = await ana.submit(`/desk/incidents/${restricted}`, `/desk/incidents/${restricted}/transition`, { event: 'desk-release' });
    assert.equal(res.statusCode, 403);
    assert.match(res.body, /needs the admin role; you are logged in as analyst/);
    assert.equal(await stateOf(store, restricted), 'restricted');
    assert.equal(await historyOf(store, restricted), before);

    const nobody = new Client(web);
    const page = await nobody.get('/desk');
    assert.equal(page.statusCode, 303);
    assert.equal(page.headers.location, '/login?next=%2Fdesk');
    assert.equal((await nobody.get(`/desk/incidents/${restricted}`)).headers.location, `/login?next=${encodeURIComponent(`/desk/incidents/${restricted}`)}`);
    assert.equal((await nobody.post(`/desk/incidents/${restricted}/transition`, { _csrf: 'x', event: 'close' })).statusCode, 401);
    // An admin without the token: refused before anything is read.
    const admin = await loggedIn(web, 'admin');
    assert.equal((await admin.post(`/desk/incidents/${restricted}/transition`, { event: 'close' })).statusCode, 403);
    assert.equal(await stateOf(store, restricted), 'restricted');
  });

  test('a refused transition is a 409 with the lifecycle\'s reason and changes nothing', async () => {
    const store = current();
    const admin = await loggedIn(app(store), 'admin');
    const page = (await admin.get(`/desk/incidents/${restricted}`)).body;
    // The buttons offered are exactly what the lifecycle accepts from restricted.
    assert.deepEqual([...page.matchAll(/data-event="([a-z-]+)"/g)].map((m) => m[1]), ['desk-release', 'hold', 'close']);
    const events = await historyOf(store, restricted);
    const audits = (await store.db.selectFrom('audit').select('id').where('target', '=', restricted).execute()).length;
    const res = await admin.post(`/desk/incidents/${restricted}/transition`, { _csrf: csrfOf(page), event: 'unhold' });
    assert.equal(res.statusCode, 409);
    assert.match(res.body, /role="alert">Refused: unhold applies to an incident on evidence-hold, not restricted\. Nothing was changed\./);
    assertInert(res.body, 'refusal page');
    assert.equal(await stateOf(store, restricted), 'restricted');
    assert.equal(await historyOf(store, restricted), events);
    assert.equal((await store.db.selectFrom('audit').select('id').where('target', '=', restricted).execute()).length, audits);
    // An event that is not the desk's is not even a valid form.
    assert.equal((await admin.post(`/desk/incidents/${restricted}/transition`, { _csrf: csrfOf(page), event: 'attest' })).statusCode, 400);
  });

  test('hold, unhold, desk release: each changes the state, is in the history and audited as the admin', async () => {
    const store = current();
    const admin = await loggedIn(app(store), 'admin');
    const url = `/desk/incidents/${restricted}`;
    const step = async (event: string, want: string, note?: string) => {
      const res = await admin.submit(url, `${url}/transition`, { event, ...(note ? { note } : {}) });
      assert.equal(res.statusCode, 303, `${event}: ${res.body.slice(0, 300)}`);
      assert.match(res.headers.location as string, new RegExp(`^${url}\\?done=${event}&from=`));
      assert.equal(await stateOf(store, restricted), want);
      const shown = await admin.get(res.headers.location as string);
      assert.match(shown.body, /class="done" role="status"/);
      assert.match(shown.body, new RegExp(`<span class="state s-${want}">${want}</span>`));
      assertInert(shown.body, `after ${event}`);
      return shown.body;
    };
    const held = await step('hold', 'evidence-hold', `checking <script>alert("note")</script>\r\nX-Injected: 1 \u202E`);
    assert.deepEqual([...held.matchAll(/data-event="([a-z-]+)"/g)].map((m) => m[1]), ['unhold', 'close']);
    assert.match(held, /on hold \(from restricted\)/);
    assert.match(held, /checking &lt;script&gt;alert/, 'the note is in the history, escaped');
    await step('unhold', 'restricted');
    const released = await step('desk-release', 'probation');
    assert.match(released, /probation ends <time/);
    assert.match(released, /\(in 14 d\)|\(in 13 d 23 h\)/);

    const audit = await store.db.selectFrom('audit').select(['actor', 'action', 'detail']).where('target', '=', restricted).where('action', 'in', ['incident.hold', 'incident.unhold', 'incident.desk-release']).orderBy('at').execute();
    assert.deepEqual(audit.map((a) => [a.actor, a.action]), [['web:admin', 'incident.hold'], ['web:admin', 'incident.unhold'], ['web:admin', 'incident.desk-release']]);
    assert.deepEqual(audit.map((a) => [(a.detail as { from: string }).from, (a.detail as { to: string }).to]), [['restricted', 'evidence-hold'], ['evidence-hold', 'restricted'], ['restricted', 'probation']]);
    assert.equal((audit[0]!.detail as { ip: string }).ip, '127.0.0.1');
    assert.doesNotMatch((audit[0]!.detail as { note: string }).note, /[\r\n\u202e]/, 'the note is cleaned before it is stored');
    const { incident } = (await getIncident(store.db, restricted))!;
    assert.equal(incident.restriction_level, null, 'the desk release lifted the restriction');
    assert.ok(await store.db.selectFrom('jobs').select('id').where('kind', '=', 'desk-enforce-publish').where('dedupe_key', 'like', `desk-enforce:${restricted}:%`).executeTakeFirst(), 'and queued the enforcement publish');
  });

  test('attribution lookup: customer, unknown, ambiguous, and errors for bad input', async () => {
    const c = await loggedIn(app(current()), 'ana');
    const form = (await c.get('/desk/attribute')).body;
    assert.match(form, /<form class="filters lookup" method="get" action="\/desk\/attribute">/);
    const found = await c.get(`/desk/attribute?ip=198.51.100.3&at=${encodeURIComponent('2026-03-01T10:05:00+01:00')}`);
    assert.equal(found.statusCode, 200);
    assertInert(found.body, 'lookup');
    assert.match(found.body, /data-answer="customer">Customer <span class="mono">c-evil<\/span>/);
    assert.match(found.body, /&lt;script&gt;alert\(&quot;name&quot;\)/);
    assert.match(found.body, /<th>Through<\/th><td>static<\/td>/);
    assert.match(found.body, /Asked: <span class="mono">198\.51\.100\.3<\/span> at 2026-03-01 09:05:00Z\./);
    assert.match(found.body, /<th>Open incident<\/th><td><a href="\/desk\/incidents\//);
    const zoned = await c.get('/desk/attribute?ip=198.51.100.3&at=2026-03-01T10:05&zone=Europe%2FBerlin');
    assert.match(zoned.body, /at 2026-03-01 09:05:00Z\./);
    assert.match((await c.get('/desk/attribute?ip=198.51.100.3&at=2026-03-01T10:05')).body, /\(no zone given: read as UTC\)/);
    const unknown = await c.get('/desk/attribute?ip=203.0.113.77&at=2026-03-01T10:05:00Z');
    assert.match(unknown.body, /data-answer="unknown">Unknown/);
    // An address leased to someone needs a time.
    await importLeaseRecords(current().db, [{ ip: '192.0.2.99', start: new Date('2026-01-01T00:00:00Z'), end: null, line: null, customerId: 'c-calm' }], { format: 'kea-csv', file: 'kea.csv' });
    const ambiguous = await c.get('/desk/attribute?ip=192.0.2.99');
    assert.match(ambiguous.body, /data-answer="ambiguous">Ambiguous<\/h2><p>a dynamic address and no time/);

    for (const [q, message] of [
      ['ip=%3Cscript%3Ealert(1)%3C%2Fscript%3E', /That is not an IP address/],
      ['ip=192.0.2.7&at=tomorrow', /ISO 8601/],
      ['ip=192.0.2.7&at=2026-03-01T10:05Z&zone=UTC', /already has a zone/],
      ['ip=192.0.2.7&port=99999', /port is a number/],
    ] as const) {
      const res = await c.get(`/desk/attribute?${q}`);
      assert.equal(res.statusCode, 400, q);
      assert.match(res.body, message, q);
      assertInert(res.body, q);
    }
    const echoed = (await c.get('/desk/attribute?ip=%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E')).body;
    assert.match(echoed, /value="&quot;&gt;&lt;script&gt;alert\(1\)&lt;\/script&gt;"/, 'the bad input comes back escaped in the form');
    assert.equal((await c.get('/desk/attribute?ip=1&extra=1')).statusCode, 400, 'unknown fields are refused');
  });
});
