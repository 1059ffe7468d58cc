/*
 * The console's safety, through the whole app with inject(): sessions
 * everywhere but the public routes, roles, CSRF, login throttling shared
 * between nodes, security headers, no open redirect, 5xx that say nothing.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { html } from '../../src/web/html.ts';
import type { ConsolePage } from '../../src/web/pages/registry.ts';
import { openStore, type Store } from '../../src/store/store.ts';
import { app, Client, csrfOf, insertMessage, loggedIn, PASSWORD, withUsers } from './helpers.ts';

let store: Store;
let quarantineId: string;
before(async () => {
  store = await openStore('pglite-memory:');
  await withUsers(store);
  quarantineId = (await insertMessage(store, { verdict: 'infected', detail: 'Worm.Mydoom.A', quarantine: Buffer.from('Subject: hi\r\n\r\nbody\r\n') })).quarantineId!;
});
after(() => store.close());

const PAGES = () => ['/', '/?range=week', '/trace', '/outbox', '/outbox?state=review', `/trace/00000000-0000-4000-8000-000000000000`, '/quarantine', `/quarantine/${quarantineId}`, '/settings', '/audit', '/desk', '/desk?state=closed', '/desk/attribute?ip=192.0.2.7', '/desk/incidents/00000000-0000-4000-8000-000000000000', '/desk/reports/00000000-0000-4000-8000-000000000000'];

test('every console page needs a session: pages redirect to /login, the API and POSTs answer 401', async () => {
  const web = app(store);
  for (const url of PAGES()) {
    const res = await web.inject({ method: 'GET', url });
    assert.equal(res.statusCode, 303, url);
    assert.equal(res.headers.location, `/login?next=${encodeURIComponent(url)}`, url);
  }
  const api = await web.inject({ method: 'GET', url: '/api/dashboard/series?range=hour' });
  assert.equal(api.statusCode, 401);
  assert.deepEqual(api.json(), { error: 'log in first' });
  for (const action of ['release', 'delete', 'download']) {
    const res = await web.inject({ method: 'POST', url: `/quarantine/${quarantineId}/${action}`, payload: { _csrf: 'x' } });
    assert.equal(res.statusCode, 401, action);
  }
  const logout = await web.inject({ method: 'POST', url: '/logout', payload: { _csrf: 'x' } });
  assert.equal(logout.statusCode, 401);
});

test('public without a session: /healthz, /metrics, /login and the static assets', async () => {
  const web = app(store);
  for (const url of ['/healthz', '/metrics', '/login', '/assets/console.css', '/assets/dashboard.js', '/assets/vendor/uplot/uPlot.iife.min.js', '/assets/vendor/uplot/uPlot.min.css']) {
    const res = await web.inject({ method: 'GET', url });
    assert.equal(res.statusCode, 200, url);
  }
  // Only the two uPlot files are served from node_modules, and no directory listing anywhere.
  assert.equal((await web.inject({ method: 'GET', url: '/assets/vendor/uplot/uPlot.cjs.js' })).statusCode, 404);
  assert.equal((await web.inject({ method: 'GET', url: '/assets/vendor/uplot/../../../../package.json' })).statusCode, 404);
  assert.equal((await web.inject({ method: 'GET', url: '/assets/' })).statusCode, 404);
});

test('log in: a wrong password and an unknown user get the same answer; the right one gets a hardened session cookie', async () => {
  const web = app(store);
  const wrong = await new Client(web, '198.51.100.1').login('admin', 'not the password');
  const unknown = await new Client(web, '198.51.100.1').login('nobody', 'not the password');
  assert.equal(wrong.statusCode, 401);
  assert.equal(unknown.statusCode, 401);
  assert.match(wrong.body, /Wrong user name or password/);
  assert.match(unknown.body, /Wrong user name or password/);

  const c = new Client(web, '198.51.100.2');
  const ok = await c.login('admin');
  assert.equal(ok.statusCode, 303);
  assert.equal(ok.headers.location, '/');
  const setCookie = ([] as string[]).concat(ok.headers['set-cookie'] as string | string[]).find((h) => h.startsWith('bs_session='))!;
  assert.match(setCookie, /HttpOnly/i);
  assert.match(setCookie, /SameSite=Strict/i);
  assert.doesNotMatch(setCookie, /Secure/i, 'plain HTTP: no Secure flag unless configured');
  assert.match(c.cookies.bs_session!, /^[A-Za-z0-9_-]{43}\.[A-Za-z0-9+/_-]+/, 'value.signature');
  const home = await c.get('/');
  assert.equal(home.statusCode, 200);
  assert.match(home.body, /Dashboard/);
  assert.match(home.body, /admin<\/span> <span class="role">admin/);
});

test('secureCookies marks the session and CSRF cookies Secure and turns on HSTS', async () => {
  const web = app(store, { console: { secureCookies: true } });
  const c = new Client(web);
  const ok = await c.login('ana');
  const cookies = ([] as string[]).concat(ok.headers['set-cookie'] as string | string[]);
  assert.ok(cookies.find((h) => h.startsWith('bs_session='))!.includes('Secure'));
  const page = await web.inject({ method: 'GET', url: '/login' });
  assert.ok(([] as string[]).concat(page.headers['set-cookie'] as string).find((h) => h.startsWith('bs_csrf='))!.includes('Secure'));
  assert.match(String(page.headers['strict-transport-security']), /max-age=/);
});

test('a tampered or forged session cookie is no session', async () => {
  const web = app(store);
  const c = await loggedIn(web, 'admin');
  const [value, signature] = c.cookies.bs_session!.split('.');
  c.cookies.bs_session = `${value!.slice(0, -1)}${value!.endsWith('A') ? 'B' : 'A'}.${signature}`;
  assert.equal((await c.get('/')).statusCode, 303);
  c.cookies.bs_session = value!; // unsigned
  assert.equal((await c.get('/')).statusCode, 303);
});

test('a session made on one node works on another (key and sessions in the store); logging out ends it everywhere', async () => {
  const nodeA = app(store);
  const nodeB = app(store, { nodeName: 'other-node' });
  const c = await loggedIn(nodeA, 'ana');
  const onB = new Client(nodeB);
  onB.cookies = { ...c.cookies };
  assert.equal((await onB.get('/quarantine')).statusCode, 200);
  const copied = { ...c.cookies };
  const out = await c.submit('/', '/logout');
  assert.equal(out.statusCode, 303);
  assert.equal(out.headers.location, '/login');
  onB.cookies = copied; // a copy of the cookie taken before logout
  assert.equal((await onB.get('/quarantine')).statusCode, 303);
});

test('a disabled user loses their session at once', async () => {
  const { addUser, setDisabled } = await import('../../src/web/auth/users.ts');
  await addUser(store.db, 'temp', 'analyst', PASSWORD);
  const web = app(store);
  const c = new Client(web);
  assert.equal((await c.login('temp')).statusCode, 303);
  assert.equal((await c.get('/')).statusCode, 200);
  await setDisabled(store.db, 'temp', true);
  assert.equal((await c.get('/')).statusCode, 303);
  assert.equal((await new Client(web).login('temp')).statusCode, 401);
});

test('an analyst reads every page but gets 403 on every admin action', async () => {
  const web = app(store, { releaseQuarantined: async () => assert.fail('an analyst must not reach release') });
  const c = await loggedIn(web, 'ana');
  for (const url of PAGES()) assert.notEqual((await c.get(url)).statusCode, 403, url);
  const detail = await c.get(`/quarantine/${quarantineId}`);
  assert.doesNotMatch(detail.body, /confirm\/release/, 'no release button for an analyst');
  for (const action of ['release', 'delete', 'download']) {
    assert.equal((await c.get(`/quarantine/${quarantineId}/confirm/${action}`)).statusCode, 403, `confirm ${action}`);
    // Even with a valid token for this session the role check answers first.
    const res = await c.post(`/quarantine/${quarantineId}/${action}`, { _csrf: csrfOf(detail.body) });
    assert.equal(res.statusCode, 403, action);
    assert.match(res.body, /needs the admin role/);
  }
  const row = await store.db.selectFrom('quarantine').select(['released_at', 'deleted_at']).where('id', '=', quarantineId).executeTakeFirstOrThrow();
  assert.equal(row.released_at, null);
  assert.equal(row.deleted_at, null);
});

test('CSRF: a state-changing request without a token, with a bad one, or with another session\'s is a 403', async () => {
  const web = app(store);
  const admin = await loggedIn(web, 'admin');
  const other = await loggedIn(web, 'admin');
  const otherToken = csrfOf((await other.get(`/quarantine/${quarantineId}/confirm/delete`)).body);
  await admin.get(`/quarantine/${quarantineId}/confirm/delete`); // has its CSRF cookie
  for (const form of [{}, { _csrf: 'forged' }, { _csrf: otherToken }] as Record<string, string>[]) {
    const res = await admin.post(`/quarantine/${quarantineId}/delete`, form);
    assert.equal(res.statusCode, 403, JSON.stringify(form));
    assert.match(res.body, /form has expired or did not come from this console/);
  }
  // No CSRF cookie at all (a cross-site form post whose browser withheld our SameSite cookies).
  const res = await web.inject({ method: 'POST', url: '/login', payload: { name: 'admin', password: PASSWORD, _csrf: 'x' } });
  assert.equal(res.statusCode, 403);
  const row = await store.db.selectFrom('quarantine').select('deleted_at').where('id', '=', quarantineId).executeTakeFirstOrThrow();
  assert.equal(row.deleted_at, null);
});

test('login throttling: after 5 failures for a user even the right password is refused, on every node', async () => {
  const nodeA = app(store);
  const nodeB = app(store);
  const { addUser } = await import('../../src/web/auth/users.ts');
  await addUser(store.db, 'victim', 'analyst', PASSWORD);
  for (let i = 0; i < 5; i++) {
    const res = await new Client(i % 2 ? nodeA : nodeB, `203.0.113.${i + 1}`).login('victim', `guess number ${i}`);
    assert.equal(res.statusCode, 401, `attempt ${i + 1}`);
  }
  const refused = await new Client(nodeB, '203.0.113.99').login('victim');
  assert.equal(refused.statusCode, 429);
  assert.match(refused.body, /Too many failed logins/);
  assert.ok(Number(refused.headers['retry-after']) > 0);
  // Other users are not locked out by it.
  assert.equal((await new Client(nodeA, '203.0.113.99').login('ana')).statusCode, 303);
});

test('login throttling per address: one address spraying many names is stopped', async () => {
  const web = app(store, { console: { loginThrottle: { perIp: 3 } } });
  for (let i = 0; i < 3; i++) assert.equal((await new Client(web, '192.0.2.250').login(`user${i}`, 'wrong password')).statusCode, 401);
  assert.equal((await new Client(web, '192.0.2.250').login('admin')).statusCode, 429);
  assert.equal((await new Client(web, '192.0.2.251').login('admin')).statusCode, 303);
});

test('security headers on pages, the login form and the API: strict CSP, no framing, no referrer', async () => {
  const web = app(store);
  const c = await loggedIn(web, 'ana');
  for (const res of [await c.get('/'), await c.get('/api/dashboard/series'), await web.inject({ method: 'GET', url: '/login' }), await web.inject({ method: 'GET', url: '/healthz' })]) {
    const csp = String(res.headers['content-security-policy']);
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.equal(res.headers['x-frame-options'], 'DENY');
    assert.equal(res.headers['referrer-policy'], 'no-referrer');
    assert.equal(res.headers['x-content-type-options'], 'nosniff');
  }
  assert.equal((await c.get('/')).headers['cache-control'], 'no-store');
  // No inline script on any page: every <script> has a src under /assets.
  for (const url of PAGES()) {
    const body = (await c.get(url)).body;
    for (const tag of body.match(/<script[^>]*>/g) ?? []) assert.match(tag, /^<script src="\/assets\/[^"]+" defer>$/, url);
    assert.doesNotMatch(body, /\son[a-z]+=/i, `${url}: no event-handler attributes`);
  }
});

test('after login only a path on this console is followed: no open redirect', async () => {
  const web = app(store);
  for (const next of ['//evil.example/', 'https://evil.example/', '/\\evil.example', 'javascript:alert(1)']) {
    const res = await new Client(web).login('ana', PASSWORD, next);
    assert.equal(res.statusCode, 303);
    assert.equal(res.headers.location, '/', next);
  }
  assert.equal((await new Client(web).login('ana', PASSWORD, '/quarantine?state=all')).headers.location, '/quarantine?state=all');
});

test('a 5xx says nothing about internals; a 4xx says what was wrong', async () => {
  const broken: ConsolePage = {
    slot: 'outbox',
    label: 'Broken',
    path: '/broken',
    role: 'analyst',
    routes(scope) {
      scope.get('/broken', { config: { role: 'analyst' }, schema: { querystring: { type: 'object', properties: {} } } }, async () => {
        throw new Error('secret internals: password=hunter2');
      });
    },
  };
  const web = app(store, { pages: [broken] });
  const c = await loggedIn(web, 'ana');
  const res = await c.get('/broken');
  assert.equal(res.statusCode, 500);
  assert.doesNotMatch(res.body, /secret internals|hunter2/);
  assert.match(res.body, /request id/);
  assert.match((await c.get('/')).body, /href="\/broken"/, 'a registered page gets its navigation slot');
  const bad = await c.get('/trace?limit=abc');
  assert.equal(bad.statusCode, 400);
  assert.match(bad.body, /Bad request/);
});

test('a console route without a schema for its query, params or body stops start-up', async () => {
  const careless: ConsolePage = {
    slot: 'desk',
    label: 'Careless',
    path: '/careless',
    role: 'analyst',
    routes(scope, ctx) {
      scope.get('/careless', { config: { role: 'analyst' } }, async (request, reply) => ctx.render(request, reply, { title: 'x', body: html`x` }));
    },
  };
  await assert.rejects(async () => {
    await app(store, { pages: [careless] }).ready();
  }, /no schema for querystring/);
});

test('a route that forgets to declare its role is admin-only', async () => {
  const forgetful: ConsolePage = {
    slot: 'settings',
    label: 'Forgetful',
    path: '/forgetful',
    role: 'analyst',
    routes(scope, ctx) {
      scope.get('/forgetful', { schema: { querystring: { type: 'object', properties: {} } } }, async (request, reply) => ctx.render(request, reply, { title: 'Forgetful', body: html`<p>forgetful</p>` }));
    },
  };
  const web = app(store, { pages: [forgetful] });
  assert.equal((await (await loggedIn(web, 'ana')).get('/forgetful')).statusCode, 403);
  assert.equal((await (await loggedIn(web, 'admin')).get('/forgetful')).statusCode, 200);
});
