/*
 * web/pages/quarantine — work the quarantine: list and filter what is held,
 * open one message (summary, header block and MIME structure as inert text,
 * attachment names, sizes and SHA-256), and — admins only — release it to
 * its original recipients, delete it, or download it as .eml. Each action
 * goes through a confirmation page and a POST with a CSRF token, and is
 * audited (release by edge/release on success, failures and the rest here).
 *
 * Trusts nothing in the stored message: the header block is shown in a <pre>
 * through preText (controls and bidi overrides neutralised, HTML escaped);
 * no part is ever rendered, decoded for display or served inline. The .eml
 * goes out as an attachment of type application/octet-stream, only after the
 * confirmation, so a browser never opens the worm on its own.
 */
import { headerBlock } from '../../edge/headers.ts';
import { releaseQuarantined as releaseThroughNextHop, type ReleaseResult } from '../../edge/release.ts';
import { getQuarantined, markDeleted } from '../../store/quarantine.ts';
import { bytes, clip, html, preText, qs, utc, type SafeHtml } from '../html.ts';
import { attachmentsOf, outlineMessage } from '../mime-outline.ts';
import { csrfBody, idParams, noQuery } from '../schemas.ts';
import type { ConsoleContext, ConsolePage } from './registry.ts';
import { VERDICTS } from './dashboard.ts';
import { sql } from 'kysely';

const STATES = ['held', 'released', 'deleted', 'all'] as const;
const ACTIONS = {
  release: { label: 'Release', verb: 'released', warn: 'The whole message, unchanged, goes to its original recipients through the next hop. It was held because it was found' },
  delete: { label: 'Delete', verb: 'deleted', warn: 'The message content is removed for good; its summary stays for the audit log. It was found' },
  download: { label: 'Download .eml', verb: 'downloaded', warn: 'You will save the raw message, which may be live malware, to this computer. Open it only in an isolated analysis environment. It was found' },
} as const;
type QuarantineAction = keyof typeof ACTIONS;

const actionParams = { ...idParams, required: ['id', 'action'], properties: { ...idParams.properties, action: { type: 'string', enum: Object.keys(ACTIONS) } } } as const;

const listQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    state: { type: 'string', enum: STATES, default: 'held' },
    verdict: { type: 'string', enum: ['', ...VERDICTS] },
    q: { type: 'string', maxLength: 200 },
    limit: { type: 'integer', minimum: 1, maximum: 1000, default: 200 },
  },
} as const;

const stateOf = (r: { released_at: Date | null; released_by: string | null; deleted_at: Date | null }) =>
  r.deleted_at ? 'deleted' : r.released_at ? 'released' : 'held';

/** The header block shown is capped: a message whose "headers" are megabytes long is itself the anomaly. */
const MAX_HEADER_SHOWN = 64 * 1024;

export const page: ConsolePage = {
  slot: 'quarantine',
  label: 'Quarantine',
  path: '/quarantine',
  role: 'analyst',
  routes(app, ctx) {
    const db = ctx.db;

    app.get('/quarantine', { config: { role: 'analyst' }, schema: { querystring: listQuery } }, async (request, reply) => {
      const q = request.query as { state: (typeof STATES)[number]; verdict?: string; q?: string; limit: number };
      let query = db
        .selectFrom('quarantine')
        .select(['id', 'created_at', sql<string>`host(client_ip)`.as('client_ip'), 'mail_from', 'rcpt_to', 'subject', 'verdict', 'verdict_detail', 'size', 'released_at', 'released_by', 'deleted_at'])
        .orderBy('created_at', 'desc')
        .limit(q.limit);
      if (q.state === 'held') query = query.where('released_at', 'is', null).where('deleted_at', 'is', null);
      if (q.state === 'released') query = query.where('released_at', 'is not', null);
      if (q.state === 'deleted') query = query.where('deleted_at', 'is not', null);
      if (q.verdict) query = query.where('verdict', '=', q.verdict);
      if (q.q) {
        const like = `%${q.q.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
        query = query.where(sql<boolean>`(mail_from ilike ${like} or subject ilike ${like} or verdict_detail ilike ${like} or exists (select 1 from unnest(rcpt_to) as r(a) where r.a ilike ${like}))`);
      }
      const rows = await query.execute();
      const body = html`
<div class="head"><h1>Quarantine</h1></div>
<form class="filters panel" method="get" action="/quarantine">
  <label>State <select name="state">${STATES.map((s) => html`<option${s === q.state ? html` selected` : ''}>${s}</option>`)}</select></label>
  <label>Verdict <select name="verdict"><option value="">any</option>${VERDICTS.filter((v) => v !== 'clean').map((v) => html`<option${v === q.verdict ? html` selected` : ''}>${v}</option>`)}</select></label>
  <label>Sender, recipient, subject or name <input name="q" value="${q.q ?? ''}" maxlength="200"></label>
  <button type="submit">Filter</button> <a href="/quarantine">Reset</a>
</form>
<p class="meta">${rows.length} message${rows.length === 1 ? '' : 's'}${rows.length === q.limit ? ' (the newest; narrow the filter for older ones)' : ''}.</p>
${rows.length === 0
  ? html`<p class="empty">Nothing ${q.state === 'all' ? 'in the quarantine' : q.state} matches.</p>`
  : html`<table class="grid"><thead><tr><th>Held since (UTC)</th><th>Client</th><th>Sender</th><th>Recipients</th><th>Subject</th><th>Verdict</th><th class="num">Size</th><th>State</th></tr></thead><tbody>
${rows.map((r) => html`<tr>
<td class="nowrap"><a href="/quarantine/${r.id}">${utc(r.created_at)}</a></td>
<td class="mono">${r.client_ip}</td>
<td class="mono">${clip(r.mail_from || '<>', 40)}</td>
<td class="mono">${clip(r.rcpt_to.join(', '), 40)}</td>
<td>${clip(r.subject, 60)}</td>
<td><span class="badge v-${r.verdict}">${r.verdict}</span> <span class="mono">${clip(r.verdict_detail, 30)}</span></td>
<td class="num">${bytes(r.size)}</td>
<td><span class="state s-${stateOf(r)}">${stateOf(r)}</span></td></tr>`)}
</tbody></table>`}`;
      return ctx.render(request, reply, { title: 'Quarantine', slot: 'quarantine', body });
    });

    app.get('/quarantine/:id', { config: { role: 'analyst' }, schema: { params: idParams, querystring: noQuery } }, async (request, reply) => {
      const { id } = request.params as { id: string };
      const row = await getQuarantined(db, id);
      if (!row) return notFound(ctx, request, reply);
      const state = stateOf(row);
      const held = state === 'held';
      const hasRaw = row.raw.byteLength > 0;
      const block = hasRaw ? headerBlock(row.raw) : '';
      const outline = hasRaw ? outlineMessage(row.raw) : { parts: [], truncated: null };
      const { attachments, error } = hasRaw ? await attachmentsOf(row.raw) : { attachments: [], error: null };
      const events = await db.selectFrom('audit').select(['at', 'actor', 'action']).where('target', '=', row.id).orderBy('at').limit(50).execute();
      const admin = ctx.can(request, 'admin');
      const actions: SafeHtml = admin
        ? html`<div class="actions">
  ${held ? html`<a class="button" href="/quarantine/${row.id}/confirm/release">Release…</a>` : ''}
  ${state !== 'deleted' ? html`<a class="button danger" href="/quarantine/${row.id}/confirm/delete">Delete…</a>` : ''}
  ${hasRaw ? html`<a class="button" href="/quarantine/${row.id}/confirm/download">Download .eml…</a>` : ''}
</div>`
        : html`<p class="meta">Release, delete and download need the admin role.</p>`;
      const body = html`
<div class="head"><h1>Quarantined message</h1><span class="state s-${state}">${state}</span><a href="/trace/${row.message_log_id}">Message trace</a></div>
${actions}
<section class="cols">
<div class="panel">
<h2>Summary</h2>
<table class="kv">
<tr><th>Id</th><td class="mono">${row.id}</td></tr>
<tr><th>Held since</th><td>${utc(row.created_at)}</td></tr>
<tr><th>Verdict</th><td><span class="badge v-${row.verdict}">${row.verdict}</span> <span class="mono wrap">${row.verdict_detail ?? ''}</span></td></tr>
<tr><th>Client</th><td class="mono">${row.client_ip}</td></tr>
<tr><th>HELO</th><td class="mono wrap">${row.helo}</td></tr>
<tr><th>MAIL FROM</th><td class="mono wrap">&lt;${row.mail_from}&gt;</td></tr>
<tr><th>RCPT TO</th><td class="mono wrap">${row.rcpt_to.map((r, i) => html`${i ? html`<br>` : ''}&lt;${r}&gt;`)}</td></tr>
<tr><th>Subject</th><td class="wrap">${row.subject ?? html`<span class="none">none</span>`}</td></tr>
<tr><th>Message-ID</th><td class="mono wrap">${row.message_id ?? html`<span class="none">none</span>`}</td></tr>
<tr><th>Size</th><td>${bytes(row.size)}</td></tr>
<tr><th>SHA-256</th><td class="mono wrap">${row.sha256}</td></tr>
${row.released_at ? html`<tr><th>Released</th><td>${utc(row.released_at)} by ${row.released_by}</td></tr>` : ''}
${row.deleted_at ? html`<tr><th>Deleted</th><td>${utc(row.deleted_at)}</td></tr>` : ''}
</table>
</div>
<div class="panel">
<h2>Attachments</h2>
${error ? html`<p class="problem">${error}</p>` : ''}
${attachments.length === 0
  ? html`<p class="empty">${hasRaw ? 'No attachments.' : 'The content was deleted.'}</p>`
  : html`<table class="grid"><thead><tr><th>Name</th><th>Type</th><th class="num">Size</th><th>SHA-256</th></tr></thead><tbody>
${attachments.map((a) => html`<tr><td class="mono wrap">${a.filename ?? html`<span class="none">(no name)</span>`}</td><td class="mono">${a.type}</td><td class="num">${bytes(a.bytes)}</td><td class="mono hash">${a.sha256}</td></tr>`)}
</tbody></table>`}
<h2>MIME structure</h2>
${outline.parts.length === 0
  ? html`<p class="empty">—</p>`
  : html`<table class="grid mime"><thead><tr><th>Part</th><th>Encoding</th><th>Disposition</th><th>File name (as written)</th><th class="num">Size</th></tr></thead><tbody>
${outline.parts.map((p) => html`<tr><td class="mono"><span class="indent">${'· '.repeat(p.depth)}</span>${p.type}</td><td class="mono">${p.encoding}</td><td>${p.disposition}</td><td class="mono wrap">${clip(p.filename, 80)}</td><td class="num">${bytes(p.bytes)}</td></tr>`)}
</tbody></table>`}
${outline.truncated ? html`<p class="meta">${outline.truncated}</p>` : ''}
</div>
</section>
<section class="panel">
<h2>Header block</h2>
${hasRaw ? html`<pre class="headers">${preText(block.length > MAX_HEADER_SHOWN ? `${block.slice(0, MAX_HEADER_SHOWN)}\n[… ${block.length - MAX_HEADER_SHOWN} more characters not shown]` : block)}</pre>` : html`<p class="empty">The content was deleted.</p>`}
</section>
<section class="panel">
<h2>History</h2>
${events.length === 0 ? html`<p class="empty">No action yet.</p>` : html`<ul class="plain">${events.map((e) => html`<li>${utc(e.at)} — ${e.actor}: ${e.action}</li>`)}</ul>`}
</section>`;
      return ctx.render(request, reply, { title: 'Quarantined message', slot: 'quarantine', body });
    });

    // The confirmation page: reading it changes nothing; the POST it holds does.
    app.get('/quarantine/:id/confirm/:action', { config: { role: 'admin' }, schema: { params: actionParams, querystring: noQuery } }, async (request, reply) => {
      const { id, action } = request.params as { id: string; action: QuarantineAction };
      const row = await getQuarantined(db, id);
      if (!row) return notFound(ctx, request, reply);
      const a = ACTIONS[action];
      const body = html`
<section class="panel narrow confirm">
<h1>${a.label}?</h1>
<table class="kv">
<tr><th>Sender</th><td class="mono wrap">&lt;${row.mail_from}&gt;</td></tr>
<tr><th>Recipients</th><td class="mono wrap">${clip(row.rcpt_to.join(', '), 300)}</td></tr>
<tr><th>Subject</th><td class="wrap">${clip(row.subject, 200)}</td></tr>
<tr><th>Size</th><td>${bytes(row.size)}</td></tr>
</table>
<p class="warn">${a.warn} <b>${row.verdict}${row.verdict_detail ? html`: ${clip(row.verdict_detail, 120)}` : ''}</b>.</p>
<form method="post" action="/quarantine/${row.id}/${action}">
  ${ctx.csrfField(request, reply)}
  <button type="submit" class="${action === 'delete' ? 'danger' : ''}">${a.label}</button>
  <a href="/quarantine/${row.id}">Cancel</a>
</form>
</section>`;
      return ctx.render(request, reply, { title: `${a.label}?`, slot: 'quarantine', body });
    });

    const postOptions = { config: { role: 'admin' as const }, schema: { params: idParams, querystring: noQuery, body: csrfBody } };

    app.post('/quarantine/:id/release', postOptions, async (request, reply) => {
      const { id } = request.params as { id: string };
      const release = ctx.deps.releaseQuarantined ?? (ctx.deps.config ? (qid: string, actor: string) => releaseThroughNextHop(db, ctx.deps.config!, qid, actor) : undefined);
      if (!release) return result(ctx, request, reply, id, 503, 'Release is not available: this node was started without its configuration (no next hop known).');
      let outcome: ReleaseResult;
      try {
        outcome = await release(id, ctx.actor(request));
      } catch (err) {
        request.log.error({ err, id }, 'release failed');
        outcome = { ok: false, reply: 'the release failed on this node (see its log)', refused: [] };
      }
      // A successful release is audited by the release itself (edge/release), in the same step as the claim.
      if (!outcome.ok) await ctx.audit(request, 'quarantine.release-failed', id, { reply: outcome.reply.slice(0, 300) });
      const refused = outcome.refused.length ? ` Refused by the next hop: ${outcome.refused.join(', ')}.` : '';
      return result(ctx, request, reply, id, outcome.ok ? 200 : 409, `${outcome.ok ? 'Released' : 'Not released'}: ${outcome.reply}.${refused}`);
    });

    app.post('/quarantine/:id/delete', postOptions, async (request, reply) => {
      const { id } = request.params as { id: string };
      if (!(await getQuarantined(db, id))) return notFound(ctx, request, reply);
      if (!(await markDeleted(db, id))) return result(ctx, request, reply, id, 409, 'Already deleted.');
      await ctx.audit(request, 'quarantine.delete', id);
      return result(ctx, request, reply, id, 200, 'Deleted. The summary stays for the audit log.');
    });

    app.post('/quarantine/:id/download', postOptions, async (request, reply) => {
      const { id } = request.params as { id: string };
      const row = await getQuarantined(db, id);
      if (!row) return notFound(ctx, request, reply);
      if (row.raw.byteLength === 0) return result(ctx, request, reply, id, 410, 'The content was deleted; there is nothing to download.');
      await ctx.audit(request, 'quarantine.download', id, { sha256: row.sha256 });
      // octet-stream + attachment + nosniff (helmet): the browser saves it, never opens or renders it.
      return reply
        .type('application/octet-stream')
        .header('content-disposition', `attachment; filename="quarantine-${row.id}.eml"`)
        .send(row.raw);
    });
  },
};

function notFound(ctx: ConsoleContext, request: Parameters<ConsoleContext['render']>[0], reply: Parameters<ConsoleContext['render']>[1]) {
  return ctx.render(request, reply, { title: 'Not found', slot: 'quarantine', status: 404, body: html`<p class="empty">No quarantined message with that id. <a href="/quarantine">Back to the quarantine</a></p>` });
}

function result(ctx: ConsoleContext, request: Parameters<ConsoleContext['render']>[0], reply: Parameters<ConsoleContext['render']>[1], id: string, status: number, message: string) {
  const body = html`<section class="panel narrow"><p class="${status < 300 ? 'done' : 'problem'}" role="status">${message}</p><p><a href="/quarantine/${id}">Back to the message</a> · <a href="/quarantine${qs({})}">Quarantine</a></p></section>`;
  return ctx.render(request, reply, { title: 'Quarantine', slot: 'quarantine', status, body });
}
