/*
 * The desk's queue in the console, through the whole app on PGlite and on
 * PostgreSQL: from /desk to a report's page (hostile reporter, summary and
 * header lines escaped, header lines inert <pre>), the attribution asked
 * again with the report's values or the agent's own time (pre-filling the
 * assign form), assign and dismiss as admin-only CSRF'd POSTs decided by
 * desk/queue (refusals 400/409 with the reason, nothing changed), and an
 * analyst who reads the page but gets no forms and a 403 on each POST.
 */
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { getIncident } from '../../src/desk/incidents.ts';
import { FORWARD_JOB, takeReport } from '../../src/desk/intake.ts';
import { importLeaseRecords } from '../../src/desk/leases.ts';
import { getReport } from '../../src/desk/queue.ts';
import { deskPorts } from '../../src/desk/wiring.ts';
import type { Store } from '../../src/store/store.ts';
import { app, assertInert, Client, csrfOf, loggedIn, onEachStore } from './helpers.ts';
import { hostileCustomer, queuedReport } from './desk-fixtures.ts';

const GONE = '00000000-0000-4000-8000-000000000000';

onEachStore('the desk queue in the console', 'bs_web_desk_queue', (current) => {
  let hostile = '';
  let leased = '';
  let noAddress = '';

  before(async () => {
    const store = current();
    await hostileCustomer(store, 'c-evil');
    await store.db.insertInto('customers').values({ id: 'c-1', name: 'Erika Mustermann', email: 'erika@customer.example', language: 'de', time_zone: 'Europe/Berlin' }).execute();
    hostile = await queuedReport(store);
    // Nobody held 192.0.2.61 when the report came in; the lease file imported since says c-1 did.
    leased = await queuedReport(store, '192.0.2.61');
    await importLeaseRecords(store.db, [{ ip: '192.0.2.61', start: new Date('2026-01-01T00:00:00Z'), end: null, line: null, customerId: 'c-1' }], { format: 'kea-csv', file: 'kea.csv' });
    // 192.0.2.62 was c-1's in January only: the report's own time finds nobody, the agent's January time finds c-1.
    await importLeaseRecords(store.db, [{ ip: '192.0.2.62', start: new Date('2026-01-01T00:00:00Z'), end: new Date('2026-02-01T00:00:00Z'), line: null, customerId: 'c-1' }], { format: 'kea-csv', file: 'kea.csv' });
    noAddress = (await takeReport(store.db, deskPorts({}), { via: 'abuse', reporter: 'r@example.org', ip: null, port: null, parsed: null })).id;
  });

  const rowOf = (store: Store, id: string) => getReport(store.db, id);
  const auditOf = (store: Store, id: string) => store.db.selectFrom('audit').select(['actor', 'action', 'detail']).where('target', '=', id).execute();
  const forms = (body: string) => [...body.matchAll(/<form [^>]*action="\/desk\/reports\/[^"]+\/(assign|dismiss)"/g)].map((m) => m[1]);

  test('/desk links each queued report to its page; an analyst reads it, escaped, with inert header lines and no forms', async () => {
    const c = await loggedIn(app(current()), 'ana');
    const desk = await c.get('/desk');
    assert.match(desk.body, new RegExp(`<tr data-report="${hostile}">\\s*<td class="nowrap"><a href="/desk/reports/${hostile}"`));
    const res = await c.get(`/desk/reports/${hostile}`);
    assert.equal(res.statusCode, 200);
    assertInert(res.body, 'report page');
    assert.match(res.body, /<a href="\/desk" class="on" aria-current="page">Abuse desk<\/a>/);
    assert.match(res.body, /<span class="state s-queued">in the queue<\/span>/);
    assert.match(res.body, /<pre class="headers">Received: from pc \(\[192\.0\.2\.50\]\)\nSubject: &lt;script&gt;alert\(&quot;hdr&quot;\)&lt;\/script&gt; \uFFFDgpj\.exe\nX-Long: H{5000}\n<\/pre>/);
    assert.match(res.body, /&lt;script&gt;alert\(&quot;summary&quot;\)&lt;\/script&gt; X-Injected: 1 \uFFFDtxt\.exe S+/);
    assert.match(res.body, /&quot;&gt;&lt;script&gt;alert\(&#39;reporter&#39;\)&lt;\/script&gt;\uFFFD@evil\.example/);
    assert.match(res.body, /<th>Why nobody was named<\/th><td class="wrap">unknown: no customer held the address then<\/td>/);
    assert.match(res.body, /data-answer="unknown">Unknown/, 'the attribution asked again');
    assert.deepEqual(forms(res.body), [], 'no assign or dismiss form for an analyst');
    assert.match(res.body, /Assigning and dismissing need the admin role\./);
    assert.equal((await c.get(`/desk/reports/${GONE}`)).statusCode, 404);
    assert.match((await c.get(`/desk/reports/${GONE}`)).body, /No report with that id/);
    assert.equal((await c.get('/desk/reports/not-an-id')).statusCode, 400);
    assert.equal((await c.get(`/desk/reports/${hostile}?done=explode`)).statusCode, 400);
  });

  test('an analyst gets 403 on assign and dismiss; no session 401; an admin without the token 403; nothing changes', async () => {
    const store = current();
    const web = app(store);
    const ana = await loggedIn(web, 'ana');
    const page = (await ana.get(`/desk/reports/${hostile}`)).body;
    const assign = await ana.post(`/desk/reports/${hostile}/assign`, { _csrf: csrfOf(page), customer: 'c-1' });
    assert.equal(assign.statusCode, 403);
    assert.match(assign.body, /needs the admin role; you are logged in as analyst/);
    assert.equal((await ana.post(`/desk/reports/${hostile}/dismiss`, { _csrf: csrfOf(page), reason: 'noise' })).statusCode, 403);
    assert.equal((await new Client(web).post(`/desk/reports/${hostile}/assign`, { _csrf: 'x', customer: 'c-1' })).statusCode, 401);
    const admin = await loggedIn(web, 'admin');
    assert.equal((await admin.post(`/desk/reports/${hostile}/dismiss`, { reason: 'noise' })).statusCode, 403);
    assert.equal((await rowOf(store, hostile))!.state, 'unattributed');
    assert.deepEqual(await auditOf(store, hostile), []);
  });

  test('assign: the form is pre-filled from attribute(), the report is filed with one forward, audited as the admin; a second submit is a 409', async () => {
    const store = current();
    const admin = await loggedIn(app(store), 'admin');
    const url = `/desk/reports/${leased}`;
    const page = await admin.get(url);
    assert.equal(page.statusCode, 200);
    assert.match(page.body, /Asked again with what the report says\./);
    assert.match(page.body, /data-answer="customer">Customer <span class="mono">c-1<\/span>/);
    assert.match(page.body, /<input name="customer" required maxlength="200" size="30" value="c-1">/);
    assert.deepEqual(forms(page.body), ['assign', 'dismiss']);
    const token = csrfOf(page.body);

    const res = await admin.post(`${url}/assign`, { _csrf: token, customer: 'c-1' });
    assert.equal(res.statusCode, 303, res.body.slice(0, 300));
    assert.equal(res.headers.location, `${url}?done=assign`);
    const shown = await admin.get(res.headers.location as string);
    assert.match(shown.body, /class="done" role="status">Assigned/);
    assert.match(shown.body, /<tr><th>Assigned<\/th><td>to <span class="mono">c-1<\/span> by <span class="mono">web:admin<\/span>/);
    assert.deepEqual(forms(shown.body), [], 'an assigned report has no forms');

    const r = (await rowOf(store, leased))!;
    assert.equal(r.state, 'attributed');
    assert.match(shown.body, new RegExp(`<a href="/desk/incidents/${r.incidentId}"`));
    const { evidence } = (await getIncident(store.db, r.incidentId!))!;
    assert.deepEqual(evidence.map((e) => [e.ip, e.source]), [['192.0.2.61', 'form']]);
    const jobs = await store.db.selectFrom('jobs').select('id').where('kind', '=', FORWARD_JOB).where('dedupe_key', '=', `${FORWARD_JOB}:${leased}`).execute();
    assert.equal(jobs.length, 1);
    const audit = await auditOf(store, leased);
    assert.deepEqual(audit.map((a) => [a.actor, a.action, (a.detail as { ip: string }).ip]), [['web:admin', 'desk-report.assign', '127.0.0.1']]);

    // The same form sent again (a double click, a second tab).
    const again = await admin.post(`${url}/assign`, { _csrf: token, customer: 'c-1' });
    assert.equal(again.statusCode, 409);
    assert.match(again.body, /role="alert">Refused: already assigned to customer c-1 by web:admin at [0-9TZ:-]+\. Nothing was changed\./);
    assert.equal((await getIncident(store.db, r.incidentId!))!.evidence.length, 1);
    assert.equal((await auditOf(store, leased)).length, 1);
  });

  test('the agent\'s own time finds the customer the report\'s does not; bad input is a 400 with the reason', async () => {
    const store = current();
    const id = await queuedReport(store, '192.0.2.62');
    const admin = await loggedIn(app(store), 'admin');
    const own = await admin.get(`/desk/reports/${id}`);
    assert.match(own.body, /data-answer="unknown"/);
    assert.match(own.body, /<input name="customer" required maxlength="200" size="30" value="">/);
    const asked = await admin.get(`/desk/reports/${id}?at=${encodeURIComponent('2026-01-15T10:00')}&zone=Europe%2FBerlin`);
    assert.equal(asked.statusCode, 200);
    assert.match(asked.body, /Asked with your time, zone or port\./);
    assert.match(asked.body, /Asked: <span class="mono">192\.0\.2\.62<\/span> at 2026-01-15 09:00:00Z\./);
    assert.match(asked.body, /value="c-1">/);
    const bad = await admin.get(`/desk/reports/${id}?at=%3Cscript%3Etomorrow&port=99999`);
    assert.equal(bad.statusCode, 400);
    assertInert(bad.body, 'bad lookup');
    assert.match(bad.body, /ISO 8601/);
    assert.match(bad.body, /port is a number/);
    assert.match(bad.body, /value="&lt;script&gt;tomorrow"/);
  });

  test('refusals of the agent\'s input: an unknown customer and a missing or long reason are 400s that change nothing; a report without an address has no assign form', async () => {
    const store = current();
    const admin = await loggedIn(app(store), 'admin');
    const url = `/desk/reports/${hostile}`;
    const evil = `"><script>alert('cust')</script>\u202E`;
    const unknown = await admin.submit(url, `${url}/assign`, { customer: evil });
    assert.equal(unknown.statusCode, 400);
    assertInert(unknown.body, 'unknown customer');
    assert.match(unknown.body, /Refused: no customer with id &quot;&gt;&lt;script&gt;alert\(&#39;cust&#39;\)&lt;\/script&gt;\uFFFD\. Nothing was changed\./);
    assert.match(unknown.body, /name="customer" required maxlength="200" size="30" value="&quot;&gt;&lt;script&gt;/, 'what was typed comes back, escaped');
    const empty = await admin.submit(url, `${url}/dismiss`, { reason: ' \r\n ' });
    assert.equal(empty.statusCode, 400);
    assert.match(empty.body, /Refused: a dismissal needs a reason\./);
    const long = await admin.submit(url, `${url}/dismiss`, { reason: 'x'.repeat(501) });
    assert.equal(long.statusCode, 400);
    assert.match(long.body, /the reason is 501 characters, at most 500 are kept/);
    assert.equal((await admin.submit(url, `/desk/reports/${GONE}/dismiss`, { reason: 'x' })).statusCode, 404);
    assert.equal((await rowOf(store, hostile))!.state, 'unattributed');
    assert.deepEqual(await auditOf(store, hostile), []);

    const none = await admin.get(`/desk/reports/${noAddress}`);
    assert.deepEqual(forms(none.body), ['dismiss']);
    assert.match(none.body, /The report gives no address: there is nothing to file against a customer\./);
    const refused = await admin.submit(`/desk/reports/${noAddress}`, `/desk/reports/${noAddress}/assign`, { customer: 'c-1' });
    assert.equal(refused.statusCode, 409);
    assert.match(refused.body, /Refused: the report names no address/);
  });

  test('dismiss: out of the queue with the admin, the time and the cleaned reason, shown escaped and audited', async () => {
    const store = current();
    const admin = await loggedIn(app(store), 'admin');
    const queueBefore = /Reports nobody could be named for \((\d+)\)/.exec((await admin.get('/desk')).body)![1];
    const url = `/desk/reports/${hostile}`;
    const res = await admin.submit(url, `${url}/dismiss`, { reason: `sinkhole <script>alert("why")</script>\r\nX-Injected: 1 \u202Etxt.exe` });
    assert.equal(res.statusCode, 303, res.body.slice(0, 300));
    const shown = await admin.get(res.headers.location as string);
    assertInert(shown.body, 'dismissed');
    assert.match(shown.body, /class="done" role="status">Dismissed\./);
    assert.match(shown.body, /<span class="state s-cancelled">dismissed<\/span>/);
    assert.match(shown.body, /<td class="wrap dismiss-reason">sinkhole &lt;script&gt;alert\(&quot;why&quot;\)&lt;\/script&gt; X-Injected: 1 \?txt\.exe<\/td>/);
    assert.deepEqual(forms(shown.body), []);
    const r = (await rowOf(store, hostile))!;
    assert.deepEqual([r.state, r.dismissedBy], ['dismissed', 'web:admin']);
    const audit = await auditOf(store, hostile);
    assert.deepEqual(audit.map((a) => [a.actor, a.action]), [['web:admin', 'desk-report.dismiss']]);
    const queueAfter = /Reports nobody could be named for \((\d+)\)/.exec((await admin.get('/desk')).body)![1];
    assert.equal(Number(queueAfter), Number(queueBefore) - 1);
  });
});
