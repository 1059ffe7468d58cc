/*
 * web/pages/audit — the audit log: who did what to which object, newest
 * first, filtered by actor, action or target, paged by time.
 *
 * Read-only. Actors and targets are ours (user names, ids), details may
 * carry words from a next hop's reply: everything is escaped and cut.
 */
import { sql } from 'kysely';
import { clip, html, qs, utc } from '../html.ts';
import type { ConsolePage } from './registry.ts';

const auditQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    actor: { type: 'string', maxLength: 200 },
    action: { type: 'string', maxLength: 100 },
    target: { type: 'string', maxLength: 200 },
    before: { type: 'string', maxLength: 40, pattern: '^\\d{4}-\\d{2}-\\d{2}T[0-9:.]+Z$' },
    limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
  },
} as const;

export const page: ConsolePage = {
  slot: 'audit',
  label: 'Audit log',
  path: '/audit',
  role: 'analyst',
  routes(app, ctx) {
    app.get('/audit', { config: { role: 'analyst' }, schema: { querystring: auditQuery } }, async (request, reply) => {
      const q = request.query as { actor?: string; action?: string; target?: string; before?: string; limit: number };
      let query = ctx.db.selectFrom('audit').select(['at', 'actor', 'action', 'target', 'detail']).orderBy('at', 'desc').limit(q.limit);
      if (q.actor) query = query.where('actor', '=', q.actor);
      if (q.action) query = query.where(sql<boolean>`action like ${`${q.action.replace(/[\\%_]/g, (c) => `\\${c}`)}%`}`);
      if (q.target) query = query.where('target', '=', q.target);
      if (q.before && !Number.isNaN(Date.parse(q.before))) query = query.where('at', '<', new Date(q.before));
      const rows = await query.execute();
      const last = rows.at(-1);
      const body = html`
<div class="head"><h1>Audit log</h1></div>
<form class="filters panel" method="get" action="/audit">
  <label>Actor <input name="actor" value="${q.actor ?? ''}" placeholder="web:alice, cli:root" maxlength="200"></label>
  <label>Action starts with <input name="action" value="${q.action ?? ''}" placeholder="quarantine." maxlength="100"></label>
  <label>Target <input name="target" value="${q.target ?? ''}" maxlength="200"></label>
  <button type="submit">Filter</button> <a href="/audit">Reset</a>
</form>
${rows.length === 0
  ? html`<p class="empty">No entries.</p>`
  : html`<table class="grid"><thead><tr><th>At (UTC)</th><th>Actor</th><th>Action</th><th>Target</th><th>Detail</th></tr></thead><tbody>
${rows.map((r) => html`<tr><td class="nowrap">${utc(r.at)}</td><td class="mono">${clip(r.actor, 40)}</td><td class="mono">${clip(r.action, 40)}</td><td class="mono">${clip(r.target, 40)}</td><td class="mono">${clip(JSON.stringify(r.detail ?? {}), 120)}</td></tr>`)}
</tbody></table>
${rows.length === q.limit && last ? html`<p><a href="/audit${qs({ actor: q.actor, action: q.action, target: q.target, before: new Date(last.at).toISOString(), limit: q.limit })}">Older entries →</a></p>` : ''}`}`;
      return ctx.render(request, reply, { title: 'Audit log', slot: 'audit', body });
    });
  },
};
