/*
 * Fuzzing the web forms through the whole app with inject(): the public
 * report form (POST /report), the console login (POST /login) and the
 * customer portal (GET /portal/:token, POST /portal/:token/attest), as
 * `backstop serve` wires them with the desk on. Fields are absent, plausible,
 * or hostile (markup, quotes, CR/LF, NUL, bidi overrides, long and non-BMP
 * text); bodies are also raw bytes under random content types.
 *
 * Properties: no request gets a 5xx; each answer is one the route documents;
 * what a page echoes back is inert (no tag from the input survives); a
 * random name and password never log in; a random token never opens the
 * portal; each request answers in time.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import fc from 'fast-check';
import { parseConfig } from '../../src/config/load.ts';
import { deskRuntime } from '../../src/desk/runtime.ts';
import { deskPorts } from '../../src/desk/wiring.ts';
import { silentLogger } from '../../src/obs/log.ts';
import { openStore, type Store } from '../../src/store/store.ts';
import { buildWebApp } from '../../src/web/server.ts';
import { Client, csrfOf, withUsers } from '../web/helpers.ts';
import { check, Clock, params } from './fuzz.ts';

let store: Store;
let web: FastifyInstance;
let reporter: Client;
let reportCsrf = '';
let visitor: Client;
let loginCsrf = '';

before(async () => {
  store = await openStore('pglite-memory:');
  await withUsers(store);
  const config = parseConfig({ store: 'pglite-memory:', nextHop: 'smtp://127.0.0.1:1', domains: ['example.net'], desk: { abuseDomain: 'abuse.isp.example', cgnatRanges: ['100.64.0.0/10'], portal: { maxGuesses: 1_000_000 } } });
  web = buildWebApp({
    store,
    logger: silentLogger,
    nodeName: 'fuzz',
    config,
    publicForm: { ports: deskPorts({}), settings: { maxPerWindow: 1_000_000, answerFloorMs: 0, cgnatRanges: ['100.64.0.0/10'] } },
    routes: [deskRuntime(config, store.db, silentLogger)!.web],
    // The login throttle would answer 429 after a few failures: fuzzing wants the password check itself.
    console: { loginThrottle: { perUser: 1_000_000, perIp: 1_000_000 } },
  });
  await web.ready();
  reporter = new Client(web, '198.51.100.20');
  reportCsrf = csrfOf((await reporter.get('/report')).body);
  visitor = new Client(web, '198.51.100.21');
  loginCsrf = csrfOf((await visitor.get('/login')).body);
});
after(async () => {
  await web.close();
  await store.close();
});

/** Text an attacker types into a form field. */
const hostile = fc.oneof(
  fc.constantFrom('<script>alert(1)</script>', '"><svg onload=alert(1)>', "'><img src=x onerror=alert(1)>", '</textarea><b id=fz>x</b>', '\r\nSet-Cookie: x=1', '\u0000', '\u202Egpj.exe', '${7*7}{{7*7}}', "1' OR '1'='1", '../../etc/passwd', '%00%0d%0a', '\ud83d\ude00'.repeat(20)),
  fc.string({ maxLength: 200, unit: 'binary' }),
  fc.string({ minLength: 2000, maxLength: 40_000 }),
);
const field = (plausible: fc.Arbitrary<string>) => fc.option(fc.oneof(plausible, hostile), { nil: undefined });

const reportForm = fc.record({
  ip: field(fc.constantFrom('192.0.2.7', '2001:db8::7', '100.64.1.1', '::ffff:192.0.2.7', '999.1.1.1')),
  date: field(fc.constantFrom(new Date().toISOString().slice(0, 10), '2026-02-30', '1999-01-01')),
  time: field(fc.constantFrom('10:05', '23:59:59', '24:00')),
  zone: field(fc.constantFrom('UTC', 'Europe/Berlin', '+01:00', 'Mars/Olympus')),
  port: field(fc.constantFrom('4711', '0', '65536', '')),
  what: field(fc.constantFrom('My server got a worm from this address.', 'short')),
  headers: field(fc.constantFrom('Received: from pc ([192.0.2.7]) by mx.example.org\r\nSubject: hi\r\n', '')),
  extra: fc.option(fc.constantFrom('admin', 'role', '__proto__', 'constructor'), { nil: undefined }),
});

/** No tag the input carried is live in the page (the escaped text may of course be shown). */
function assertInertPage(body: string, where: string): void {
  // A live tag needs its "<"; escaped text may say "onload=alert" harmlessly.
  assert.doesNotMatch(body, /<script>alert|<svg|<img|<b id=fz>/i, `${where}: markup from the input is live`);
  for (const tag of body.match(/<script[^>]*>/g) ?? []) assert.match(tag, /^<script src="\/assets\//, `${where}: only our own scripts`);
}

test('POST /report: any form gets 200 or 400 (413 when too big), never a 5xx, in time, and echoes nothing live', async (t) => {
  const clock = new Clock(3000);
  await check(
    t,
    fc.asyncProperty(reportForm, async ({ extra, ...f }) => {
      const form: Record<string, string> = { _csrf: reportCsrf };
      for (const [k, v] of Object.entries(f)) if (v !== undefined) form[k] = v;
      if (extra) form[extra] = 'x';
      const res = await clock.async('POST /report', () => reporter.post('/report', form));
      assert.ok([200, 400, 413].includes(res.statusCode), `status ${res.statusCode}: ${res.body.slice(0, 300)}`);
      assertInertPage(res.body, 'POST /report');
    }),
    params(150),
    clock,
  );
});

const contentType = fc.constantFrom('application/x-www-form-urlencoded', 'application/json', 'multipart/form-data; boundary=x', 'text/plain', 'application/x-www-form-urlencoded; charset=utf-16', '');
const rawBody = fc.oneof(
  fc.uint8Array({ maxLength: 4096 }).map((b) => Buffer.from(b)),
  fc.string({ maxLength: 2000, unit: 'binary' }).map((s) => Buffer.from(s)),
  fc.constantFrom('{"_csrf":{"$ne":null}}', '_csrf[]=a&_csrf[]=b', 'a='.repeat(5000), '{"__proto__":{"admin":true}}', '%', '&&&===').map((s) => Buffer.from(s)),
);

test('raw bodies under any content type to every form: never a 5xx, in time', async (t) => {
  const clock = new Clock(3000);
  await check(
    t,
    fc.asyncProperty(fc.constantFrom('/report', '/login', '/logout', `/portal/${'A'.repeat(43)}/attest`, '/quarantine/00000000-0000-4000-8000-000000000000/release'), contentType, rawBody, async (url, type, payload) => {
      const c = url === '/report' ? reporter : visitor;
      const res = await clock.async(`POST ${url}`, () => web.inject({ method: 'POST', url, payload, cookies: c.cookies, remoteAddress: c.ip, headers: type ? { 'content-type': type } : {} }));
      assert.ok(res.statusCode < 500, `POST ${url} (${type}): ${res.statusCode} ${res.body.slice(0, 300)}`);
      assertInertPage(res.body, `POST ${url}`);
    }),
    params(200),
    clock,
  );
});

test('POST /login: a random name and password never log in; the answer is 400, 401 or 403, never a 5xx', async (t) => {
  const clock = new Clock(3000);
  await check(
    t,
    fc.asyncProperty(field(fc.constantFrom('admin', 'ana', 'ADMIN', 'admin ', 'root')), field(fc.constantFrom('', 'correct horse battery ', 'password')), field(fc.constantFrom('/', '//evil.example', '/desk?x=1', 'https://evil.example/')), async (name, password, next) => {
      const form: Record<string, string> = { _csrf: loginCsrf };
      if (name !== undefined) form.name = name;
      if (password !== undefined) form.password = password;
      if (next !== undefined) form.next = next;
      const res = await clock.async('POST /login', () => web.inject({ method: 'POST', url: '/login', cookies: visitor.cookies, remoteAddress: visitor.ip, headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: new URLSearchParams(form).toString() }));
      assert.ok([400, 401, 403].includes(res.statusCode), `status ${res.statusCode} for ${JSON.stringify({ name: name?.slice(0, 40), password: password?.slice(0, 40) })}: ${res.body.slice(0, 200)}`);
      assert.equal(res.cookies.find((c) => c.name === 'bs_session'), undefined, 'no session cookie');
      assertInertPage(res.body, 'POST /login');
    }),
    params(60, 0.1),
    clock,
  );
});

test('portal: a random token never opens an incident; GET and POST answer 404 (or 400), never a 5xx', async (t) => {
  const clock = new Clock(3000);
  await check(
    t,
    fc.asyncProperty(fc.oneof(fc.base64String({ minLength: 40, maxLength: 48 }), fc.string({ maxLength: 300 }), fc.constantFrom('..%2f..%2fetc', '%00', '%E2%80%AE', 'A'.repeat(43))), fc.boolean(), async (token, post) => {
      const url = `/portal/${encodeURIComponent(token)}${post ? '/attest' : ''}`;
      const res = await clock.async(url.slice(0, 40), () => web.inject({ method: post ? 'POST' : 'GET', url, headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: post ? 'csrf=x&confirm=yes' : undefined }));
      assert.ok([400, 404].includes(res.statusCode), `${url.slice(0, 80)}: ${res.statusCode}`);
      assertInertPage(res.body, 'portal');
    }),
    params(200),
    clock,
  );
});
