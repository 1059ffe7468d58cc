/*
 * desk/web — the abuse desk's page in the console (R8, R9): incidents by
 * state with their running timers, one incident's contact, evidence and
 * history with the desk's state changes, the attribution lookup, the queue
 * of reports nobody could be named for, and the lease imports' status.
 *
 * Reads and decides nothing of its own: incidents through desk/incidents
 * (listIncidents, getIncident, transition — the same functions as
 * `backstop incident`), the buttons from lifecycle's `next` (deskEventsFor),
 * attribution through desk/attribute (with the CLI's time parsing), the
 * queue through desk/intake, the imports through desk/leases.
 *
 * Roles: an analyst reads everything here; a state change is admin-only
 * (a desk release lifts a customer's restriction and a close ends the file —
 * as weighty as releasing quarantined mail, which is admin-only too). Each
 * change is a POST with the console's CSRF token, decided again by
 * `transition` under the incident's row lock and audited there, in the same
 * transaction, as `incident.EVENT` by web:USER with the request's address; a
 * refusal is a 409 with the lifecycle's reason and changes nothing.
 *
 * Trusts nothing it shows: evidence summaries, header lines, reporters and
 * customer names came from outside (a report, a worm, the ISP's CRM export).
 * Everything goes through web/html (escaped, controls and bidi overrides
 * neutralised), header lines only as inert <pre> text. No client script.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { clip, fromNow, html, preText, qs, utc, type SafeHtml } from '../web/html.ts';
import { instantIn, validZone } from '../web/public-form.ts';
import type { ConsoleContext, ConsolePage } from '../web/pages/registry.ts';
import { csrfBody, idParams, noQuery } from '../web/schemas.ts';
import { cleanText } from '../obs/clean.ts';
import { attribute, canonicalIp, getCustomer, parseTime, type Attribution } from './attribute.ts';
import { deskEventsFor, getIncident, incidentCounts, incidentSettings, listIncidents, transition, type Incident } from './incidents.ts';
import { deskQueue } from './intake.ts';
import { leaseImportStatus, type ImportStatus } from './leases.ts';
import { DESK_EVENTS, STATES, type IncidentEvent, type IncidentState } from './lifecycle.ts';

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
${queue.reports.map((r) => html`<tr>
<td class="nowrap">${utc(r.receivedAt)}</td>
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
          answer = await lookupAnswer(ctx, parsed.q);
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
      if (!found) return notFound(ctx, request, reply);
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
      const r = await transition(db, id, event, ctx.actor(request), new Date(), settings(), { ip: request.ip, ...(cleanNote ? { note: cleanNote } : {}) });
      if (!r.ok) {
        if (r.refused === 'no such incident') return notFound(ctx, request, reply);
        request.log.info({ incident: id, event, refused: r.refused }, 'desk: transition refused');
        return incidentPage(request, reply, id, 409, html`<p class="problem" role="alert">Refused: ${r.refused}. Nothing was changed.</p>`);
      }
      return reply.redirect(`/desk/incidents/${id}${qs({ done: event, from: r.from })}`, 303);
    });
  },
};

/** The lookup question for a report's time: a time that came without a zone is asked again without one. */
function lookupTime(at: Date | null, zoneless: boolean): string | undefined {
  if (!at) return undefined;
  const iso = at.toISOString().replace(/\.000Z$/, 'Z');
  return zoneless ? iso.replace(/Z$/, '') : iso;
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

async function lookupAnswer(ctx: ConsoleContext, q: Lookup): Promise<SafeHtml> {
  const asked = html`<p class="meta">Asked: <span class="mono">${q.ip}</span>${q.port !== undefined ? ` port ${q.port}` : ''} at ${q.at ? utc(q.at) : 'now'}${q.zoneless ? ' (no zone given: read as UTC)' : ''}.</p>`;
  const a: Attribution = await attribute(ctx.db, { ip: q.ip, at: q.at, ...(q.port !== undefined ? { port: q.port } : {}), zoneless: q.zoneless });
  if (a.kind === 'unknown') return html`<h2 data-answer="unknown">Unknown</h2><p>No customer we know held the address then.</p>${asked}`;
  if (a.kind === 'ambiguous') return html`<h2 data-answer="ambiguous">Ambiguous</h2><p>${a.reason}</p>${asked}`;
  const [customer, open] = await Promise.all([
    getCustomer(ctx.db, a.customerId),
    ctx.db.selectFrom('incidents').select(['id', 'state']).where('customer_id', '=', a.customerId).where('state', '<>', 'closed').executeTakeFirst(),
  ]);
  return html`<h2 data-answer="customer">Customer <span class="mono">${clip(a.customerId, 80)}</span></h2>
<table class="kv">
<tr><th>Name</th><td class="wrap">${customer ? clip(customer.name, 200) : html`<span class="none">not in the customer list</span>`}</td></tr>
${customer ? html`<tr><th>Email</th><td class="mono wrap">${clip(customer.email, 200)}</td></tr><tr><th>Language, zone</th><td>${clip(customer.language, 20)}, ${clip(customer.timeZone, 60)}</td></tr>` : ''}
<tr><th>Through</th><td>${a.via}</td></tr>
<tr><th>Held</th><td>${a.validFrom ? utc(a.validFrom) : 'always'} – ${a.validTo ? utc(a.validTo) : 'open'}</td></tr>
<tr><th>Open incident</th><td>${open ? html`<a href="/desk/incidents/${open.id}">${open.state}</a>` : html`<span class="none">none</span>`}</td></tr>
</table>
${asked}`;
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

function notFound(ctx: ConsoleContext, request: FastifyRequest, reply: FastifyReply) {
  return ctx.render(request, reply, { title: 'Not found', slot: 'desk', status: 404, body: html`<p class="empty">No incident with that id. <a href="/desk">Back to the abuse desk</a></p>` });
}
