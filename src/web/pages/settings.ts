/*
 * web/pages/settings — what this node runs with: version, node name, store
 * kind, the effective configuration (secrets masked exactly as `backstop
 * config check` masks them) and, for admins, the console's users.
 *
 * Read-only: the configuration is a file the operator owns; the console does
 * not write it. Must never: show a password, key or URL userinfo.
 */
import { stringify } from 'yaml';
import { maskSecrets } from '../../config/mask.ts';
import { version } from '../../version.ts';
import { listUsers } from '../auth/users.ts';
import { html, preText, utc } from '../html.ts';
import type { ConsolePage } from './registry.ts';

export const page: ConsolePage = {
  slot: 'settings',
  label: 'Settings',
  path: '/settings',
  role: 'analyst',
  routes(app, ctx) {
    app.get('/settings', { config: { role: 'analyst' }, schema: { querystring: { type: 'object', additionalProperties: false, properties: {} } } }, async (request, reply) => {
      const { deps } = ctx;
      const admin = ctx.can(request, 'admin');
      const users = admin ? await listUsers(ctx.db) : [];
      const body = html`
<div class="head"><h1>Settings</h1></div>
<section class="cols">
<div class="panel">
<h2>This node</h2>
<table class="kv">
<tr><th>Version</th><td class="mono">Backstop ${version}</td></tr>
<tr><th>Node</th><td class="mono">${deps.nodeName}</td></tr>
<tr><th>Store</th><td class="mono">${deps.store.kind} ${String(maskSecrets(deps.store.url))}</td></tr>
<tr><th>Node.js</th><td class="mono">${process.version}</td></tr>
</table>
${admin
  ? html`<h2>Console users</h2>
<table class="grid"><thead><tr><th>User</th><th>Role</th><th>State</th><th>Created (UTC)</th></tr></thead><tbody>
${users.map((u) => html`<tr><td class="mono">${u.name}</td><td>${u.role}</td><td>${u.disabled ? 'disabled' : 'active'}</td><td>${utc(u.createdAt)}</td></tr>`)}
</tbody></table>
<p class="meta">Users are managed on a node with <code>backstop user add|passwd|disable|enable|remove|list</code>.</p>`
  : ''}
</div>
<div class="panel">
<h2>Effective configuration</h2>
${deps.config
  ? html`<pre class="config">${preText(stringify(maskSecrets(deps.config)))}</pre>`
  : html`<p class="empty">This node was started without handing its configuration to the console.</p>`}
</div>
</section>`;
      return ctx.render(request, reply, { title: 'Settings', slot: 'settings', body });
    });
  },
};
