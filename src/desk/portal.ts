/*
 * desk/portal — the customer's page about their incident (R9, RFC 6561 §7):
 * GET /portal/:token shows the evidence (header lines as inert text, malware
 * names, times in the customer's zone), cleanup guidance and, while the line
 * is restricted and self-releases are left, the attestation form; POST
 * /portal/:token/attest records "all machines behind this connection have
 * been cleaned", which moves the incident to attested → probation and
 * releases the restriction (the publish job follows at once).
 *
 * The token is the only key: 32 random bytes (base64url, 43 characters) in
 * the notice link, only its SHA-256 in the store, compared in constant time,
 * expiring (desk.portal.tokenTtl), revoked on release. Wrong tokens are
 * counted per client address in the store (desk_form_throttle, key
 * "portal:<ip>"), so guessing is rate-limited across nodes (429).
 *
 * CSRF, separate from the console's session: a random cookie (HttpOnly,
 * SameSite=Strict, path /portal) and a form field that is the HMAC of that
 * cookie and the token's hash under a key kept in the store. No script, no
 * inline style; every value is escaped by web/html.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { sql } from 'kysely';
import { storeNow } from '../store/clock.ts';
import type { Db } from '../store/store.ts';
import { html, preText, type SafeHtml } from '../web/html.ts';
import { timeInZone } from './zones.ts';
import { hashToken, transition, type IncidentSettings } from './incidents.ts';
import { canSelfRelease } from './lifecycle.ts';

export interface PortalDeps {
  db: Db;
  settings: IncidentSettings;
  /** Key for the CSRF field's HMAC (web/auth/sessions sharedSecret 'portal-csrf-key'). */
  key: string;
  /** Wrong tokens per client address and 10 minutes before 429. */
  maxGuesses?: number;
  /** A fake clock (tests); absent, the store's. */
  clock?: () => Date;
  /** Called after a release so the enforcement outputs follow at once (the job is queued either way). */
  onRelease?: (incidentId: string) => Promise<void>;
  secureCookies?: boolean;
}

const TOKEN = /^[A-Za-z0-9_-]{43}$/;
const COOKIE = 'bs_portal_csrf';
const WINDOW_MS = 10 * 60_000;

const TEXT = {
  en: {
    title: 'Your connection',
    states: {
      suspected: 'We have seen signs of an infection on your connection.',
      notified: 'We have seen signs of an infection on your connection. Please clean your devices before the date below.',
      restricted: 'Your connection is restricted because of an infection.',
      attested: 'Thank you: you have confirmed the cleanup.',
      probation: 'Thank you: the restriction has been lifted. We keep watching for a while.',
      closed: 'This case is closed.',
      'evidence-hold': 'This case is being reviewed by our abuse desk.',
    } as Record<string, string>,
    evidence: 'What we saw',
    when: 'Time',
    address: 'Address',
    what: 'What',
    headers: 'Header lines of the message (no content)',
    grace: 'Clean your devices by',
    guidance: 'How to clean up',
    steps: [
      'Disconnect devices you do not recognise or no longer use.',
      'Update the operating system of every computer, phone and tablet behind this connection.',
      'Run a full scan with up-to-date antivirus software on every computer; remove what it finds.',
      'Change the passwords of your mail accounts and of your router.',
      'Update your router\'s firmware and switch off remote administration you do not need.',
    ],
    attest: 'All machines behind this connection have been cleaned.',
    button: 'Confirm and lift the restriction',
    left: (n: number) => `You can lift the restriction yourself ${n} more time${n === 1 ? '' : 's'} for this case.`,
    none: 'The restriction can no longer be lifted from this page. Please contact our abuse desk by replying to our message.',
    released: 'Thank you. The restriction is lifted within a minute. If the infection is seen again, your connection will be restricted again.',
  },
  de: {
    title: 'Ihr Anschluss',
    states: {
      suspected: 'An Ihrem Anschluss gibt es Hinweise auf eine Infektion.',
      notified: 'An Ihrem Anschluss gibt es Hinweise auf eine Infektion. Bitte bereinigen Sie Ihre Geräte bis zum unten genannten Zeitpunkt.',
      restricted: 'Ihr Anschluss ist wegen einer Infektion eingeschränkt.',
      attested: 'Danke: Sie haben die Bereinigung bestätigt.',
      probation: 'Danke: Die Einschränkung ist aufgehoben. Wir beobachten den Anschluss noch eine Weile.',
      closed: 'Dieser Fall ist abgeschlossen.',
      'evidence-hold': 'Dieser Fall wird von unserer Abuse-Abteilung geprüft.',
    } as Record<string, string>,
    evidence: 'Was wir gesehen haben',
    when: 'Zeit',
    address: 'Adresse',
    what: 'Was',
    headers: 'Kopfzeilen der Nachricht (ohne Inhalt)',
    grace: 'Bitte bereinigen bis',
    guidance: 'So bereinigen Sie',
    steps: [
      'Trennen Sie Geräte, die Sie nicht kennen oder nicht mehr nutzen.',
      'Aktualisieren Sie das Betriebssystem aller Computer, Telefone und Tablets an diesem Anschluss.',
      'Prüfen Sie jeden Computer vollständig mit aktueller Antivirensoftware und entfernen Sie, was sie findet.',
      'Ändern Sie die Passwörter Ihrer Mailkonten und Ihres Routers.',
      'Aktualisieren Sie die Firmware Ihres Routers und schalten Sie nicht benötigte Fernwartung ab.',
    ],
    attest: 'Alle Geräte an diesem Anschluss wurden bereinigt.',
    button: 'Bestätigen und Einschränkung aufheben',
    left: (n: number) => `Sie können die Einschränkung in diesem Fall noch ${n}-mal selbst aufheben.`,
    none: 'Die Einschränkung kann nicht mehr über diese Seite aufgehoben werden. Bitte wenden Sie sich an unsere Abuse-Abteilung, indem Sie auf unsere Nachricht antworten.',
    released: 'Danke. Die Einschränkung wird innerhalb einer Minute aufgehoben. Wird die Infektion erneut festgestellt, wird der Anschluss wieder eingeschränkt.',
  },
};
type Texts = (typeof TEXT)['en'];

function page(lang: string, title: string, body: SafeHtml): string {
  return html`<!doctype html>
<html lang="${lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<meta name="robots" content="noindex">
<title>${title}</title>
<link rel="stylesheet" href="/assets/console.css">
</head>
<body>
<main class="portal">
${body}
</main>
</body>
</html>
`.value;
}

function cookieOf(request: FastifyRequest, name: string): string | null {
  for (const part of String(request.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return v.join('=');
  }
  return null;
}

const csrfFor = (key: string, cookie: string, tokenHash: string) => createHmac('sha256', key).update(`portal-csrf\n${cookie}\n${tokenHash}`).digest('base64url');

function equalStrings(a: string, b: string): boolean {
  const ba = Buffer.from(a);
  const bb = Buffer.from(b);
  return ba.length === bb.length && timingSafeEqual(ba, bb);
}

export function registerPortal(app: FastifyInstance, deps: PortalDeps): void {
  // The throttle's windows and the links' expiry are the store's time, as every node reads them; deps.clock is a test's.
  const clock = async () => deps.clock?.() ?? (await storeNow(deps.db));
  const maxGuesses = deps.maxGuesses ?? 20;

  async function guesses(client: string, now: Date, count: boolean): Promise<number> {
    const windowStart = new Date(Math.floor(now.getTime() / WINDOW_MS) * WINDOW_MS);
    const key = `portal:${client}`.slice(0, 100);
    if (count) {
      const r = await deps.db
        .insertInto('desk_form_throttle')
        .values({ client: key, window_start: windowStart, hits: 1 })
        .onConflict((oc) => oc.columns(['client', 'window_start']).doUpdateSet({ hits: sql`desk_form_throttle.hits + 1` }))
        .returning('hits')
        .executeTakeFirstOrThrow();
      return r.hits;
    }
    const r = await deps.db.selectFrom('desk_form_throttle').select('hits').where('client', '=', key).where('window_start', '=', windowStart).executeTakeFirst();
    return r?.hits ?? 0;
  }

  /** The incident the token opens, or the answer to send instead. */
  async function open(request: FastifyRequest, reply: FastifyReply, now: Date) {
    const token = String((request.params as { token?: string }).token ?? '');
    if ((await guesses(request.ip, now, false)) >= maxGuesses) {
      reply.status(429).header('retry-after', String(WINDOW_MS / 1000)).type('text/html; charset=utf-8').send(page('en', 'Too many attempts', html`<h1>Too many attempts</h1><p>Please try again later.</p>`));
      return null;
    }
    const hash = TOKEN.test(token) ? hashToken(token) : null;
    const incident = hash ? await deps.db.selectFrom('incidents').selectAll().where('portal_token_hash', '=', hash).executeTakeFirst() : undefined;
    if (!incident || !hash || !incident.portal_token_hash || !equalStrings(incident.portal_token_hash, hash)) {
      await guesses(request.ip, now, true);
      reply.status(404).type('text/html; charset=utf-8').send(page('en', 'Link not valid', html`<h1>This link is not valid</h1><p>Please use the link in the most recent message from your provider.</p>`));
      return null;
    }
    if (!incident.portal_token_expires || new Date(incident.portal_token_expires) <= now) {
      reply.status(410).type('text/html; charset=utf-8').send(page('en', 'Link expired', html`<h1>This link has expired</h1><p>Please reply to your provider's message to get a new one.</p>`));
      return null;
    }
    const contact = incident.contact_snapshot as { name?: string; language?: string; time_zone?: string };
    const lang = String(contact.language ?? '').toLowerCase().slice(0, 2) === 'de' ? 'de' : 'en';
    return { incident, hash, contact, lang, t: TEXT[lang] as Texts, zone: contact.time_zone ?? 'UTC' };
  }

  app.get('/portal/:token', async (request, reply) => {
    const now = await clock();
    const o = await open(request, reply, now);
    if (!o) return reply;
    const { incident, hash, lang, t, zone } = o;
    const evidence = await deps.db.selectFrom('incident_evidence').selectAll().where('incident_id', '=', incident.id).orderBy('observed_at', 'desc').limit(20).execute();
    const cookie = cookieOf(request, COOKIE) ?? randomBytes(24).toString('base64url');
    reply.header('set-cookie', `${COOKIE}=${cookie}; Path=/portal; HttpOnly; SameSite=Strict${deps.secureCookies ? '; Secure' : ''}`);
    reply.header('cache-control', 'no-store');
    const zoned = (d: Date | string) => timeInZone(new Date(d), zone).when;
    const selfRelease = canSelfRelease(incident.state, incident.self_releases_left);
    const body = html`<h1>${t.title}</h1>
<p class="state state-${incident.state}">${t.states[incident.state] ?? incident.state}</p>
${incident.state === 'notified' && incident.grace_until ? html`<p>${t.grace}: <strong>${zoned(incident.grace_until)}</strong></p>` : ''}
<h2>${t.evidence}</h2>
<table>
<thead><tr><th>${t.when}</th><th>${t.address}</th><th>${t.what}</th></tr></thead>
<tbody>
${evidence.map(
  (e) => html`<tr><td>${zoned(e.observed_at)}</td><td>${e.ip}</td><td>${(e.malware ?? []).length ? (e.malware ?? []).join(', ') : e.summary}</td></tr>
${e.headers ? html`<tr><td colspan="3"><details><summary>${t.headers}</summary><pre>${preText(e.headers)}</pre></details></td></tr>\n` : ''}`,
)}
</tbody>
</table>
<h2>${t.guidance}</h2>
<ol>${t.steps.map((s) => html`<li>${s}</li>`)}</ol>
${incident.state === 'restricted'
  ? selfRelease
    ? html`<form method="post" action="/portal/${(request.params as { token: string }).token}/attest">
<input type="hidden" name="csrf" value="${csrfFor(deps.key, cookie, hash)}">
<p><label><input type="checkbox" name="confirm" value="yes" required> ${t.attest}</label></p>
<p>${t.left(incident.self_releases_left)}</p>
<p><button type="submit">${t.button}</button></p>
</form>`
    : html`<p class="no-self-release">${t.none}</p>`
  : ''}`;
    return reply.type('text/html; charset=utf-8').send(page(lang, t.title, body));
  });

  app.post('/portal/:token/attest', async (request, reply) => {
    const now = await clock();
    const o = await open(request, reply, now);
    if (!o) return reply;
    const { incident, hash, lang, t } = o;
    const form = (request.body ?? {}) as Record<string, unknown>;
    const cookie = cookieOf(request, COOKIE);
    const csrf = typeof form.csrf === 'string' ? form.csrf : '';
    if (!cookie || !csrf || !equalStrings(csrf, csrfFor(deps.key, cookie, hash))) {
      return reply.status(403).type('text/html; charset=utf-8').send(page(lang, t.title, html`<h1>${t.title}</h1><p>This form has expired. Please go back, reload the page and try again.</p>`));
    }
    if (form.confirm !== 'yes') return reply.status(400).type('text/html; charset=utf-8').send(page(lang, t.title, html`<h1>${t.title}</h1><p>${t.attest}</p>`));
    if (!canSelfRelease(incident.state, incident.self_releases_left)) {
      return reply.status(403).type('text/html; charset=utf-8').send(page(lang, t.title, html`<h1>${t.title}</h1><p>${incident.state === 'restricted' ? t.none : t.states[incident.state] ?? ''}</p>`));
    }
    // Dated inside its own transaction by the store (or the test's clock), as every transition is.
    const r = await transition(deps.db, incident.id, 'attest', 'customer-portal', deps.clock?.(), deps.settings, { client: request.ip });
    if (!r.ok) return reply.status(409).type('text/html; charset=utf-8').send(page(lang, t.title, html`<h1>${t.title}</h1><p>${t.none}</p>`));
    await deps.onRelease?.(incident.id);
    return reply.type('text/html; charset=utf-8').send(page(lang, t.title, html`<h1>${t.title}</h1><p>${t.released}</p>`));
  });
}
