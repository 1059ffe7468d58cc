/*
 * desk/web — the abuse desk's page in the console (R8, R9): incidents by
 * state with their running timers, one incident's contact, evidence and
 * history with the desk's state changes, the attribution lookup, the queue
 * of reports nobody could be named for — each report on its own page, where
 * the desk assigns it to a customer or dismisses it — and the lease imports'
 * status.
 *
 * Reads and decides nothing of its own: incidents through desk/incidents
 * (listIncidents, getIncident, transition — the same functions as
 * `backstop incident`), the buttons from lifecycle's `next` (deskEventsFor),
 * attribution through desk/attribute (with the CLI's time parsing), the
 * queue through desk/intake and desk/queue (getReport, assignReport,
 * dismissReport — the same as `backstop desk-queue`), the imports through
 * desk/leases. A report's page suggests a customer by asking attribute()
 * again — with the report's address, time and port, or a time, zone or port
 * the agent gives — and only pre-fills the form: the agent assigns.
 *
 * Roles: an analyst reads everything here; a state change, an assignment
 * and a dismissal are admin-only (a desk release lifts a customer's
 * restriction, a close ends the file, an assignment opens an incident and
 * mails the customer — as weighty as releasing quarantined mail, which is
 * admin-only too). Each change is a POST with the console's CSRF token,
 * decided again under the row lock (`transition`, `assignReport`,
 * `dismissReport`) and audited there, in the same transaction, by web:USER
 * with the request's address; a refusal is a 409 (400 for the agent's own
 * input: an unknown customer, a missing reason) with the reason in words and
 * changes nothing.
 *
 * Trusts nothing it shows: evidence summaries, header lines, reporters and
 * customer names came from outside (a report, a worm, the ISP's CRM export).
 * Everything goes through web/html (escaped, controls and bidi overrides
 * neutralised), header lines only as inert <pre> text. No client script.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { clip, fromNow, html, preText, qs, utc, type SafeHtml } from '../web/html.ts';
import type { ConsoleContext, ConsolePage } from '../web/pages/registry.ts';
import { csrfBody, idParams, noQuery } from '../web/schemas.ts';
import { cleanText } from '../obs/clean.ts';
import { attribute, canonicalIp, getCustomer, parseTime, type Attribution } from './attribute.ts';
import { deskEventsFor, getIncident, incidentCounts, incidentSettings, listIncidents, transition, type Incident } from './incidents.ts';
import { deskQueue } from './intake.ts';
import { assignReport, dismissReport, getReport, MAX_DISMISS_REASON, type DeskReport, type QueueRefusal } from './queue.ts';
import { leaseImportStatus, type ImportStatus } from './leases.ts';
import { DESK_EVENTS, STATES, type IncidentEvent, type IncidentState } from './lifecycle.ts';
import { instantIn, validZone } from './zones.ts';

/** The newest incidents a list shows; the tabs narrow it by state. */
const LIST_LIMIT = 200;
/** The newest pieces of evidence one incident's page shows. */
const EVIDENCE_SHOWN = 100;
const QUEUE_SHOWN = 50;
const IMPORTS_SHOWN = 20;
const MAX_HEADERS_SHOWN = 64 * 1024;

const FILTERS = ['open', ...STATES, 'all'] as const;
type Filter = (typeof FILTERS)[number];

type DeskEvent = 'desk-release' | 'hold' | 'unhold' | 'close';
const EVENT_TEXT: Record<DeskEvent, { button: string; explain: string; done: string }> = {
  hold: { button: 'Evidence hold', explain: 'Freezes the incident while evidence is checked: timers do not act, the line keeps what it has.', done: 'Put on evidence hold' },
  unhold: { button: 'Unhold', explain: 'Lifts the hold: back to the state it came from, its timer started again.', done: 'Hold lifted' },
  'desk-release': { button: 'Release (desk)', explain: 'Lifts any restriction and starts probation; the customer\'s portal link stops working.', done: 'Released by the desk' },
  close: { button: 'Close', explain: 'Ends the incident (a restricted line is released); new evidence opens a new one.', done: 'Closed' },
};

const listQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { state: { type: 'string', enum: FILTERS, default: 'open' } },
} as const;
const showQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { done: { type: 'string', enum: DESK_EVENTS }, from: { type: 'string', enum: STATES } },
} as const;
const transitionBody = {
  ...csrfBody,
  required: ['_csrf', 'event'],
  properties: { ...csrfBody.properties, event: { type: 'string', enum: DESK_EVENTS }, note: { type: 'string', maxLength: 500 } },
} as const;
// Shapes only; what the values mean is zod's (lookupSchema), so a bad value gets a sentence, not a schema error.
const lookupQuery = {
  type: 'object',
  additionalProperties: false,
  properties: Object.fromEntries(['ip', 'at', 'zone', 'port'].map((k) => [k, { type: 'string', maxLength: 100 }])),
} as const;
// A report's page: the agent's own time, zone or port for the suggestion (the address is the report's), and what was just done.
const reportQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { ...Object.fromEntries(['at', 'zone', 'port'].map((k) => [k, { type: 'string', maxLength: 100 }])), done: { type: 'string', enum: ['assign', 'dismiss'] } },
} as const;
const assignBody = {
  ...csrfBody,
  required: ['_csrf', 'customer'],
  properties: { ...csrfBody.properties, customer: { type: 'string', maxLength: 200 } },
} as const;
// Longer than the limit on purpose: an over-long reason gets desk/queue's sentence, not a schema error.
const dismissBody = {
  ...csrfBody,
  required: ['_csrf', 'reason'],
  properties: { ...csrfBody.properties, reason: { type: 'string', maxLength: 4 * MAX_DISMISS_REASON } },
} as const;

/** How a report's state reads on its page: the queue's words, the console's colours. */
const REPORT_STATE: Record<DeskReport['state'], { label: string; css: string }> = {
  unattributed: { label: 'in the queue', css: 'queued' },
  attributed: { label: 'attributed', css: 'running' },
  forwarded: { label: 'forwarded', css: 'done' },
  dismissed: { label: 'dismissed', css: 'cancelled' },
};

const lookupSchema = z
  .object({
    ip: z
      .string()
      .trim()
      .min(1, 'Give the IP address.')
      .transform((v, c) => {
        try {
          return canonicalIp(v);
        } catch {
          c.addIssue({ code: 'custom', message: 'That is not an IP address (IPv4 as 192.0.2.7, or IPv6; no network).' });
          return z.NEVER;
        }
      }),
    at: z
      .string()
      .trim()
      .optional()
      .transform((v, c) => {
        if (!v) return null;
        const t = parseTime(v);
        if (!t) c.addIssue({ code: 'custom', message: 'Give the time as ISO 8601, e.g. 2026-03-01T10:05:00+01:00 (or without the zone, and choose the zone).' });
        return t;
      }),
    zone: z
      .string()
      .trim()
      .optional()
      .refine((v) => !v || validZone(v), 'Choose the zone as a name (Europe/Berlin) or an offset (+01:00).'),
    port: z
      .string()
      .trim()
      .optional()
      .transform((v, c) => {
        if (!v) return undefined;
        if (!/^\d{1,5}$/.test(v) || Number(v) > 65535) c.addIssue({ code: 'custom', message: 'The port is a number from 0 to 65535.' });
        return Number(v);
      }),
  })
  .strict();

export interface Lookup {
  ip: string;
  at: Date | null;
  zoneless: boolean;
  port: number | undefined;
}

/**
 * The lookup form's values → the attribution question, or what is wrong with
 * them. A time without a zone takes the zone field; with neither it is read as
 * UTC and flagged zoneless, exactly as `backstop attribute` does.
 */
export function parseLookup(raw: Record<string, string | undefined>): { ok: true; q: Lookup } | { ok: false; errors: string[] } {
  const parsed = lookupSchema.safeParse(raw);
  if (!parsed.success) return { ok: false, errors: [...new Set(parsed.error.issues.map((i) => (i.code === 'custom' ? i.message : `${i.path.join('.') || 'form'}: ${i.message}`)))] };
  const { ip, at, zone, port } = parsed.data;
  if (!at) return { ok: true, q: { ip, at: null, zoneless: false, port } };
  if (!zone) return { ok: true, q: { ip, at: at.at, zoneless: at.zoneless, port } };
  if (!at.zoneless) return { ok: false, errors: ['The time already has a zone; leave the zone field empty or take the zone off the time.'] };
  // Read as UTC, so its UTC fields are the wall clock typed.
  const wall = at.at.toISOString();
  const instant = instantIn(wall.slice(0, 10), wall.slice(11, 19), zone);
  if (!instant) return { ok: false, errors: ['That date does not exist.'] };
  return { ok: true, q: { ip, at: instant, zoneless: false, port } };
}

/** The timer an incident's state runs (or why there is none), for the list and the incident's page. */
export function timerOf(i: Pick<Incident, 'state' | 'grace_until' | 'probation_until' | 'held_from' | 'closed_at'>): { label: string; at: Date | null } {
  const d = (v: Date | string | null) => (v ? new Date(v) : null);
  switch (i.state) {
    case 'suspected':
      return { label: 'notice not sent yet; grace starts when it is', at: null };
    case 'notified':
      return { label: 'grace ends', at: d(i.grace_until) };
    case 'restricted':
      return { label: 'restricted until the customer attests or the desk releases', at: null };
    case 'attested':
    case 'probation':
      return { label: 'probation ends', at: d(i.probation_until) };
    case 'evidence-hold':
      return { label: `on hold (from ${i.held_from ?? 'unknown'}): no timer acts`, at: null };
    case 'closed':
      return { label: 'closed', at: d(i.closed_at) };
  }
}

function timerCell(i: Incident, now: Date): SafeHtml {
  const t = timerOf(i);
  if (!t.at) return html`<span class="timer">${t.label}</span>`;
  // A timer past its time has not been run yet (the next worker poll or `backstop incident tick` does).
  const overdue = t.at.getTime() < now.getTime() && i.state !== 'closed';
  return html`<span class="timer${overdue ? ' overdue' : ''}">${t.label} <time datetime="${t.at.toISOString()}">${utc(t.at)}</time> <span class="rel">(${fromNow(t.at, now)}${overdue ? ', due' : ''})</span></span>`;
}

const stateBadge = (state: string): SafeHtml => html`<span class="state s-${(STATES as readonly string[]).includes(state) ? state : 'other'}">${state}</span>`;

type Contact = { name?: unknown; email?: unknown; phone?: unknown; language?: unknown; time_zone?: unknown };
const text = (v: unknown) => (v === undefined || v === null ? '' : String(v));

export const page: ConsolePage = {
  slot: 'desk',
  label: 'Abuse desk',
  path: '/desk',
  role: 'analyst',
  routes(app, ctx) {
    const db = ctx.db;
    const settings = () => incidentSettings(ctx.deps.config?.desk);

    app.get('/desk', { config: { role: 'analyst' }, schema: { querystring: listQuery } }, async (request, reply) => {
      const { state } = request.query as { state: Filter };
      const now = new Date();
      const [counts, incidents, queue, imports] = await Promise.all([
        incidentCounts(db),
        listIncidents(db, { open: state === 'open', ...(state !== 'open' && state !== 'all' ? { state } : {}), limit: LIST_LIMIT }),
        deskQueue(db, QUEUE_SHOWN),
        leaseImportStatus(db, IMPORTS_SHOWN),
      ]);
      const count = (f: Filter) =>
        f === 'all' ? Object.values(counts).reduce((a, b) => a + b, 0) : f === 'open' ? Object.entries(counts).reduce((a, [s, n]) => (s === 'closed' ? a : a + n), 0) : (counts[f] ?? 0);
      // attested is a moment, not a resting state: its tab shows only if something is caught in it.
      const tabs = FILTERS.filter((f) => f !== 'attested' || count(f) > 0).map(
        (f) => html`<a href="/desk${qs({ state: f === 'open' ? undefined : f })}"${f === state ? html` class="on" aria-current="true"` : ''} data-state="${f}">${f} (${count(f)})</a>`,
      );
      const body = html`
<div class="head"><h1>Abuse desk</h1><nav class="tabs" aria-label="Incidents by state">${tabs}</nav></div>
<p class="meta">${incidents.length} incident${incidents.length === 1 ? '' : 's'}${incidents.length === LIST_LIMIT ? ' (the newest)' : ''}. Times in UTC.</p>
${incidents.length === 0
  ? html`<p class="empty">No ${state === 'all' ? '' : `${state} `}incidents.</p>`
  : html`<table class="grid incidents"><thead><tr><th>Opened (UTC)</th><th>Customer</th><th>State</th><th>Level</th><th>Timer</th><th class="num">Self-releases left</th><th class="num">Recurrences</th></tr></thead><tbody>
${incidents.map((i) => html`<tr data-incident="${i.id}">
<td class="nowrap"><a href="/desk/incidents/${i.id}">${utc(i.opened_at)}</a></td>
<td><span class="mono">${clip(i.customer_id, 40)}</span> ${clip(text((i.contact_snapshot as Contact).name), 40)}</td>
<td>${stateBadge(i.state)}</td>
<td class="mono">${i.restriction_level ?? html`<span class="none">—</span>`}</td>
<td>${timerCell(i, now)}</td>
<td class="num">${i.self_releases_left}</td>
<td class="num">${i.recurrences}</td></tr>`)}
</tbody></table>`}
<section class="panel">
<h2>Who held an address</h2>
${lookupForm({})}
</section>
<section class="panel">
<h2>Reports nobody could be named for (${queue.total})</h2>
${queue.reports.length === 0
  ? html`<p class="empty">The queue is empty.</p>`
  : html`${queue.total > queue.reports.length ? html`<p class="meta">The newest ${queue.reports.length}.</p>` : ''}
<table class="grid queue"><thead><tr><th>Received (UTC)</th><th>Via</th><th>Reporter</th><th>Address</th><th>Observed (UTC)</th><th>Reason</th><th>Summary</th></tr></thead><tbody>
${queue.reports.map((r) => html`<tr data-report="${r.id}">
<td class="nowrap"><a href="/desk/reports/${r.id}" title="Open the report: assign or dismiss it">${utc(r.receivedAt)}</a></td>
<td>${r.via} <span class="meta">${r.kind}</span></td>
<td class="mono">${clip(r.reporter, 40)}</td>
<td class="mono nowrap">${r.ip ? html`<a href="/desk/attribute${qs({ ip: r.ip, at: lookupTime(r.observedAt, r.zoneless), port: r.port })}" title="Look the address up">${r.ip}${r.port !== null ? ` port ${r.port}` : ''}</a>` : html`<span class="none">none</span>`}</td>
<td class="nowrap">${r.observedAt ? html`${utc(r.observedAt)}${r.zoneless ? html` <span class="meta" title="The report gave no zone: read as UTC">no zone</span>` : ''}` : html`<span class="none">none</span>`}</td>
<td>${clip(r.reason, 80)}</td>
<td>${clip([r.malware.join(', '), r.summary].filter(Boolean).join(' — '), 80)}</td></tr>`)}
</tbody></table>`}
</section>
<section class="panel">
<h2>Lease imports</h2>
${importsTable(imports, now)}
</section>`;
      return ctx.render(request, reply, { title: 'Abuse desk', slot: 'desk', body });
    });

    app.get('/desk/attribute', { config: { role: 'analyst' }, schema: { querystring: lookupQuery } }, async (request, reply) => {
      const raw = request.query as Record<string, string | undefined>;
      let status = 200;
      let answer: SafeHtml | '' = '';
      if (Object.values(raw).some((v) => v)) {
        const parsed = parseLookup(raw);
        if (!parsed.ok) {
          status = 400;
          answer = html`<div class="problem" role="alert"><ul>${parsed.errors.map((e) => html`<li>${e}</li>`)}</ul></div>`;
        } else {
          answer = (await lookupAnswer(ctx, parsed.q)).body;
        }
      }
      const body = html`
<div class="head"><h1>Who held an address</h1><a href="/desk">Abuse desk</a></div>
<section class="panel">
${lookupForm(raw)}
</section>
${answer ? html`<section class="panel lookup-answer">${answer}</section>` : ''}`;
      return ctx.render(request, reply, { title: 'Attribution lookup', slot: 'desk', status, body });
    });

    const incidentPage = async (request: FastifyRequest, reply: FastifyReply, id: string, status: number, notice: SafeHtml | null) => {
      const found = await getIncident(db, id, { evidenceLimit: EVIDENCE_SHOWN });
      if (!found) return notFound(ctx, request, reply, 'incident');
      const { incident: i, events, evidence, evidenceCount } = found;
      const now = new Date();
      const contact = i.contact_snapshot as Contact;
      const admin = ctx.can(request, 'admin');
      const allowed = deskEventsFor(i, settings(), now) as DeskEvent[];
      const actions: SafeHtml = !admin
        ? html`<p class="meta">State changes need the admin role.</p>`
        : allowed.length === 0
          ? html`<p class="meta">No desk action applies to a ${i.state} incident.</p>`
          : html`<form class="panel desk-actions" method="post" action="/desk/incidents/${i.id}/transition">
  ${ctx.csrfField(request, reply)}
  <label>Note for the history (optional) <input name="note" maxlength="500" size="60"></label>
  <div class="actions">${allowed.map((e) => html`<button type="submit" name="event" value="${e}" data-event="${e}"${e === 'close' ? html` class="danger"` : ''}>${EVENT_TEXT[e].button}</button>`)}</div>
  <ul class="plain meta">${allowed.map((e) => html`<li><b>${EVENT_TEXT[e].button}</b>: ${EVENT_TEXT[e].explain}</li>`)}</ul>
</form>`;
      const body = html`
<div class="head"><h1>Incident</h1>${stateBadge(i.state)}<a href="/desk">Abuse desk</a></div>
${notice ?? ''}
${actions}
<section class="cols">
<div class="panel">
<h2>Incident</h2>
<table class="kv">
<tr><th>Id</th><td class="mono">${i.id}</td></tr>
<tr><th>Customer</th><td class="mono wrap">${clip(i.customer_id, 200)}</td></tr>
<tr><th>State</th><td>${stateBadge(i.state)} since ${utc(i.state_since)}${i.held_from ? html` (held from ${i.held_from})` : ''}</td></tr>
<tr><th>Timer</th><td>${timerCell(i, now)}</td></tr>
<tr><th>Opened</th><td>${utc(i.opened_at)}</td></tr>
<tr><th>Restriction</th><td class="mono">${i.restriction_level ?? html`<span class="none">none</span>`}</td></tr>
<tr><th>Self-releases left</th><td>${i.self_releases_left}</td></tr>
<tr><th>Recurrences</th><td>${i.recurrences}</td></tr>
<tr><th>Portal link</th><td>${i.portal_token_hash ? `valid until ${utc(i.portal_token_expires)}` : html`<span class="none">none</span>`}</td></tr>
${i.closed_at ? html`<tr><th>Closed</th><td>${utc(i.closed_at)}</td></tr>` : ''}
</table>
</div>
<div class="panel">
<h2>Contact when it opened</h2>
<table class="kv contact">
<tr><th>Name</th><td class="wrap">${clip(text(contact.name), 200)}</td></tr>
<tr><th>Email</th><td class="mono wrap">${clip(text(contact.email), 200)}</td></tr>
<tr><th>Phone</th><td class="mono">${clip(text(contact.phone), 60)}</td></tr>
<tr><th>Language</th><td>${clip(text(contact.language), 20)}</td></tr>
<tr><th>Time zone</th><td>${clip(text(contact.time_zone), 60)}</td></tr>
</table>
</div>
</section>
<section class="panel evidence">
<h2>Evidence (${evidenceCount})</h2>
${evidenceCount > evidence.length ? html`<p class="meta">The newest ${evidence.length}.</p>` : ''}
${evidence.length === 0
  ? html`<p class="empty">None.</p>`
  : html`<ol class="evidence">${evidence.map((e) => html`<li>
<div><time datetime="${new Date(e.observed_at).toISOString()}">${utc(e.observed_at)}</time> <span class="badge">${e.source}</span> <span class="mono">${e.ip}</span>${e.malware.length ? html` <span class="mono malware">${clip(e.malware.join(', '), 200)}</span>` : ''} <span class="meta">recorded ${utc(e.at)}</span></div>
<p class="wrap summary">${clip(e.summary, 2000)}</p>
${e.headers ? html`<details><summary>Header lines</summary><pre class="headers">${preText(e.headers.length > MAX_HEADERS_SHOWN ? `${e.headers.slice(0, MAX_HEADERS_SHOWN)}\n[… ${e.headers.length - MAX_HEADERS_SHOWN} more characters not shown]` : e.headers)}</pre></details>` : ''}
</li>`)}</ol>`}
</section>
<section class="panel">
<h2>History</h2>
<table class="grid history"><thead><tr><th>At (UTC)</th><th>Event</th><th>From → to</th><th>By</th><th>Detail</th></tr></thead><tbody>
${events.map((e) => html`<tr><td class="nowrap">${utc(e.at)}</td><td class="mono">${e.kind}</td><td>${e.from_state ?? '—'} → ${e.to_state ?? '—'}</td><td class="mono">${clip(e.actor, 60)}</td><td class="mono">${clip(JSON.stringify(e.detail ?? {}), 160)}</td></tr>`)}
</tbody></table>
</section>`;
      return ctx.render(request, reply, { title: 'Incident', slot: 'desk', status, body });
    };

    app.get('/desk/incidents/:id', { config: { role: 'analyst' }, schema: { params: idParams, querystring: showQuery } }, async (request, reply) => {
      const { id } = request.params as { id: string };
      const { done, from } = request.query as { done?: DeskEvent; from?: IncidentState };
      const notice = done ? html`<p class="done" role="status">${EVENT_TEXT[done].done}${from ? html` (it was ${from})` : ''}.</p>` : null;
      return incidentPage(request, reply, id, 200, notice);
    });

    app.post('/desk/incidents/:id/transition', { config: { role: 'admin' }, schema: { params: idParams, querystring: noQuery, body: transitionBody } }, async (request, reply) => {
      const { id } = request.params as { id: string };
      const { event, note } = request.body as { event: IncidentEvent; note?: string };
      const cleanNote = note ? cleanText(note, 500).trim() : '';
      // transition() decides under the row lock and writes history and audit (actor, address, note) with the change.
      const r = await transition(db, id, event, ctx.actor(request), undefined, settings(), { ip: request.ip, ...(cleanNote ? { note: cleanNote } : {}) });
      if (!r.ok) {
        if (r.refused === 'no such incident') return notFound(ctx, request, reply, 'incident');
        request.log.info({ incident: id, event, refused: r.refused }, 'desk: transition refused');
        return incidentPage(request, reply, id, 409, html`<p class="problem" role="alert">Refused: ${r.refused}. Nothing was changed.</p>`);
      }
      return reply.redirect(`/desk/incidents/${id}${qs({ done: event, from: r.from })}`, 303);
    });

    const reportPage = async (request: FastifyRequest, reply: FastifyReply, id: string, status: number, notice: SafeHtml | null, ask: Record<string, string | undefined> = {}, typed: { customer?: string; reason?: string } = {}) => {
      const r = await getReport(db, id);
      if (!r) return notFound(ctx, request, reply, 'report');
      const admin = ctx.can(request, 'admin');
      const queued = r.state === 'unattributed';
      const fileable = r.ip !== null && r.observedAt !== null;

      // The suggestion: attribute() asked again (leases imported since, or the agent's own time, zone or port).
      let suggestion: SafeHtml | '' = '';
      let suggested: string | null = null;
      if (queued && r.ip) {
        const own = Object.values(ask).some((v) => v);
        const parsed = parseLookup({ ip: r.ip, at: ask.at || (ask.zone ? wallClock(r.observedAt) : lookupTime(r.observedAt, r.zoneless)), zone: ask.zone, port: ask.port || (r.port === null ? undefined : String(r.port)) });
        if (!parsed.ok) {
          if (status === 200) status = 400;
          suggestion = html`<div class="problem" role="alert"><ul>${parsed.errors.map((e) => html`<li>${e}</li>`)}</ul></div>`;
        } else {
          const answer = await lookupAnswer(ctx, parsed.q);
          suggested = answer.customerId;
          suggestion = html`<p class="meta">${own ? 'Asked with your time, zone or port.' : 'Asked again with what the report says.'}</p>${answer.body}`;
        }
        suggestion = html`${suggestion}<form class="filters lookup" method="get" action="/desk/reports/${r.id}">
  <label>Time (ISO 8601) <input name="at" maxlength="40" value="${ask.at ?? ''}" placeholder="${lookupTime(r.observedAt, r.zoneless) ?? '2026-03-01T10:05:00+01:00'}"></label>
  <label>Zone, if the time has none <input name="zone" maxlength="64" value="${ask.zone ?? ''}" placeholder="Europe/Berlin or +01:00"></label>
  <label>Source port (CGNAT) <input name="port" maxlength="5" inputmode="numeric" value="${ask.port ?? ''}" placeholder="${r.port ?? ''}"></label>
  <button type="submit">Ask again</button>
</form>
<p class="meta">Empty fields take the report's own values; a zone alone reads the report's time as wall-clock time in that zone.</p>`;
      }

      const actions: SafeHtml = !queued
        ? html``
        : !admin
          ? html`<p class="meta">Assigning and dismissing need the admin role.</p>`
          : html`<section class="cols">
${fileable
  ? html`<form class="panel desk-actions" method="post" action="/desk/reports/${r.id}/assign">
  ${ctx.csrfField(request, reply)}
  <h2>Assign to a customer</h2>
  <label>Customer id <input name="customer" required maxlength="200" size="30" value="${typed.customer ?? suggested ?? ''}"></label>
  ${suggested && typed.customer === undefined ? html`<p class="meta">Pre-filled from the attribution answer; check it against the report.</p>` : ''}
  <div class="actions"><button type="submit" data-action="assign">Assign and forward</button></div>
  <p class="meta">Files the report as evidence on the customer's incident (opens one if none is open) and forwards it to the customer, without the reporter.</p>
</form>`
  : html`<div class="panel"><h2>Assign to a customer</h2><p class="meta">The report gives ${r.ip ? 'no time' : 'no address'}: there is nothing to file against a customer.</p></div>`}
<form class="panel desk-actions" method="post" action="/desk/reports/${r.id}/dismiss">
  ${ctx.csrfField(request, reply)}
  <h2>Dismiss</h2>
  <label>Reason (required, at most ${MAX_DISMISS_REASON} characters) <textarea name="reason" required maxlength="${MAX_DISMISS_REASON}" rows="3" cols="50">${typed.reason ?? ''}</textarea></label>
  <div class="actions"><button type="submit" data-action="dismiss" class="danger">Dismiss</button></div>
  <p class="meta">Takes the report out of the queue; nobody is told.</p>
</form>
</section>`;

      const state = REPORT_STATE[r.state];
      const body = html`
<div class="head"><h1>Report</h1><span class="state s-${state.css}">${state.label}</span><a href="/desk">Abuse desk</a></div>
${notice ?? ''}
<section class="cols">
<div class="panel">
<h2>Report</h2>
<table class="kv report">
<tr><th>Id</th><td class="mono">${r.id}</td></tr>
<tr><th>Received</th><td>${utc(r.receivedAt)}</td></tr>
<tr><th>Via</th><td>${r.via} <span class="meta">${r.kind}${r.feedbackType ? ` (${r.feedbackType})` : ''}</span></td></tr>
<tr><th>Reporter</th><td class="mono wrap">${clip(r.reporter, 320)}</td></tr>
<tr><th>Address</th><td class="mono">${r.ip ?? html`<span class="none">none</span>`}${r.port !== null ? ` port ${r.port}` : ''}</td></tr>
<tr><th>Observed</th><td>${r.observedAt ? html`${utc(r.observedAt)}${r.zoneless ? html` <span class="meta">no zone given: read as UTC</span>` : ''} <span class="meta">(${r.timeSource})</span>` : html`<span class="none">none</span>`}</td></tr>
<tr><th>Why nobody was named</th><td class="wrap">${clip(r.reason, 400)}</td></tr>
<tr><th>Malware</th><td class="mono wrap malware">${clip(r.malware.join(', '), 400)}</td></tr>
${r.assignedAt ? html`<tr><th>Assigned</th><td>to <span class="mono">${clip(r.customerId, 200)}</span> by <span class="mono">${clip(r.assignedBy, 80)}</span> at ${utc(r.assignedAt)}</td></tr>` : ''}
${!r.assignedAt && r.customerId ? html`<tr><th>Attributed</th><td>to <span class="mono">${clip(r.customerId, 200)}</span> when it arrived</td></tr>` : ''}
${r.incidentId ? html`<tr><th>Incident</th><td><a href="/desk/incidents/${r.incidentId}" class="mono">${r.incidentId}</a></td></tr>` : ''}
${r.dismissedAt ? html`<tr><th>Dismissed</th><td>by <span class="mono">${clip(r.dismissedBy, 80)}</span> at ${utc(r.dismissedAt)}</td></tr><tr><th>Reason</th><td class="wrap dismiss-reason">${r.dismissReason ?? ''}</td></tr>` : ''}
</table>
</div>
${queued ? html`<div class="panel lookup-answer"><h2>Who held the address</h2>${r.ip ? suggestion : html`<p class="empty">The report names no address.</p>`}</div>` : ''}
</section>
${actions}
<section class="panel">
<h2>What was reported</h2>
<p class="wrap summary">${clip(r.summary, 2000)}</p>
${r.headers ? html`<details open><summary>Header lines</summary><pre class="headers">${preText(r.headers.length > MAX_HEADERS_SHOWN ? `${r.headers.slice(0, MAX_HEADERS_SHOWN)}\n[… ${r.headers.length - MAX_HEADERS_SHOWN} more characters not shown]` : r.headers)}</pre></details>` : html`<p class="meta">No header lines came with it.</p>`}
</section>`;
      return ctx.render(request, reply, { title: 'Report', slot: 'desk', status, body });
    };

    app.get('/desk/reports/:id', { config: { role: 'analyst' }, schema: { params: idParams, querystring: reportQuery } }, async (request, reply) => {
      const { id } = request.params as { id: string };
      const { done, ...ask } = request.query as { done?: 'assign' | 'dismiss'; at?: string; zone?: string; port?: string };
      const notice = done === 'assign' ? html`<p class="done" role="status">Assigned: the report is on the customer's incident and its forward is queued.</p>` : done === 'dismiss' ? html`<p class="done" role="status">Dismissed.</p>` : null;
      return reportPage(request, reply, id, 200, notice, ask);
    });

    /** A refusal from desk/queue as the report's page: 404 for an unknown report, 400 for the agent's input, else 409; nothing changed. */
    const refused = (request: FastifyRequest, reply: FastifyReply, id: string, action: string, r: QueueRefusal, typed: { customer?: string; reason?: string }) => {
      if (r.why === 'unknown-report') return notFound(ctx, request, reply, 'report');
      request.log.info({ report: id, action, refused: r.refused }, 'desk: queue action refused');
      const status = r.why === 'unknown-customer' || r.why === 'bad-reason' ? 400 : 409;
      return reportPage(request, reply, id, status, html`<p class="problem" role="alert">Refused: ${r.refused}. Nothing was changed.</p>`, {}, typed);
    };

    app.post('/desk/reports/:id/assign', { config: { role: 'admin' }, schema: { params: idParams, querystring: noQuery, body: assignBody } }, async (request, reply) => {
      const { id } = request.params as { id: string };
      const { customer } = request.body as { customer: string };
      // assignReport decides under the report's row lock and files, forwards and audits (actor, address) in one transaction.
      const r = await assignReport(db, id, customer, ctx.actor(request), undefined, { settings: settings(), detail: { ip: request.ip } });
      if (!r.ok) return refused(request, reply, id, 'assign', r, { customer });
      return reply.redirect(`/desk/reports/${id}${qs({ done: 'assign' })}`, 303);
    });

    app.post('/desk/reports/:id/dismiss', { config: { role: 'admin' }, schema: { params: idParams, querystring: noQuery, body: dismissBody } }, async (request, reply) => {
      const { id } = request.params as { id: string };
      const { reason } = request.body as { reason: string };
      const r = await dismissReport(db, id, reason, ctx.actor(request), new Date(), { ip: request.ip });
      if (!r.ok) return refused(request, reply, id, 'dismiss', r, { reason });
      return reply.redirect(`/desk/reports/${id}${qs({ done: 'dismiss' })}`, 303);
    });
  },
};

/** The lookup question for a report's time: a time that came without a zone is asked again without one. */
function lookupTime(at: Date | null, zoneless: boolean): string | undefined {
  if (!at) return undefined;
  const iso = at.toISOString().replace(/\.000Z$/, 'Z');
  return zoneless ? iso.replace(/Z$/, '') : iso;
}

/** A report's time without its zone, for an agent who names the zone the reporter's clock was in. */
function wallClock(at: Date | null): string | undefined {
  return at ? at.toISOString().replace(/(\.000)?Z$/, '') : undefined;
}

function lookupForm(v: Record<string, string | undefined>): SafeHtml {
  return html`<form class="filters lookup" method="get" action="/desk/attribute">
  <label>IP address <input name="ip" required maxlength="45" value="${v.ip ?? ''}" placeholder="192.0.2.7"></label>
  <label>Time (ISO 8601) <input name="at" maxlength="40" value="${v.at ?? ''}" placeholder="2026-03-01T10:05:00+01:00"></label>
  <label>Zone, if the time has none <input name="zone" maxlength="64" value="${v.zone ?? ''}" placeholder="Europe/Berlin or +01:00"></label>
  <label>Source port (CGNAT) <input name="port" maxlength="5" inputmode="numeric" value="${v.port ?? ''}"></label>
  <button type="submit">Look up</button>
</form>
<p class="meta">No time: only a static address has an answer. A time without a zone is read as UTC, and near a change of holder the answer is ambiguous.</p>`;
}

/** attribute()'s answer as the console shows it, and the customer it names (the report page pre-fills its assign form with it). */
async function lookupAnswer(ctx: ConsoleContext, q: Lookup): Promise<{ body: SafeHtml; customerId: string | null }> {
  const asked = html`<p class="meta">Asked: <span class="mono">${q.ip}</span>${q.port !== undefined ? ` port ${q.port}` : ''} at ${q.at ? utc(q.at) : 'now'}${q.zoneless ? ' (no zone given: read as UTC)' : ''}.</p>`;
  const a: Attribution = await attribute(ctx.db, { ip: q.ip, at: q.at, ...(q.port !== undefined ? { port: q.port } : {}), zoneless: q.zoneless });
  if (a.kind === 'unknown') return { body: html`<h2 data-answer="unknown">Unknown</h2><p>No customer we know held the address then.</p>${asked}`, customerId: null };
  if (a.kind === 'ambiguous') return { body: html`<h2 data-answer="ambiguous">Ambiguous</h2><p>${a.reason}</p>${asked}`, customerId: null };
  const [customer, open] = await Promise.all([
    getCustomer(ctx.db, a.customerId),
    ctx.db.selectFrom('incidents').select(['id', 'state']).where('customer_id', '=', a.customerId).where('state', '<>', 'closed').executeTakeFirst(),
  ]);
  const body = html`<h2 data-answer="customer">Customer <span class="mono">${clip(a.customerId, 80)}</span></h2>
<table class="kv">
<tr><th>Name</th><td class="wrap">${customer ? clip(customer.name, 200) : html`<span class="none">not in the customer list</span>`}</td></tr>
${customer ? html`<tr><th>Email</th><td class="mono wrap">${clip(customer.email, 200)}</td></tr><tr><th>Language, zone</th><td>${clip(customer.language, 20)}, ${clip(customer.timeZone, 60)}</td></tr>` : ''}
<tr><th>Through</th><td>${a.via}</td></tr>
<tr><th>Held</th><td>${a.validFrom ? utc(a.validFrom) : 'always'} – ${a.validTo ? utc(a.validTo) : 'open'}</td></tr>
<tr><th>Open incident</th><td>${open ? html`<a href="/desk/incidents/${open.id}">${open.state}</a>` : html`<span class="none">none</span>`}</td></tr>
</table>
${asked}`;
  return { body, customerId: a.customerId };
}

function importsTable(rows: ImportStatus[], now: Date): SafeHtml {
  if (rows.length === 0) return html`<p class="empty">No import has run yet (<span class="mono">backstop leases import</span>).</p>`;
  // The newest good run per format: stale lease data is how an innocent customer gets someone else's report.
  const lastGood = new Map<string, ImportStatus>();
  for (const r of rows) if (!r.error && r.finishedAt && !lastGood.has(r.format)) lastGood.set(r.format, r);
  return html`${lastGood.size ? html`<p class="meta">Last good import: ${[...lastGood.values()].map((r, n) => html`${n ? ', ' : ''}<span class="mono">${r.format}</span> ${fromNow(r.finishedAt!, now)}`)}.</p>` : ''}
<table class="grid imports"><thead><tr><th>Started (UTC)</th><th>Format</th><th>File</th><th class="num">Read</th><th class="num">Added</th><th class="num">Unchanged</th><th class="num">Closed</th><th>Result</th></tr></thead><tbody>
${rows.map((r) => html`<tr>
<td class="nowrap">${utc(r.startedAt)}</td>
<td class="mono">${r.format}</td>
<td class="mono">${clip(r.file, 40)}</td>
<td class="num">${r.read}</td><td class="num">${r.added}</td><td class="num">${r.unchanged}</td><td class="num">${r.closed}</td>
<td>${r.error ? html`<span class="state s-failed">failed</span> ${clip(r.error, 80)}` : r.finishedAt ? html`<span class="state s-done">ok</span>` : html`<span class="state s-running">running</span>`}</td></tr>`)}
</tbody></table>`;
}

function notFound(ctx: ConsoleContext, request: FastifyRequest, reply: FastifyReply, what: 'incident' | 'report') {
  return ctx.render(request, reply, { title: 'Not found', slot: 'desk', status: 404, body: html`<p class="empty">No ${what} with that id. <a href="/desk">Back to the abuse desk</a></p>` });
}
