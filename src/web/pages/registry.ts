/*
 * web/pages/registry — how a role puts a page into the console.
 *
 * A page is a module that exports `page: ConsolePage`: where it sits in the
 * navigation (a slot), the least role that sees the link, and a function that
 * adds its routes. The console registers every page inside its authenticated
 * context, so a page's routes get, without asking, a logged-in user, the
 * role check from each route's `config.role` (admin when not declared), CSRF
 * checks on every POST/PUT/PATCH/DELETE, the security headers and the one
 * error handler. A role adds its page with one line in pages/index.ts.
 *
 * Must never: let a page register a route outside that context (pages get
 * the console's child instance, not the root app).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { SafeHtml } from '../html.ts';
import type { Role } from '../auth/users.ts';
import type { Config } from '../../config/schema.ts';
import type { ReleaseResult } from '../../edge/release.ts';
import type { Db, Store } from '../../store/store.ts';

/**
 * The navigation, in order. Slots without a page are not shown; `desk` is
 * kept for the abuse-desk role.
 */
export const NAV_SLOTS = ['dashboard', 'trace', 'quarantine', 'outbox', 'desk', 'audit', 'settings'] as const;
export type NavSlot = (typeof NAV_SLOTS)[number];

export interface ConsolePage {
  slot: NavSlot;
  /** The link text. */
  label: string;
  /** Where the link points (a GET route the page registers). */
  path: string;
  /** The least role that sees the link; each route still declares its own `config.role`. */
  role: Role;
  routes(app: FastifyInstance, ctx: ConsoleContext): void | Promise<void>;
}

export interface View {
  title: string;
  body: SafeHtml;
  /** Which navigation entry is lit; defaults to none. */
  slot?: NavSlot;
  status?: number;
  /** Scripts this page needs, as paths under /assets (the CSP allows nothing else). */
  scripts?: string[];
}

/** What a page may read of the web side's deps (web/deps.ts WebDeps extends it with what only the server uses). */
export interface PageDeps {
  store: Store;
  nodeName: string;
  /** The node's effective configuration: shown (secrets masked) on Settings, used to release through the next hop. */
  config?: Config;
  /**
   * Delivers a quarantined message to its original recipients (claim, deliver,
   * audit). Defaults to edge/release's releaseQuarantined over `config`.
   */
  releaseQuarantined?: (id: string, actor: string) => Promise<ReleaseResult>;
}

/** What the console gives every page. */
export interface ConsoleContext {
  deps: PageDeps;
  db: Db;
  /** Sends the page inside the console's layout (navigation, user, logout). */
  render(request: FastifyRequest, reply: FastifyReply, view: View): FastifyReply;
  /** A hidden `_csrf` field for a form that POSTs back to the console. */
  csrfField(request: FastifyRequest, reply: FastifyReply): SafeHtml;
  /** The audit log's name for the person behind a request: "web:NAME". */
  actor(request: FastifyRequest): string;
  /** Appends to the audit log as the request's user. */
  audit(request: FastifyRequest, action: string, target: string, detail?: Record<string, unknown>): Promise<void>;
  /** True when the request's user has at least this role. */
  can(request: FastifyRequest, role: Role): boolean;
}

const RANK: Record<Role, number> = { analyst: 1, admin: 2 };

export function roleAtLeast(have: Role | undefined, need: Role): boolean {
  return have !== undefined && RANK[have] >= RANK[need];
}
