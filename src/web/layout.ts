/*
 * web/layout — the frame around every console page: head (our stylesheet and
 * scripts only, all from /assets), the navigation for the user's role, who is
 * logged in, and a logout form. Also the bare frame for the login and error
 * pages, which have no user.
 *
 * Trusts: the title and body as SafeHtml built by the pages; the user name
 * is escaped like anything else.
 */
import type { FastifyReply } from 'fastify';
import { html, type SafeHtml } from './html.ts';
import { NAV_SLOTS, roleAtLeast, type ConsolePage, type NavSlot } from './pages/registry.ts';
import type { Role } from './auth/users.ts';

export interface Frame {
  title: string;
  body: SafeHtml;
  nodeName: string;
  user?: { name: string; role: Role; csrf: SafeHtml };
  pages?: ConsolePage[];
  slot?: NavSlot;
  /** Extra scripts (paths under /assets) this page needs. */
  scripts?: string[];
}

export function frame(f: Frame): string {
  const nav = f.user
    ? // A slot is a place in the navigation; a role may put more than one page there (they keep their registration order).
      NAV_SLOTS.flatMap((slot) =>
        (f.pages ?? [])
          .filter((page) => page.slot === slot && roleAtLeast(f.user!.role, page.role))
          .map((page) => html`<a href="${page.path}"${slot === f.slot ? html` class="on" aria-current="page"` : ''}>${page.label}</a>`),
      )
    : [];
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${f.title} · Backstop</title>
<link rel="stylesheet" href="/assets/console.css">
${(f.scripts ?? []).map((s) => html`<script src="${s}" defer></script>\n`)}</head>
<body>
<header class="top">
  <a class="brand" href="/">Backstop</a><span class="node">${f.nodeName}</span>
  <nav>${nav}</nav>
  ${f.user
    ? html`<form class="who" method="post" action="/logout">${f.user.csrf}<span>${f.user.name}</span> <span class="role">${f.user.role}</span> <button type="submit" class="link">Log out</button></form>`
    : ''}
</header>
<main>
${f.body}
</main>
</body>
</html>
`.value;
}

/** A page for an error, without the navigation (the visitor may have no session). */
export function sendErrorPage(reply: FastifyReply, status: number, message: string, nodeName: string): FastifyReply {
  const title = status === 403 ? 'Not allowed' : status === 404 ? 'Not found' : status === 429 ? 'Too many attempts' : status >= 500 ? 'Error' : 'Cannot do that';
  const body = html`<section class="panel narrow"><h1>${title}</h1><p>${message}</p><p><a href="/">Back to the dashboard</a></p></section>`;
  return reply.status(status).type('text/html; charset=utf-8').send(frame({ title, body, nodeName }));
}

