/*
 * web/public-form — the abuse desk's public report form (R8), at
 * GET/POST /report, outside the console's session: anyone may report an
 * address of ours with the time (and zone) it misbehaved, the source port
 * when the address is one of our carrier-grade NAT addresses, what happened,
 * and optionally the header lines of an offending mail.
 *
 * What it must never do: confirm whether, or to whom, an address is
 * assigned. So the answer to a valid report is one fixed text whatever the
 * attribution found; the port question depends only on the CGNAT ranges in
 * the configuration, never on a lookup; and validation errors speak of the
 * input alone.
 *
 * Trusts nothing: zod validates every field, every value shown is escaped,
 * a CSRF token (cookie-bound, signed with the shared key) guards the POST,
 * every valid report is answered after the same minimum time (answerFloorMs),
 * and submissions are counted per client address and window in the store
 * (desk_form_throttle), so all nodes share the limit.
 */
import { createHmac } from 'node:crypto';
import fastifyCsrf from '@fastify/csrf-protection';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import ipaddr from 'ipaddr.js';
import { sql } from 'kysely';
import { z } from 'zod';
import { takeReport, type DeskPorts } from '../desk/intake.ts';
import { canonicalIp, headerBlockOf } from '../desk/report-parse.ts';
import { instantIn, validZone, ZONES } from '../desk/zones.ts';
import type { Db } from '../store/store.ts';
import { html, type SafeHtml } from './html.ts';
import { frame } from './layout.ts';

export interface PublicFormSettings {
  /** CIDRs of our carrier-grade NAT public addresses: a report about one needs the source port. */
  cgnatRanges: readonly string[];
  /** Valid submissions (and attempts) per client address per window. */
  maxPerWindow: number;
  windowMs: number;
  /**
   * A valid report is answered no sooner than this after it arrived, so the
   * time an attribution takes (a customer's incident is more work than an
   * unknown address) does not tell the visitor which it was.
   */
  answerFloorMs: number;
}

export const PUBLIC_FORM_DEFAULTS: PublicFormSettings = { cgnatRanges: [], maxPerWindow: 5, windowMs: 3_600_000, answerFloorMs: 750 };

export interface PublicFormDeps {
  db: Db;
  ports: DeskPorts;
  settings: PublicFormSettings;
  /** The shared signing key (cookies and CSRF). */
  key: string;
  nodeName: string;
  secure: (request: FastifyRequest) => boolean;
}

/** The one answer to every accepted report. */
export const THANKS = 'Thank you. The abuse desk has received your report and will look into it. We do not say whether or to whom an address is assigned, and we will not contact you about this report.';

const CSRF_COOKIE = 'bs_report_csrf';

const reportSchema = z
  .object({
    _csrf: z.string().max(300),
    ip: z.string().trim().min(1, 'Give the IP address.').max(45, 'That is not an IP address.').transform((v, ctx) => {
      const ip = canonicalIp(v);
      if (!ip) ctx.addIssue({ code: 'custom', message: 'That is not an IP address (IPv4 as 192.0.2.7, or IPv6).' });
      return ip ?? '';
    }),
    date: z.string().regex(/^\d{4}-\d{2}-\d{2}$/, 'Give the date as YYYY-MM-DD.'),
    time: z.string().regex(/^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$/, 'Give the time as HH:MM or HH:MM:SS.'),
    zone: z.string().max(64).refine(validZone, 'Choose the time zone (a zone name, or an offset such as +01:00).'),
    port: z
      .string()
      .trim()
      .max(5)
      .optional()
      .transform((v, ctx) => {
        if (!v) return null;
        if (!/^\d{1,5}$/.test(v) || Number(v) < 1 || Number(v) > 65535) {
          ctx.addIssue({ code: 'custom', message: 'The port is a number from 1 to 65535.' });
          return null;
        }
        return Number(v);
      }),
    what: z.string().trim().min(10, 'Say in a few words what happened.').max(2000, 'Keep the description under 2000 characters.'),
    headers: z.string().max(32_768, 'Paste at most 32 kB of header lines.').optional(),
  })
  .strict();

type ReportForm = z.infer<typeof reportSchema>;

export function inCgnat(ip: string, ranges: readonly string[]): boolean {
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    addr = ipaddr.parse(ip);
  } catch {
    return false;
  }
  return ranges.some((cidr) => {
    try {
      const [net, bits] = ipaddr.parseCIDR(cidr);
      return net.kind() === addr.kind() && addr.match([net, bits] as [typeof addr, number]);
    } catch {
      return false;
    }
  });
}

/** Counts one submission for `client` in the current window; true when it is over the limit. Shared by all nodes. */
export async function overLimit(db: Db, client: string, settings: PublicFormSettings, now = new Date()): Promise<boolean> {
  const windowStart = new Date(Math.floor(now.getTime() / settings.windowMs) * settings.windowMs);
  const row = await db
    .insertInto('desk_form_throttle')
    .values({ client, window_start: windowStart, hits: 1 })
    .onConflict((oc) => oc.columns(['client', 'window_start']).doUpdateSet({ hits: sql`desk_form_throttle.hits + 1` }))
    .returning('hits')
    .executeTakeFirstOrThrow();
  // Old windows go now and then; nothing depends on it.
  if (Math.random() < 0.01) await db.deleteFrom('desk_form_throttle').where('window_start', '<', new Date(windowStart.getTime() - settings.windowMs)).execute();
  return row.hits > settings.maxPerWindow;
}

export async function registerPublicForm(scope: FastifyInstance, deps: PublicFormDeps): Promise<void> {
  await scope.register(fastifyCsrf, {
    sessionPlugin: '@fastify/cookie',
    cookieKey: CSRF_COOKIE,
    cookieOpts: { path: '/report', sameSite: 'strict', httpOnly: true, signed: true },
    csrfOpts: { hmacKey: createHmac('sha256', deps.key).update('report-csrf').digest(), validity: 2 * 3_600_000 },
    getToken: (request) => (request.body as { _csrf?: unknown } | undefined)?._csrf as string | undefined,
  });

  const page = (reply: FastifyReply, status: number, body: SafeHtml) =>
    reply.status(status).header('cache-control', 'no-store').type('text/html; charset=utf-8').send(frame({ title: 'Report abuse', body, nodeName: deps.nodeName }));

  const form = (request: FastifyRequest, reply: FastifyReply, values: Partial<Record<string, string>>, errors: string[], askPort: boolean): SafeHtml => {
    const token = reply.generateCsrf({ secure: deps.secure(request) } as Parameters<FastifyReply['generateCsrf']>[0]);
    const v = (k: string) => values[k] ?? '';
    const zone = values.zone ?? 'UTC';
    return html`<section class="panel narrow">
<h1>Report abuse from our network</h1>
<p>Tell us which of our addresses misbehaved and when. We pass reports on to the responsible customer without naming you.</p>
${errors.length ? html`<div class="error" role="alert"><ul>${errors.map((e) => html`<li>${e}</li>`)}</ul></div>` : ''}
<form method="post" action="/report">
<input type="hidden" name="_csrf" value="${token}">
<label>IP address <input name="ip" required maxlength="45" value="${v('ip')}"></label>
<label>Date <input name="date" type="date" required value="${v('date')}"></label>
<label>Time <input name="time" type="time" step="1" required value="${v('time')}"></label>
<label>Time zone <input name="zone" list="zones" required maxlength="64" value="${zone}"> <small>a zone name such as Europe/Berlin, or an offset such as +01:00</small></label>
<datalist id="zones">${ZONES.map((z) => html`<option value="${z}">`)}</datalist>
${askPort
  ? html`<p class="note" role="status">This address is shared by many customers. Please give the source port of the connection.</p>
<label>Source port <input name="port" inputmode="numeric" maxlength="5" required value="${v('port')}"></label>`
  : html`<label>Source port (if you know it) <input name="port" inputmode="numeric" maxlength="5" value="${v('port')}"></label>`}
<label>What happened <textarea name="what" required maxlength="2000" rows="5">${v('what')}</textarea></label>
<label>Header lines of an offending mail (optional, no message text) <textarea name="headers" maxlength="32768" rows="8">${v('headers')}</textarea></label>
<button type="submit">Send report</button>
</form>
</section>`;
  };

  const bodyJson = {
    type: 'object',
    additionalProperties: false,
    properties: Object.fromEntries(['_csrf', 'ip', 'date', 'time', 'zone', 'port', 'what', 'headers'].map((k) => [k, { type: 'string', maxLength: 40_000 }])),
  };

  scope.get('/report', { schema: { querystring: { type: 'object', additionalProperties: false, properties: {} } } }, async (request, reply) =>
    page(reply, 200, form(request, reply, {}, [], false)),
  );

  scope.post(
    '/report',
    {
      bodyLimit: 65_536,
      schema: { querystring: { type: 'object', additionalProperties: false, properties: {} }, body: bodyJson },
      // The token is checked before anything else, and before the throttle counts.
      preValidation: (request, reply, done) => scope.csrfProtection(request, reply, done),
    },
    async (request, reply) => {
      const client = request.ip;
      if (await overLimit(deps.db, client, deps.settings)) {
        return page(reply, 429, html`<section class="panel narrow"><h1>Too many reports</h1><p>This address has sent too many reports in a short time. Please try again later.</p></section>`);
      }
      const raw = (request.body ?? {}) as Record<string, string>;
      const parsed = reportSchema.safeParse(raw);
      const kept = Object.fromEntries(Object.entries(raw).filter(([k]) => k !== '_csrf').map(([k, val]) => [k, String(val).slice(0, 32_768)]));
      if (!parsed.success) {
        const errors = [...new Set(parsed.error.issues.map((i) => (i.code === 'custom' || /^(Give|Choose|Say|Keep|Paste|That|The port)/.test(i.message) ? i.message : `${i.path.join('.')}: invalid`)))];
        return page(reply, 400, form(request, reply, kept, errors, false));
      }
      const f: ReportForm = parsed.data;
      const at = instantIn(f.date, f.time, f.zone);
      if (!at || at.getTime() > Date.now() + 3_600_000 || at.getTime() < Date.now() - 400 * 86_400_000) {
        return page(reply, 400, form(request, reply, kept, ['Give a real date and time within the last year.'], false));
      }
      // Decided from the configuration only, never from who holds the address.
      if (inCgnat(f.ip, deps.settings.cgnatRanges) && f.port === null) {
        return page(reply, 200, form(request, reply, kept, [], true));
      }
      const started = Date.now();
      const what = f.what.replace(/[\0-\x08\x0b\x0c\x0e-\x1f\x7f]/g, '').replace(/\s+/g, ' ').trim();
      await takeReport(deps.db, deps.ports, {
        via: 'form',
        reporter: client,
        ip: f.ip,
        port: f.port,
        parsed: null,
        form: { observedAt: at, zoneless: false, summary: `Report made on the web form: ${what}`, headers: f.headers ? headerBlockOf(f.headers) : null },
      });
      const wait = started + deps.settings.answerFloorMs - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      return page(reply, 200, html`<section class="panel narrow"><h1>Report received</h1><p>${THANKS}</p></section>`);
    },
  );
}
