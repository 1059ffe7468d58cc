/*
 * web/deps — what the web side is built from (WebDeps) and the console's
 * settings. Its own module so that the server (which builds the app) and the
 * console (which registers the pages) can both name them without importing
 * each other: the server imports the console, nothing imports the server.
 * Pages see only the part declared with their contract (PageDeps, in
 * pages/registry.ts), so the page contract needs nothing from here.
 * Types only: it does and trusts nothing.
 */
import type { FastifyInstance } from 'fastify';
import type { DeskPorts } from '../desk/intake.ts';
import type { Logger } from '../obs/log.ts';
import type { SessionSettings } from './auth/sessions.ts';
import type { ThrottleSettings } from './auth/throttle.ts';
import type { ConsolePage, PageDeps } from './pages/registry.ts';
import type { PublicFormSettings } from './public-form.ts';

/** Everything the web side is built from: what pages see (PageDeps) and what only the server and console use. */
export interface WebDeps extends PageDeps {
  logger: Logger;
  /** Extra health checks (e.g. the SMTP listener); a throwing check marks the node unhealthy. */
  checks?: Record<string, () => Promise<void>>;
  /** Pages beyond pages/index.ts (a role wiring its page at start-up, tests). */
  pages?: ConsolePage[];
  console?: ConsoleSettings;
  /** The abuse desk's public report form at /report (no session); off when absent. */
  publicForm?: { ports: DeskPorts; settings?: Partial<PublicFormSettings> };
  /** Routes outside the console's session (the desk's customer portal and restricted list), each in its own scope. */
  routes?: ((app: FastifyInstance) => Promise<void>)[];
  /** What GET /metrics answers: this process's registry by default; a cluster worker's primary gathers every worker's. */
  metrics?: () => Promise<string>;
}

export interface ConsoleSettings {
  /** Mark cookies Secure. Default: when the request came over TLS (as Fastify sees it; see trustProxy). */
  secureCookies?: boolean;
  /** Believe X-Forwarded-For/-Proto from a reverse proxy (true, or the proxy's address/CIDR). Off by default. */
  trustProxy?: boolean | string;
  session?: Partial<SessionSettings>;
  loginThrottle?: Partial<ThrottleSettings>;
}
