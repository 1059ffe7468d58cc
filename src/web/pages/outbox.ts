/*
 * web/pages/outbox — everything Backstop will send or has tried to send:
 * postmaster notices and digests, sender notices, abuse reports, complaints.
 * Each is a job in the store (store/jobs.ts); this page lists them by kind
 * and state, opens one (state, attempts, last error, run-at, the message it
 * is about, its payload, its history) and — admins only — retries, cancels,
 * or approves one held for review.
 *
 * Every action is a POST with a CSRF token, goes through jobs.ts's setState
 * (the one place that decides which state allows which action, shared with
 * `backstop outbox`) and is audited as `outbox.ACTION` with the job's kind
 * and the state it left.
 *
 * Trusts nothing in a payload: a notice carries the worm's header block,
 * addresses and names. The payload is shown as JSON text through preText
 * (escaped, controls and bidi overrides neutralised) and cut at 64 kB; the
 * summary in the list goes through clip().
 *
 * At-least-once, shown: a job whose worker died after handing its mail to the
 * relay (store/jobs: `sending` when its lease ran out) was sent again under
 * the same Message-ID; it is marked "possible duplicate", with the node that
 * sent it.
 */
import { z } from 'zod';
import { setState, type JobState } from '../../store/jobs.ts';
import { clip, html, preText, qs, utc, type SafeHtml } from '../html.ts';
import { csrfBody, idParams, noQuery } from '../schemas.ts';
import type { ConsolePage } from './registry.ts';

export const JOB_STATES: readonly JobState[] = ['review', 'queued', 'running', 'sending', 'failed', 'done', 'cancelled'];
const ACTIONS = ['retry', 'cancel', 'approve'] as const;
type JobAction = (typeof ACTIONS)[number];

/**
 * Which buttons a job in a state shows. setState is the authority (a POST for
 * a state it refuses is a 409); this only keeps buttons off that would fail.
 */
export function actionsFor(state: string): JobAction[] {
  switch (state) {
    case 'review':
      return ['approve', 'cancel'];
    case 'queued':
      return ['retry', 'cancel'];
    case 'failed':
      return ['retry', 'cancel'];
    case 'cancelled':
      return ['retry'];
    default:
      return [];
  }
}

const LABEL: Record<JobAction, { button: string; done: string }> = {
  retry: { button: 'Retry now', done: 'Queued to run now, with its attempts reset.' },
  cancel: { button: 'Cancel', done: 'Cancelled: it will not be sent.' },
  approve: { button: 'Approve and send', done: 'Approved: it is queued and goes out at the next poll of a worker.' },
};

// What a job's payload may say about the message it came from: notices carry the Detection, reports and sender notices wrap it.
const DetectionRef = z.object({ id: z.string().uuid(), detail: z.string().optional(), clientIp: z.string().optional(), verdict: z.string().optional() });
const Wrapped = z.object({ detection: DetectionRef });
const Window = z.object({ windowEnd: z.string() });

/** The message log id a job is about, and a one-line description of it. */
export function describePayload(payload: unknown): { messageId: string | null; summary: string } {
  const direct = DetectionRef.safeParse(payload);
  const wrapped = Wrapped.safeParse(payload);
  const d = direct.success ? direct.data : wrapped.success ? wrapped.data.detection : null;
  if (d) return { messageId: d.id, summary: [d.detail, d.clientIp && `from ${d.clientIp}`].filter(Boolean).join(' ') || d.id };
  const w = Window.safeParse(payload);
  if (w.success) return { messageId: null, summary: `window ending ${w.data.windowEnd}` };
  return { messageId: null, summary: JSON.stringify(payload ?? null).slice(0, 200) };
}

/** A payload bigger than this is shown cut: a job's payload is built by us, an outsized one is itself worth a look. */
const MAX_PAYLOAD_SHOWN = 64 * 1024;

const listQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    kind: { type: 'string', maxLength: 64, pattern: '^[a-z0-9._-]*$' },
    state: { type: 'string', enum: ['', ...JOB_STATES] },
    limit: { type: 'integer', minimum: 1, maximum: 1000, default: 200 },
  },
} as const;
const showQuery = { type: 'object', additionalProperties: false, properties: { done: { type: 'string', enum: ACTIONS } } } as const;
const actionParams = { ...idParams, required: ['id', 'action'], properties: { ...idParams.properties, action: { type: 'string', enum: ACTIONS } } } as const;

const duplicateBadge = html` <span class="state s-failed" title="its worker died after handing it to the relay; sent again with the same Message-ID">possible duplicate</span>`;

const stateBadge = (state: string): SafeHtml => html`<span class="state s-${JOB_STATES.includes(state as JobState) ? state : 'other'}">${state}</span>`;

export const page: ConsolePage = {
  slot: 'outbox',
  label: 'Outbox',
  path: '/outbox',
  role: 'analyst',
  routes(app, ctx) {
    const db = ctx.db;

    app.get('/outbox', { config: { role: 'analyst' }, schema: { querystring: listQuery } }, async (request, reply) => {
      const q = request.query as { kind?: string; state?: string; limit: number };
      let list = db
        .selectFrom('jobs')
        .select(['id', 'kind', 'state', 'attempts', 'max_attempts', 'run_at', 'created_at', 'done_at', 'last_error', 'payload', 'sent_by', 'possible_duplicate'])
        .orderBy('created_at', 'desc')
        .limit(q.limit);
      let counts = db.selectFrom('jobs').select(['state', (eb) => eb.fn.countAll<number>().as('n')]).groupBy('state');
      if (q.kind) {
        list = list.where('kind', '=', q.kind);
        counts = counts.where('kind', '=', q.kind);
      }
      if (q.state) list = list.where('state', '=', q.state);
      const [rows, byState, kinds] = await Promise.all([
        list.execute(),
        counts.execute(),
        db.selectFrom('jobs').select('kind').distinct().orderBy('kind').limit(100).execute(),
      ]);
      const count = (s: string) => Number(byState.find((r) => r.state === s)?.n ?? 0);
      const tabs = [
        html`<a href="/outbox${qs({ kind: q.kind })}"${!q.state ? html` class="on" aria-current="true"` : ''}>all</a>`,
        ...JOB_STATES.map((s) => html`<a href="/outbox${qs({ kind: q.kind, state: s })}"${s === q.state ? html` class="on" aria-current="true"` : ''}>${s} (${count(s)})</a>`),
      ];
      const body = html`
<div class="head"><h1>Outbox</h1><nav class="tabs">${tabs}</nav></div>
${count('review') > 0 && q.state !== 'review' ? html`<p class="warn">${count('review')} waiting for review. <a href="/outbox${qs({ kind: q.kind, state: 'review' })}">Review them</a></p>` : ''}
<form class="filters panel" method="get" action="/outbox">
  <label>Kind <select name="kind"><option value="">any</option>${kinds.map((k) => html`<option${k.kind === q.kind ? html` selected` : ''}>${k.kind}</option>`)}</select></label>
  <label>State <select name="state"><option value="">any</option>${JOB_STATES.map((s) => html`<option${s === q.state ? html` selected` : ''}>${s}</option>`)}</select></label>
  <button type="submit">Filter</button> <a href="/outbox">Reset</a>
</form>
<p class="meta">${rows.length} job${rows.length === 1 ? '' : 's'}${rows.length === q.limit ? ' (the newest; narrow the filter for older ones)' : ''}.</p>
${rows.length === 0
  ? html`<p class="empty">Nothing in the outbox matches.</p>`
  : html`<table class="grid outbox"><thead><tr><th>Created (UTC)</th><th>Kind</th><th>About</th><th>State</th><th class="num">Attempts</th><th>Runs at (UTC)</th><th>Sent by</th><th>Last error</th></tr></thead><tbody>
${rows.map((r) => html`<tr>
<td class="nowrap"><a href="/outbox/${r.id}">${utc(r.created_at)}</a></td>
<td class="mono">${r.kind}</td>
<td class="mono">${clip(describePayload(r.payload).summary, 60)}</td>
<td>${stateBadge(r.state)}${r.possible_duplicate ? duplicateBadge : ''}</td>
<td class="num">${r.attempts}/${r.max_attempts}</td>
<td class="nowrap">${r.state === 'done' ? html`<span class="none">sent ${utc(r.done_at)}</span>` : utc(r.run_at)}</td>
<td class="mono">${clip(r.sent_by, 40)}</td>
<td>${clip(r.last_error, 60)}</td></tr>`)}
</tbody></table>`}`;
      return ctx.render(request, reply, { title: 'Outbox', slot: 'outbox', body });
    });

    app.get('/outbox/:id', { config: { role: 'analyst' }, schema: { params: idParams, querystring: showQuery } }, async (request, reply) => {
      const { id } = request.params as { id: string };
      const { done } = request.query as { done?: JobAction };
      const job = await db.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirst();
      if (!job) return ctx.render(request, reply, { title: 'Not found', slot: 'outbox', status: 404, body: html`<p class="empty">No job with that id. <a href="/outbox">Back to the outbox</a></p>` });
      const [events, message] = await Promise.all([
        db.selectFrom('audit').select(['at', 'actor', 'action', 'detail']).where('target', '=', job.id).orderBy('at').limit(50).execute(),
        (async () => {
          const ref = describePayload(job.payload).messageId;
          return ref ? db.selectFrom('messages').select(['id', 'received_at', 'subject']).where('id', '=', ref).executeTakeFirst() : undefined;
        })(),
      ]);
      const json = JSON.stringify(job.payload, null, 2) ?? 'null';
      const actions = ctx.can(request, 'admin')
        ? actionsFor(job.state).map(
            (a) => html`<form method="post" action="/outbox/${job.id}/${a}">${ctx.csrfField(request, reply)}<button type="submit"${a === 'cancel' ? html` class="danger"` : ''}>${LABEL[a].button}</button></form>`,
          )
        : [];
      const body = html`
<div class="head"><h1>Outbox job</h1>${stateBadge(job.state)}${job.possible_duplicate ? duplicateBadge : ''}<a href="/outbox${qs({ kind: job.kind })}">All ${job.kind} jobs</a></div>
${done ? html`<p class="done" role="status">${LABEL[done].done}</p>` : ''}
${job.possible_duplicate ? html`<p class="warn">Possible duplicate: a worker handed this mail to the relay and died before it could mark it sent, so it was sent again with the same Message-ID (it is made from the job id). The recipient may have it twice.</p>` : ''}
${job.state === 'review' ? html`<p class="warn">This job waits for a person's approval before it is sent. Read the payload below first.</p>` : ''}
${actions.length ? html`<div class="actions">${actions}</div>` : ctx.can(request, 'admin') ? '' : html`<p class="meta">Retry, cancel and approve need the admin role.</p>`}
<section class="cols">
<div class="panel">
<h2>Job</h2>
<table class="kv">
<tr><th>Id</th><td class="mono">${job.id}</td></tr>
<tr><th>Kind</th><td class="mono">${job.kind}</td></tr>
<tr><th>State</th><td>${stateBadge(job.state)}</td></tr>
<tr><th>Attempts</th><td>${job.attempts} of at most ${job.max_attempts}</td></tr>
<tr><th>Created</th><td>${utc(job.created_at)}</td></tr>
<tr><th>Runs at</th><td>${utc(job.run_at)}</td></tr>
${job.done_at ? html`<tr><th>Done</th><td>${utc(job.done_at)}</td></tr>` : ''}
${job.sent_by ? html`<tr><th>Sent by</th><td class="mono">${job.sent_by}, handed to the relay ${job.handoffs} time${job.handoffs === 1 ? '' : 's'}, last ${utc(job.sending_at)}</td></tr>` : ''}
${job.locked_by ? html`<tr><th>Held by</th><td class="mono">${job.locked_by} until ${utc(job.locked_until)}</td></tr>` : ''}
<tr><th>Last error</th><td class="mono wrap">${job.last_error ?? html`<span class="none">none</span>`}</td></tr>
<tr><th>Dedupe key</th><td class="mono wrap">${clip(job.dedupe_key, 200)}</td></tr>
<tr><th>About</th><td>${message ? html`<a href="/trace/${message.id}">message of ${utc(message.received_at)}</a> ${clip(message.subject, 80)}` : html`<span class="mono wrap">${clip(describePayload(job.payload).summary, 200)}</span>`}</td></tr>
</table>
</div>
<div class="panel">
<h2>History</h2>
${events.length === 0 ? html`<p class="empty">No one has acted on this job.</p>` : html`<ul class="plain">${events.map((e) => html`<li>${utc(e.at)} — ${e.actor}: ${e.action}</li>`)}</ul>`}
</div>
</section>
<section class="panel">
<h2>Payload</h2>
<pre class="payload">${preText(json.length > MAX_PAYLOAD_SHOWN ? `${json.slice(0, MAX_PAYLOAD_SHOWN)}\n[… ${json.length - MAX_PAYLOAD_SHOWN} more characters not shown]` : json)}</pre>
</section>`;
      return ctx.render(request, reply, { title: 'Outbox job', slot: 'outbox', body });
    });

    app.post('/outbox/:id/:action', { config: { role: 'admin' }, schema: { params: actionParams, querystring: noQuery, body: csrfBody } }, async (request, reply) => {
      const { id, action } = request.params as { id: string; action: JobAction };
      const job = await db.selectFrom('jobs').select(['id', 'kind', 'state']).where('id', '=', id).executeTakeFirst();
      if (!job) return ctx.render(request, reply, { title: 'Not found', slot: 'outbox', status: 404, body: html`<p class="empty">No job with that id. <a href="/outbox">Back to the outbox</a></p>` });
      if (!(await setState(db, id, action))) {
        const now = await db.selectFrom('jobs').select('state').where('id', '=', id).executeTakeFirst();
        const body = html`<section class="panel narrow"><p class="problem" role="status">Cannot ${action} a job that is ${now?.state ?? job.state}.</p><p><a href="/outbox/${id}">Back to the job</a></p></section>`;
        return ctx.render(request, reply, { title: 'Outbox', slot: 'outbox', status: 409, body });
      }
      await ctx.audit(request, `outbox.${action}`, id, { kind: job.kind, from: job.state });
      return reply.redirect(`/outbox/${id}${qs({ done: action })}`, 303);
    });
  },
};
