/*
 * web/server — Backstop's HTTP side: health and metrics for machines, and the
 * console for people (the customer portal and report form join as those
 * roles land, outside the console's session).
 *
 * Secure by default: every console route needs a session (signed, HttpOnly,
 * SameSite=Strict cookie; state in the store), declares the role it needs
 * (admin unless it says otherwise), and every state-changing request carries
 * a CSRF token. Headers on every response: a Content-Security-Policy that
 * allows only our own scripts and styles (no inline script), frame-ancestors
 * 'none' and X-Frame-Options DENY, Referrer-Policy no-referrer.
 * Public: /healthz, /metrics, /login, /assets/*.
 *
 * Trusts nothing in a request. One error handler: 4xx say what was wrong,
 * 5xx say nothing about internals (the detail goes to the log with the
 * request id, which the page shows so an operator can find it).
 */
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import fastifyCookie from '@fastify/cookie';
import fastifyFormbody from '@fastify/formbody';
import fastifyHelmet from '@fastify/helmet';
import fastifyStatic from '@fastify/static';
import { sql } from 'kysely';
import { registry } from '../obs/metrics.ts';
import { version } from '../version.ts';
import { sharedSecret, SESSION_DEFAULTS } from './auth/sessions.ts';
import { THROTTLE_DEFAULTS } from './auth/throttle.ts';
import { registerConsole } from './console.ts';
import { sendErrorPage } from './layout.ts';
import type { WebDeps } from './deps.ts';
import { PUBLIC_FORM_DEFAULTS, registerPublicForm } from './public-form.ts';

const ASSETS = fileURLToPath(new URL('./assets/', import.meta.url));
// Resolved like an import, so it is found wherever npm put the package.
const UPLOT = dirname(createRequire(import.meta.url).resolve('uplot/dist/uPlot.iife.min.js'));

/** Routes answered as JSON (machines); everything else is a page for people. */
const isMachineRoute = (url: string) => url === '/healthz' || url === '/metrics' || url.startsWith('/api/');

export function buildWebApp(deps: WebDeps): FastifyInstance {
  // Health checks and metric scrapes arrive every few seconds; per-request lines would drown the log.
  const app = Fastify({
    loggerInstance: deps.logger.child({ role: 'web' }) as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: (request) => request.url === '/healthz' || request.url === '/metrics' || request.url.startsWith('/assets/') }),
    bodyLimit: 1_048_576,
    trustProxy: deps.console?.trustProxy ?? false,
  });

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string; validation?: unknown }, request, reply) => {
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
    let message = err.message;
    if (status >= 500) {
      request.log.error({ err }, 'request failed');
      message = 'internal error';
    } else if (err.code === 'FST_CSRF_MISSING_SECRET' || err.code === 'FST_CSRF_INVALID_TOKEN') {
      message = 'This form has expired or did not come from this console. Go back, reload the page and try again.';
    } else if (err.validation) {
      message = `Bad request: ${err.message.slice(0, 300)}`;
    }
    if (isMachineRoute(request.url)) return reply.status(status).send({ error: message });
    return sendErrorPage(reply, status, status >= 500 ? `Something went wrong on this node. The detail is in its log under request id ${request.id}.` : message, deps.nodeName);
  });
  app.setNotFoundHandler((request, reply) => {
    if (isMachineRoute(request.url) || request.method !== 'GET') return reply.status(404).send({ error: 'not found' });
    return sendErrorPage(reply, 404, 'There is no such page.', deps.nodeName);
  });

  void app.register(fastifyHelmet, {
    // Everything the console loads is ours and same-origin; nothing inline, nothing framed, nothing leaked in a Referer.
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        'default-src': ["'none'"],
        'script-src': ["'self'"],
        'style-src': ["'self'"],
        'img-src': ["'self'", 'data:'],
        'font-src': ["'self'"],
        'connect-src': ["'self'"],
        'form-action': ["'self'"],
        'frame-ancestors': ["'none'"],
        'base-uri': ["'none'"],
      },
    },
    frameguard: { action: 'deny' },
    referrerPolicy: { policy: 'no-referrer' },
    // HSTS only where we know the console is served over TLS: on plain HTTP it would be ignored at best.
    strictTransportSecurity: deps.console?.secureCookies ? { maxAge: 15_552_000, includeSubDomains: false } : false,
    crossOriginEmbedderPolicy: false,
  });
  void app.register(fastifyFormbody, { bodyLimit: 65_536 });

  app.get('/healthz', { schema: { querystring: { type: 'object', additionalProperties: false, properties: {} } } }, async (_request, reply) => {
    const results: Record<string, string> = {};
    let healthy = true;
    const checks: Record<string, () => Promise<void>> = {
      store: async () => {
        await sql`select 1`.execute(deps.store.db);
      },
      ...deps.checks,
    };
    for (const [name, check] of Object.entries(checks)) {
      try {
        await check();
        results[name] = 'ok';
      } catch (err) {
        healthy = false;
        results[name] = 'failing';
        deps.logger.warn({ check: name, err: (err as Error).message }, 'health check failed');
      }
    }
    return reply.status(healthy ? 200 : 503).send({ status: healthy ? 'ok' : 'failing', node: deps.nodeName, version, checks: results });
  });

  app.get('/metrics', { schema: { querystring: { type: 'object', additionalProperties: false, properties: {} } } }, async (_request, reply) => {
    reply.header('content-type', registry.contentType);
    return deps.metrics ? deps.metrics() : registry.metrics();
  });

  // Static files: our own stylesheet and scripts, and uPlot from node_modules (never a CDN). No directory listings, no dotfiles.
  void app.register(async (assets) => {
    await assets.register(fastifyStatic, { root: ASSETS, prefix: '/assets/', index: false, list: false, dotfiles: 'deny', maxAge: '1h', wildcard: false });
    await assets.register(fastifyStatic, {
      root: UPLOT,
      prefix: '/assets/vendor/uplot/',
      decorateReply: false,
      index: false,
      dotfiles: 'deny',
      wildcard: false,
      allowedPath: (path) => path === '/uPlot.iife.min.js' || path === '/uPlot.min.css',
      maxAge: '1d',
    });
  });

  // The console: cookie signing with the key every node shares, then login and the pages.
  void app.register(async (consoleScope) => {
    const key = await sharedSecret(deps.store.db, 'cookie-signing-key');
    await consoleScope.register(fastifyCookie, { secret: key, hook: 'onRequest' });
    await registerConsole(consoleScope, deps, {
      key,
      session: { ...SESSION_DEFAULTS, ...deps.console?.session },
      throttle: { ...THROTTLE_DEFAULTS, ...deps.console?.loginThrottle },
    });
  });

  // The abuse desk's public report form: its own scope, outside the console's session and hooks.
  const publicForm = deps.publicForm;
  if (publicForm) {
    void app.register(async (formScope) => {
      const key = await sharedSecret(deps.store.db, 'cookie-signing-key');
      await formScope.register(fastifyCookie, { secret: key, hook: 'onRequest' });
      await registerPublicForm(formScope, {
        db: deps.store.db,
        ports: publicForm.ports,
        settings: { ...PUBLIC_FORM_DEFAULTS, ...publicForm.settings },
        key,
        nodeName: deps.nodeName,
        secure: (request) => deps.console?.secureCookies ?? request.protocol === 'https',
      });
    });
  }

  for (const routes of deps.routes ?? []) void app.register(async (scope) => routes(scope));

  return app;
}

