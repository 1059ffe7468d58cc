/*
 * The web side's authorisation matrix: EVERY route the app registers (read
 * from Fastify's own route tree, printRoutes, after ready) × five visitors —
 * no session, analyst, admin, a customer's portal token, another customer's
 * token — with the status each must get. The app is built the way
 * `backstop serve` builds it with the desk on: console, public report form,
 * portal, restricted list. A route with no row in EXPECTED fails the test,
 * so a new route cannot be added without saying who may use it.
 *
 * How each visitor asks:
 *  - none:    no cookies at all (a form token from the login page, so that a
 *             POST is refused for the session and not only for CSRF);
 *  - analyst, admin: logged in, with a CSRF token of their own session;
 *  - portal:  customer A's portal link, cookie and form token;
 *  - other:   customer B's. GETs use B's own link (and must show only B's
 *             evidence); state changes aim at customer A (A's link, B's
 *             cookie and form token) and must be refused.
 * Console visitors use a well-formed portal token no incident has. State
 * changes on the console aim at ids that do not exist: an allowed visitor
 * gets past the session, role and CSRF checks to a 404/409, with nothing
 * changed; the portal attestation is the one state change made for real,
 * last. Logout runs last of each visitor's requests.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { parseConfig } from '../../src/config/load.ts';
import { issuePortalToken, recordEvidence, transition, DEFAULT_SETTINGS } from '../../src/desk/incidents.ts';
import { deskRuntime } from '../../src/desk/runtime.ts';
import { deskPorts } from '../../src/desk/wiring.ts';
import { silentLogger } from '../../src/obs/log.ts';
import { openStore, type Store } from '../../src/store/store.ts';
import { buildWebApp } from '../../src/web/server.ts';
import { queuedReport } from './desk-fixtures.ts';
import { Client, csrfOf, insertMessage, withUsers } from './helpers.ts';

const IDENTITIES = ['none', 'analyst', 'admin', 'portal', 'other'] as const;
type Identity = (typeof IDENTITIES)[number];
type Row = Record<Identity, number>;

const row = (none: number, analyst: number, admin: number, portal: number, other: number): Row => ({ none, analyst, admin, portal, other });
const everyone = (status: number) => row(status, status, status, status, status);
/** A console page analysts may see: the others are sent to the login form. */
const ANALYST_PAGE = row(303, 200, 200, 303, 303);
/** A console page only admins may see. */
const ADMIN_PAGE = row(303, 403, 200, 303, 303);
/** An admin's state change on an id that does not exist: 401 without a session, 403 for an analyst. */
const adminPost = (admin: number) => row(401, 403, admin, 401, 401);

const LIST_TOKEN = 'list-token-0123456789abcdef';

/**
 * Every route, by method and path as Fastify spells it. HEAD answers as GET
 * does (Fastify adds it). `/assets/vendor/uplot/*` stands for the files of
 * uPlot's dist folder that @fastify/static registers; only two are served.
 */
const EXPECTED: Record<string, Row> = {
  'GET /healthz': everyone(200),
  'GET /metrics': everyone(200),
  'GET /assets/console.css': everyone(200),
  'GET /assets/dashboard.js': everyone(200),
  'GET /assets/vendor/uplot/uPlot.iife.min.js': everyone(200),
  'GET /assets/vendor/uplot/uPlot.min.css': everyone(200),
  'GET /assets/vendor/uplot/*': everyone(404),
  // Logged in, the login form sends you on; a wrong password is a 401 for everyone (with a valid form token).
  'GET /login': row(200, 303, 303, 200, 200),
  'POST /login': everyone(401),
  'POST /logout': row(401, 303, 303, 401, 401),
  'GET /': ANALYST_PAGE,
  'GET /api/dashboard/series': row(401, 200, 200, 401, 401),
  'GET /api/dashboard/outbreaks': row(401, 200, 200, 401, 401),
  'GET /trace': ANALYST_PAGE,
  'GET /trace/:id': ANALYST_PAGE,
  'GET /quarantine': ANALYST_PAGE,
  'GET /quarantine/:id': ANALYST_PAGE,
  'GET /quarantine/:id/confirm/:action': ADMIN_PAGE,
  // Release answers "not released" (409) for what is not held, whatever the id.
  'POST /quarantine/:id/release': adminPost(409),
  'POST /quarantine/:id/delete': adminPost(404),
  'POST /quarantine/:id/download': adminPost(404),
  'GET /outbox': ANALYST_PAGE,
  'GET /outbox/:id': row(303, 404, 404, 303, 303),
  'POST /outbox/:id/:action': adminPost(404),
  'GET /audit': ANALYST_PAGE,
  'GET /settings': ANALYST_PAGE,
  'GET /desk': ANALYST_PAGE,
  'GET /desk/attribute': ANALYST_PAGE,
  'GET /desk/incidents/:id': ANALYST_PAGE,
  'POST /desk/incidents/:id/transition': adminPost(404),
  'GET /desk/reports/:id': ANALYST_PAGE,
  'POST /desk/reports/:id/assign': adminPost(404),
  'POST /desk/reports/:id/dismiss': adminPost(404),
  // The public report form: anyone; an empty report is a 400 with the form's sentences.
  'GET /report': everyone(200),
  'POST /report': everyone(400),
  // The portal: the link is the credential. Console users hold none (404).
  'GET /portal/:token': row(404, 404, 404, 200, 200),
  'POST /portal/:token/attest': row(403, 403, 403, 200, 403),
  // The restricted list: only the bearer of enforcement.listToken, which none of these visitors has.
  'GET /desk/restricted.txt': everyone(401),
};

/** Routes as registered: "METHOD /path" from Fastify's route tree (printRoutes without common prefixes). */
function registeredRoutes(app: FastifyInstance): string[] {
  const out: string[] = [];
  const stack: string[] = [];
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    const m = /^((?:[│ ] {3})*)[├└]── (.+?)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (!m) continue;
    const depth = m[1]!.length / 4;
    stack.length = depth;
    stack.push(m[2]!);
    const path = stack.join('').replace(/^\/\//, '/');
    for (const method of (m[3] ?? '').split(',').map((s) => s.trim()).filter(Boolean)) out.push(`${method} ${path}`);
  }
  return [...new Set(out)].sort();
}

function expectationFor(route: string): Row | undefined {
  const [method, path] = route.split(' ') as [string, string];
  const key = `${method === 'HEAD' ? 'GET' : method} ${path}`;
  const found = EXPECTED[key] ?? (key.startsWith('GET /assets/vendor/uplot/') ? EXPECTED['GET /assets/vendor/uplot/*'] : undefined);
  // HEAD is no page visit: without a session it is a 401, not a redirect to the login form.
  if (found && method === 'HEAD' && !path.startsWith('/login')) return Object.fromEntries(IDENTITIES.map((who) => [who, found[who] === 303 ? 401 : found[who]])) as Row;
  return found;
}

const NO_SUCH = '00000000-0000-4000-8000-000000000000';
const UNKNOWN_TOKEN = 'A'.repeat(43);

let store: Store;
let web: FastifyInstance;
const ids = { message: '', quarantine: '', incidentA: '', report: '' };
const tokens = { A: '', B: '' };
const visitors = {} as Record<Identity, { client: Client; consoleCsrf: string; reportCsrf: string; portalCsrf: string; token: string }>;

async function restrictedIncident(customerId: string, marker: string): Promise<string> {
  const db = store.db;
  await db.insertInto('customers').values({ id: customerId, name: `Customer ${marker}`, email: `${customerId}@customer.example`, language: 'en', time_zone: 'UTC' }).execute();
  const noticeAt = new Date(Date.now() - 96 * 3_600_000);
  const { incidentId } = await recordEvidence(db, { customerId, source: 'arf', ip: '198.51.100.3', observedAt: new Date(noticeAt.getTime() - 60_000), summary: `evidence ${marker}`, malware: [] }, noticeAt);
  assert.equal((await transition(db, incidentId, 'notice-sent', 'system', noticeAt)).ok, true);
  assert.equal((await transition(db, incidentId, 'grace-expired', 'timer', new Date(noticeAt.getTime() + DEFAULT_SETTINGS.graceMs + 60_000))).ok, true);
  return incidentId;
}

before(async () => {
  store = await openStore('pglite-memory:');
  await withUsers(store);
  const config = parseConfig({
    store: 'pglite-memory:',
    nextHop: 'smtp://127.0.0.1:1',
    domains: ['example.net'],
    desk: { abuseDomain: 'abuse.isp.example', portal: { baseUrl: 'https://portal.isp.example', maxGuesses: 1000 }, enforcement: { listToken: LIST_TOKEN } },
  });
  const runtime = deskRuntime(config, store.db, silentLogger)!;
  web = buildWebApp({ store, logger: silentLogger, nodeName: 'test-node', config, publicForm: { ports: deskPorts({}), settings: { maxPerWindow: 1000, answerFloorMs: 0 } }, routes: [runtime.web] });
  await web.ready();

  const m = await insertMessage(store, { verdict: 'infected', detail: 'Worm.Mydoom.A', quarantine: Buffer.from('Subject: hi\r\n\r\nbody\r\n') });
  ids.message = m.id;
  ids.quarantine = m.quarantineId!;
  ids.incidentA = await restrictedIncident('c-a', 'MARK-A');
  const incidentB = await restrictedIncident('c-b', 'MARK-B');
  tokens.A = await issuePortalToken(store.db, ids.incidentA, new Date(), 86_400_000);
  tokens.B = await issuePortalToken(store.db, incidentB, new Date(), 86_400_000);
  ids.report = await queuedReport(store);

  let n = 0;
  for (const who of IDENTITIES) {
    // Each visitor from its own address: the login throttle counts per address.
    const client = new Client(web, `192.0.2.${++n}`);
    if (who === 'analyst' || who === 'admin') {
      const res = await client.login(who === 'admin' ? 'admin' : 'ana');
      assert.equal(res.statusCode, 303, `login as ${who}`);
    }
    const consolePage = await client.get(who === 'analyst' || who === 'admin' ? '/' : '/login');
    const reportPage = await client.get('/report');
    const token = who === 'portal' ? tokens.A : who === 'other' ? tokens.B : UNKNOWN_TOKEN;
    let portalCsrf = '';
    if (who === 'portal' || who === 'other') {
      const page = await client.get(`/portal/${token}`);
      assert.equal(page.statusCode, 200);
      portalCsrf = /name="csrf" value="([^"]+)"/.exec(page.body)![1]!;
    }
    visitors[who] = { client, consoleCsrf: csrfOf(consolePage.body), reportCsrf: csrfOf(reportPage.body), portalCsrf, token };
  }
});
after(async () => {
  await web.close();
  await store.close();
});

/** The URL a visitor asks for a route, and the form it posts. */
function request(route: string, who: Identity): { method: string; url: string; form: Record<string, string> | null } {
  const [method, template] = route.split(' ') as [string, string];
  const v = visitors[who];
  const post = method === 'POST';
  const target = template.replace(/\*$/, 'uPlot.cjs.js');
  let url = target
    .replace(':token', post ? tokens.A : v.token)
    .replace(':action', template.startsWith('/outbox') ? 'retry' : 'release')
    .replace(':id', () => {
      if (post) return NO_SUCH;
      if (template.startsWith('/trace')) return ids.message;
      if (template.startsWith('/quarantine')) return ids.quarantine;
      if (template.startsWith('/desk/incidents')) return ids.incidentA;
      if (template.startsWith('/desk/reports')) return ids.report;
      return NO_SUCH;
    });
  if (template === '/desk/attribute') url += '?ip=192.0.2.7';
  if (template === '/api/dashboard/series') url += '?range=hour';
  if (!post) return { method, url, form: null };
  if (template === '/report') return { method, url, form: { _csrf: v.reportCsrf } };
  if (template.startsWith('/portal/')) return { method, url, form: { csrf: v.portalCsrf, confirm: 'yes' } };
  const fields: Record<string, string> = template.endsWith('/transition') ? { event: 'close' } : template.endsWith('/assign') ? { customer: 'c-a' } : template.endsWith('/dismiss') ? { reason: 'not ours' } : template === '/login' ? { name: `nobody-${who}`, password: 'not the password' } : {};
  return { method, url, form: { _csrf: v.consoleCsrf, ...fields } };
}

async function send(route: string, who: Identity): Promise<LightMyRequestResponse> {
  const { method, url, form } = request(route, who);
  const c = visitors[who].client;
  if (method === 'POST') return c.post(url, form ?? {});
  if (method === 'GET') return c.get(url);
  return web.inject({ method: method as 'HEAD', url, cookies: c.cookies, remoteAddress: c.ip });
}

/** Reads first, state changes after; of those, logout and the portal attestation last (each ends what later requests need). */
const order = (route: string) => (route.startsWith('GET') || route.startsWith('HEAD') ? 0 : route === 'POST /logout' ? 2 : route === 'POST /portal/:token/attest' ? 3 : 1);

test('every registered route has a row in the authorisation matrix (a new route must say who may use it)', () => {
  const routes = registeredRoutes(web);
  assert.ok(routes.length >= 40, `the route tree was read: ${routes.length} routes`);
  for (const known of ['GET /healthz', 'POST /portal/:token/attest', 'GET /desk/restricted.txt', 'POST /report', 'POST /quarantine/:id/release']) assert.ok(routes.includes(known), known);
  const missing = routes.filter((r) => !expectationFor(r));
  assert.deepEqual(missing, [], 'routes without an expected status per visitor in EXPECTED');
  const stale = Object.keys(EXPECTED).filter((k) => !k.endsWith('*') && !routes.includes(k));
  assert.deepEqual(stale, [], 'rows in EXPECTED for routes that no longer exist');
});

test('the check finds a route added without a row: one more role wiring a route fails the test above', async () => {
  const extended = buildWebApp({ store, logger: silentLogger, nodeName: 'test-node', routes: [async (app) => void app.get('/added-tomorrow', async () => 'hello')] });
  await extended.ready();
  try {
    assert.deepEqual(registeredRoutes(extended).filter((r) => !expectationFor(r)), ['GET /added-tomorrow', 'HEAD /added-tomorrow']);
  } finally {
    await extended.close();
  }
});

test('authorisation matrix: every route × {no session, analyst, admin, portal token, other customer\'s token}', async (t) => {
  const routes = registeredRoutes(web).sort((a, b) => order(a) - order(b));
  const wrong: string[] = [];
  const cells: string[] = [];
  for (const route of routes) {
    const expected = expectationFor(route);
    if (!expected) continue; // the test above names it
    const identities = order(route) === 3 ? (['none', 'analyst', 'admin', 'other', 'portal'] as const) : IDENTITIES;
    const line: string[] = [];
    for (const who of identities) {
      const res = await send(route, who);
      line.push(`${who}=${res.statusCode}`);
      if (res.statusCode !== expected[who]) wrong.push(`${route} as ${who}: ${res.statusCode}, expected ${expected[who]}`);
      // A 303 for a console page without a session goes to the login form, nowhere else.
      if (res.statusCode === 303 && expected[who] === 303 && !route.includes('login') && !route.includes('logout')) assert.match(String(res.headers.location), /^\/login\?next=/, `${route} as ${who}`);
      if (route === 'GET /portal/:token' && res.statusCode === 200) {
        const [mine, theirs] = who === 'portal' ? ['MARK-A', 'MARK-B'] : ['MARK-B', 'MARK-A'];
        assert.match(res.body, new RegExp(mine), `${who} sees its own incident`);
        assert.doesNotMatch(res.body, new RegExp(theirs), `${who} never sees the other customer's evidence`);
      }
    }
    cells.push(`${route}: ${line.join(' ')}`);
  }
  t.diagnostic(`${cells.length} routes × ${IDENTITIES.length} visitors`);
  assert.deepEqual(wrong, [], `cells with another status than expected:\n${cells.join('\n')}`);
});

test('the cells the matrix cannot show: the list token opens the restricted list; the attestation released customer A only', async () => {
  const list = await web.inject({ method: 'GET', url: '/desk/restricted.txt', headers: { authorization: `Bearer ${LIST_TOKEN}` } });
  assert.equal(list.statusCode, 200);
  const a = await store.db.selectFrom('incidents').select(['customer_id', 'state']).orderBy('customer_id').execute();
  assert.deepEqual(a.map((r) => `${r.customer_id}:${r.state}`), ['c-a:probation', 'c-b:restricted']);
});
