/*
 * web/console — the authenticated half of the web side: login and logout,
 * the session check in front of every page, the role check, CSRF on every
 * state-changing request, and the registration of the pages (pages/index.ts
 * plus any given in WebDeps.pages).
 *
 * Defaults are the safe way round: a route is admin-only unless it declares
 * `config: { role: 'analyst' }`; a route is private unless it declares
 * `config: { public: true }` (only /login does); a POST without a valid token
 * is a 403 whatever the route; a route registered without a schema for its
 * params, query and body stops start-up.
 *
 * Trusts: the session row in the store (re-read on every request, so a
 * disabled user or a new password ends sessions at once on every node).
 * Must never: tell a visitor whether a user name exists (same answer and,
 * through dummyHash, same time for both), check a password while its user or
 * address is throttled, or redirect to another origin after login.
 */
import { createHmac } from 'node:crypto';
import fastifyCsrf from '@fastify/csrf-protection';
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify';
import { audit } from '../store/audit.ts';
import { dummyHash, MAX_PASSWORD_LENGTH, verifyPassword } from './auth/passwords.ts';
import { createSession, endSession, loadSession, type Session, type SessionSettings } from './auth/sessions.ts';
import { clearFailures, ipKey, recordFailure, throttledFor, userKey, type ThrottleSettings } from './auth/throttle.ts';
import { countUsers, credentialsOf, type Role } from './auth/users.ts';
import { html, type SafeHtml } from './html.ts';
import { frame, sendErrorPage } from './layout.ts';
import { PAGES } from './pages/index.ts';
import { roleAtLeast, type ConsoleContext, type ConsolePage } from './pages/registry.ts';
import type { WebDeps } from './deps.ts';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Reachable without a session (the login form only). */
    public?: boolean;
    /** The least role that may use the route; admin when absent. */
    role?: Role;
  }
  interface FastifyRequest {
    /** The logged-in user, or null. Set for every request in the console. */
    auth: Session | null;
  }
}

export const SESSION_COOKIE = 'bs_session';
const CSRF_COOKIE = 'bs_csrf';

export interface ConsoleOptions {
  /** The shared signing key (from the store). */
  key: string;
  session: SessionSettings;
  throttle: ThrottleSettings;
}

const NEXT = /^\/(?![/\\])[A-Za-z0-9/_.~%?=&:+-]{0,500}$/;
/** Only a path on this console, never "//evil.example" or a scheme. */
export function safeNext(next: string | undefined): string {
  return next && NEXT.test(next) && !next.startsWith('/login') && !next.startsWith('/logout') ? next : '/';
}

export async function registerConsole(scope: FastifyInstance, deps: WebDeps, options: ConsoleOptions): Promise<void> {
  const db = deps.store.db;
  const secure = (request: FastifyRequest) => deps.console?.secureCookies ?? request.protocol === 'https';

  await scope.register(fastifyCsrf, {
    sessionPlugin: '@fastify/cookie',
    cookieKey: CSRF_COOKIE,
    cookieOpts: { path: '/', sameSite: 'strict', httpOnly: true, signed: true },
    // Tokens are bound to the session they were made for: one stolen from a login page is useless after login.
    csrfOpts: { hmacKey: createHmac('sha256', options.key).update('csrf').digest(), userInfo: true, validity: options.session.maxAgeMs },
    getUserInfo: (request) => request.auth?.idHash ?? 'no-session',
    getToken: (request) => (request.body as { _csrf?: unknown } | undefined)?._csrf as string | undefined,
  });

  // Every console route states what it accepts; a route without a schema would accept anything.
  scope.addHook('onRoute', (route: RouteOptions) => {
    const schema = route.schema ?? {};
    const methods = ([] as string[]).concat(route.method);
    const missing: string[] = [];
    if (route.url.includes(':') && !schema.params) missing.push('params');
    if (!schema.querystring) missing.push('querystring');
    if (methods.some((m) => m !== 'GET' && m !== 'HEAD') && !schema.body) missing.push('body');
    if (missing.length) throw new Error(`console route ${methods.join(',')} ${route.url} has no schema for ${missing.join(', ')}`);
  });

  scope.decorateRequest('auth', null);

  scope.addHook('onRequest', async (request, reply) => {
    request.auth = null;
    const raw = request.cookies[SESSION_COOKIE];
    if (raw) {
      const unsigned = request.unsignCookie(raw);
      if (unsigned.valid && unsigned.value) request.auth = (await loadSession(db, unsigned.value, options.session)) ?? null;
    }
    const config = request.routeOptions.config;
    if (config.public) return;
    if (!request.auth) {
      if (request.method === 'GET' && !request.url.startsWith('/api/')) return reply.redirect(`/login?next=${encodeURIComponent(request.url)}`, 303);
      if (request.url.startsWith('/api/')) return reply.status(401).send({ error: 'log in first' });
      return sendErrorPage(reply.status(401), 401, 'Your session has ended. Log in again.', deps.nodeName);
    }
    if (!roleAtLeast(request.auth.role, config.role ?? 'admin')) {
      request.log.warn({ user: request.auth.user, url: request.url.slice(0, 200) }, 'role refused');
      if (request.url.startsWith('/api/')) return reply.status(403).send({ error: 'not allowed for your role' });
      // Inside the console's frame: the user keeps the navigation and the logout button.
      const body = html`<section class="panel narrow"><h1>Not allowed</h1><p>This needs the ${config.role ?? 'admin'} role; you are logged in as ${request.auth.role}.</p><p><a href="/">Back to the dashboard</a></p></section>`;
      return ctx.render(request, reply, { title: 'Not allowed', status: 403, body });
    }
  });

  // After the body is parsed (the token is a form field) and before validation: a form without a token is a 403, not a 400.
  scope.addHook('preValidation', (request, reply, done) => {
    if (request.method === 'GET' || request.method === 'HEAD') return done();
    scope.csrfProtection(request, reply, done);
  });

  // Console pages show mail data and who did what: no cache should keep them.
  scope.addHook('onSend', async (_request, reply, payload) => {
    reply.header('cache-control', 'no-store');
    return payload;
  });

  const pages: ConsolePage[] = [...(await Promise.all(PAGES.map(async (load) => (await load()).page))), ...(deps.pages ?? [])];

  const csrfField = (request: FastifyRequest, reply: FastifyReply): SafeHtml => {
    const token = reply.generateCsrf({ userInfo: request.auth?.idHash ?? 'no-session', secure: secure(request) } as Parameters<FastifyReply['generateCsrf']>[0]);
    return html`<input type="hidden" name="_csrf" value="${token}">`;
  };

  const ctx: ConsoleContext = {
    deps,
    db,
    csrfField,
    render(request, reply, view) {
      const auth = request.auth;
      const page = frame({
        title: view.title,
        body: view.body,
        nodeName: deps.nodeName,
        user: auth ? { name: auth.user, role: auth.role, csrf: csrfField(request, reply) } : undefined,
        pages,
        slot: view.slot,
        scripts: view.scripts,
      });
      return reply.status(view.status ?? 200).type('text/html; charset=utf-8').send(page);
    },
    actor: (request) => `web:${request.auth?.user ?? 'anonymous'}`,
    audit: (request, action, target, detail = {}) => audit(db, `web:${request.auth?.user ?? 'anonymous'}`, action, target, { ...detail, ip: request.ip }),
    can: (request, role) => roleAtLeast(request.auth?.role, role),
  };

  registerLogin(scope, ctx, options, secure);
  for (const page of pages) await page.routes(scope, ctx);
}

const loginBody = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'password', '_csrf'],
  properties: {
    name: { type: 'string', maxLength: 128 },
    password: { type: 'string', maxLength: MAX_PASSWORD_LENGTH },
    _csrf: { type: 'string', maxLength: 300 },
    next: { type: 'string', maxLength: 600 },
  },
} as const;

function registerLogin(scope: FastifyInstance, ctx: ConsoleContext, options: ConsoleOptions, secure: (r: FastifyRequest) => boolean): void {
  const db = ctx.db;

  const loginPage = async (request: FastifyRequest, reply: FastifyReply, status: number, problem: string | null, next: string) => {
    const noUsers = (await countUsers(db)) === 0;
    const body = html`<section class="panel login">
  <h1>Log in</h1>
  ${problem ? html`<p class="problem" role="alert">${problem}</p>` : ''}
  ${noUsers ? html`<p class="hint">No console users exist yet. On this machine run <code>backstop user add NAME --admin</code> and type the password on standard input.</p>` : ''}
  <form method="post" action="/login">
    ${ctx.csrfField(request, reply)}
    <input type="hidden" name="next" value="${next}">
    <label>User <input name="name" autocomplete="username" required maxlength="64" autofocus></label>
    <label>Password <input name="password" type="password" autocomplete="current-password" required maxlength="${MAX_PASSWORD_LENGTH}"></label>
    <button type="submit">Log in</button>
  </form>
</section>`;
    return reply.status(status).type('text/html; charset=utf-8').send(frame({ title: 'Log in', body, nodeName: ctx.deps.nodeName }));
  };

  scope.get(
    '/login',
    {
      config: { public: true },
      schema: { querystring: { type: 'object', additionalProperties: false, properties: { next: { type: 'string', maxLength: 600 } } } },
    },
    async (request, reply) => {
      const { next } = request.query as { next?: string };
      if (request.auth) return reply.redirect(safeNext(next), 303);
      return loginPage(request, reply, 200, null, safeNext(next));
    },
  );

  scope.post('/login', { config: { public: true }, schema: { querystring: { type: 'object', additionalProperties: false, properties: {} }, body: loginBody } }, async (request, reply) => {
    const { name, password, next } = request.body as { name: string; password: string; next?: string };
    const target = safeNext(next);
    const keys = [userKey(name), ipKey(request.ip)];
    const wait = await throttledFor(
      db,
      [
        { key: keys[0]!, limit: options.throttle.perUser },
        { key: keys[1]!, limit: options.throttle.perIp },
      ],
      options.throttle,
    );
    if (wait > 0) {
      request.log.warn({ ip: request.ip }, 'login throttled');
      reply.header('retry-after', String(wait));
      return loginPage(request, reply, 429, `Too many failed logins. Try again in ${Math.ceil(wait / 60)} minute${wait > 60 ? 's' : ''}.`, target);
    }
    const creds = await credentialsOf(db, name);
    // Verify against a throwaway hash for unknown users: the same work, the same answer.
    const ok = (await verifyPassword(password, creds?.hash ?? (await dummyHash()))) && creds !== undefined;
    if (!ok || !creds) {
      await recordFailure(db, keys, options.throttle);
      request.log.info({ ip: request.ip }, 'login failed');
      return loginPage(request, reply, 401, 'Wrong user name or password.', target);
    }
    await clearFailures(db, keys[0]!);
    // A new id at every login (no session fixation); an older session of this browser ends.
    const old = request.cookies[SESSION_COOKIE];
    if (old) {
      const unsigned = request.unsignCookie(old);
      if (unsigned.valid && unsigned.value) await endSession(db, unsigned.value);
    }
    const id = await createSession(db, creds.name, request.ip, options.session);
    reply.setCookie(SESSION_COOKIE, id, {
      path: '/',
      httpOnly: true,
      sameSite: 'strict',
      secure: secure(request),
      signed: true,
      maxAge: Math.floor(options.session.maxAgeMs / 1000),
    });
    await audit(db, `web:${creds.name}`, 'login', creds.name, { ip: request.ip });
    return reply.redirect(target, 303);
  });

  scope.post(
    '/logout',
    {
      config: { role: 'analyst' },
      schema: {
        querystring: { type: 'object', additionalProperties: false, properties: {} },
        body: { type: 'object', additionalProperties: false, required: ['_csrf'], properties: { _csrf: { type: 'string', maxLength: 300 } } },
      },
    },
    async (request, reply) => {
      const raw = request.cookies[SESSION_COOKIE];
      const unsigned = raw ? request.unsignCookie(raw) : null;
      if (unsigned?.valid && unsigned.value) await endSession(db, unsigned.value);
      reply.clearCookie(SESSION_COOKIE, { path: '/' });
      return reply.redirect('/login', 303);
    },
  );
}
