/*
 * web/server — Backstop's HTTP side: health and metrics now, the console,
 * customer portal and report form as those roles land.
 *
 * Trusts nothing in a request. One error handler: 4xx say what was wrong,
 * 5xx say nothing about internals (the detail goes to the log).
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import type { Logger } from '../obs/log.ts';
import { registry } from '../obs/metrics.ts';
import type { Store } from '../store/store.ts';
import { version } from '../version.ts';

export interface WebDeps {
  store: Store;
  logger: Logger;
  nodeName: string;
  /** Extra health checks (e.g. the SMTP listener); a throwing check marks the node unhealthy. */
  checks?: Record<string, () => Promise<void>>;
}

export function buildWebApp(deps: WebDeps): FastifyInstance {
  // Health checks and metric scrapes arrive every few seconds; per-request lines would drown the log.
  const app = Fastify({
    loggerInstance: deps.logger.child({ role: 'web' }) as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: (request) => request.url === '/healthz' || request.url === '/metrics' }),
    bodyLimit: 1_048_576,
  });

  app.setErrorHandler((err: Error & { statusCode?: number }, request, reply) => {
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
    if (status >= 500) {
      request.log.error({ err }, 'request failed');
      return reply.status(status).send({ error: 'internal error' });
    }
    return reply.status(status).send({ error: err.message });
  });

  app.get('/healthz', async (_request, reply) => {
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

  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', registry.contentType);
    return registry.metrics();
  });

  return app;
}
