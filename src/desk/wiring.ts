/*
 * desk/wiring — how `backstop serve` plugs the desk's intake together when
 * config.desk.abuseDomain is set: the gateway route for the per-IP aliases
 * and abuse@, the forward job handler, and the public report form, all over
 * attribution (desk/attribute) and incidents (desk/incidents).
 */
import type { Config } from '../config/schema.ts';
import type { LocalRoute } from '../edge/gateway.ts';
import type { Logger } from '../obs/log.ts';
import { cleanText } from '../obs/clean.ts';
import type { Job } from '../store/jobs.ts';
import type { Store } from '../store/store.ts';
import type { PublicFormSettings } from '../web/public-form.ts';
import { attribute, getCustomer } from './attribute.ts';
import { forwardHandlers, type ForwardPorts } from './forward.ts';
import { incidentSettings, recordEvidence } from './incidents.ts';
import { deskRoute, deskSettings, type DeskPorts } from './intake.ts';

export interface DeskIntake {
  route: LocalRoute;
  handlers: Record<string, (payload: unknown, job: Job) => Promise<void>>;
  publicForm?: { ports: DeskPorts; settings: Partial<PublicFormSettings> };
}

/** Attribution and incidents as the intake needs them. */
export function deskPorts(config: Pick<Config, 'desk'>): DeskPorts {
  const incidents = incidentSettings(config.desk);
  return {
    attribute: (db, q) => attribute(db, { ip: q.ip, at: q.at, ...(q.port ? { port: q.port } : {}), ...(q.zoneless !== undefined ? { zoneless: q.zoneless } : {}) }),
    recordEvidence: (db, e) => recordEvidence(db, e, undefined, incidents),
  };
}

export const forwardPorts: ForwardPorts = {
  async getCustomer(db, id) {
    const c = await getCustomer(db, id);
    return c && c.email ? { id: c.id, name: c.name, email: c.email, language: c.language, time_zone: c.timeZone } : null;
  },
};

export function deskIntake(config: Config, store: Store, logger: Logger): DeskIntake | null {
  const settings = deskSettings(config);
  if (!settings || !config.desk) return null;
  const ports = deskPorts(config);
  const route = deskRoute(store.db, settings, ports, {
    onError: (err) => logger.error({ err: cleanText(err.message, 300) }, 'abuse desk could not store a report: answered 451'),
  });
  const handlers = forwardHandlers(store.db, config, settings, config.smtp.hostname, forwardPorts);
  const form = config.desk.reportForm;
  return {
    route,
    handlers,
    ...(form.enabled ? { publicForm: { ports, settings: { cgnatRanges: config.desk.cgnatRanges, maxPerWindow: form.maxPerHour, windowMs: 3_600_000 } } } : {}),
  };
}
