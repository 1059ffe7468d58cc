/*
 * desk/runtime — how `backstop serve` (and `backstop incident tick`) plug
 * the desk's incidents together when config.desk is present: the job
 * handlers (notices, grace and probation timers, enforcement publish and
 * webhook), the smarthost's gateway hooks, and the web routes (portal,
 * restricted list). Attribution comes from desk/attribute.
 */
import type { FastifyInstance } from 'fastify';
import type { Config } from '../config/schema.ts';
import type { GatewayHooks } from '../edge/gateway.ts';
import type { Logger } from '../obs/log.ts';
import { cleanText } from '../obs/clean.ts';
import { enqueue, type Job } from '../store/jobs.ts';
import { storeNow } from '../store/clock.ts';
import type { Db } from '../store/store.ts';
import { sharedSecret } from '../web/auth/sessions.ts';
import { attribute, currentAddresses } from './attribute.ts';
import { publishEnforcement, registerRestrictedList, sendWebhook } from './enforce.ts';
import { deskHandlers, ENFORCE_JOB, incidentSettings, recordEvidence } from './incidents.ts';
import { registerPortal } from './portal.ts';
import { deskDecidedHook, restrictionHook } from './smarthost.ts';

export interface DeskRuntime {
  handlers: Record<string, (payload: unknown, job: Job) => Promise<void>>;
  hooks: Pick<GatewayHooks, 'mail' | 'rcpt' | 'decided'>;
  /** Registers the portal and the restricted list on the web app. */
  web(app: FastifyInstance): Promise<void>;
  /** Queues the first enforcement publish (it re-queues itself every minute). */
  start(): Promise<void>;
}

/**
 * `clock`: a fake clock (tests, `incident tick --now`). Absent, every time the desk keeps — incidents, their
 * timers, portal links and throttles, published sets, webhook stamps — is the store's (desk/incidents).
 */
export function deskRuntime(config: Config, db: Db, logger?: Logger, clock?: () => Date): DeskRuntime | null {
  const desk = config.desk;
  if (!desk) return null;
  const settings = incidentSettings(desk);
  const webhook = desk.enforcement.webhook;
  const now = async () => clock?.() ?? (await storeNow(db));
  const handlers = deskHandlers(db, config, {
    hostname: config.smtp.hostname,
    ...(clock ? { clock } : {}),
    publish: async (now) => {
      const r = await publishEnforcement(db, { desk, currentAddresses }, now);
      if (r.changed) logger?.info({ networks: r.entries.length, digest: r.digest.slice(0, 12) }, 'desk: restricted set changed');
    },
    ...(webhook ? { webhook: async (payload: unknown) => sendWebhook(webhook, payload, await now()) } : {}),
    log: (msg, detail) => logger?.info(detail ?? {}, msg),
  });
  const restriction = restrictionHook(db, { hint: desk.portal.baseUrl, ...(clock ? { clock } : {}) });
  const evidence = deskDecidedHook(db, {
    attribute: (d, q) => attribute(d, { ip: q.ip, at: q.at, ...(q.port ? { port: q.port } : {}) }),
    recordEvidence: (d, e) => recordEvidence(d, e, clock?.(), settings),
  });
  return {
    handlers,
    hooks: {
      mail: [restriction.mail],
      rcpt: [restriction.rcpt],
      decided: [
        async (t, d) => {
          try {
            await evidence(t, d);
          } catch (err) {
            logger?.error({ err: cleanText((err as Error).message, 300), client: t.clientIp }, 'desk: could not record the gateway\'s evidence');
          }
        },
      ],
    },
    async web(app) {
      const key = await sharedSecret(db, 'portal-csrf-key');
      registerPortal(app, {
        db,
        settings,
        key,
        maxGuesses: desk.portal.maxGuesses,
        ...(clock ? { clock } : {}),
        secureCookies: desk.portal.baseUrl.startsWith('https:'),
        onRelease: async () => {
          await handlers[ENFORCE_JOB]!({ reason: 'portal release' }, {} as Job);
        },
      });
      if (desk.enforcement.listToken) registerRestrictedList(app, { db, token: desk.enforcement.listToken });
    },
    async start() {
      const at = await now();
      await enqueue(db, { kind: ENFORCE_JOB, payload: { reason: 'start' }, runAt: at, dedupeKey: `desk-enforce-refresh:start:${at.toISOString()}` });
    },
  };
}
