/*
 * The customer portal: hostile header lines shown as inert text, times in the
 * customer's zone, wrong/expired tokens, guessing rate-limited, CSRF, the
 * attestation releasing the line, and no button once the budget is spent.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import fastifyFormbody from '@fastify/formbody';
import { DEFAULT_SETTINGS, ENFORCE_JOB, getIncident, issuePortalToken, recordEvidence, transition } from '../../src/desk/incidents.ts';
import { registerPortal } from '../../src/desk/portal.ts';
import { openTestStore, STORE_KINDS } from '../helpers/pg.ts';

const HOSTILE = [
  'Received: from pc (dsl-7.example.net [192.0.2.7]) by mx.example.org',
  'Subject: <script>alert(1)</script><img src=x onerror=alert(2)>',
  'From: "</pre><b>x</b>" <a@b.example>',
  'X-Bidi: \u202Egnp.exe',
].join('\r\n');

function form(fields: Record<string, string>): string {
  return new URLSearchParams(fields).toString();
}

for (const kind of STORE_KINDS) {
  describe(`portal on ${kind}`, () => {
    let h: Awaited<ReturnType<typeof openTestStore>>;
    let app: FastifyInstance;
    let now = new Date('2026-03-01T10:00:00Z');
    before(async () => {
      h = await openTestStore(kind, 'bs_portal');
      app = Fastify();
      await app.register(fastifyFormbody);
      registerPortal(app, { db: h.store.db, settings: DEFAULT_SETTINGS, key: 'test-key-0123456789', maxGuesses: 5, clock: () => now });
      await app.ready();
    });
    after(async () => {
      await app.close();
      await h.close();
    });

    async function restrictedIncident(customerId: string, language = 'de'): Promise<{ id: string; token: string }> {
      const db = h.store.db;
      const { incidentId } = await recordEvidence(db, { customerId, source: 'arf', ip: '192.0.2.7', observedAt: new Date('2026-03-01T09:13:14Z'), summary: 'spam <b>run</b>', headers: HOSTILE, malware: ['Win.Worm.Mydoom-<i>'] }, now);
      await db.updateTable('incidents').set({ contact_snapshot: JSON.stringify({ name: 'Erika', email: 'e@example.net', language, time_zone: 'Europe/Berlin' }) }).where('id', '=', incidentId).execute();
      assert.equal((await transition(db, incidentId, 'notice-sent', 'system', now)).ok, true);
      assert.equal((await transition(db, incidentId, 'grace-expired', 'timer', new Date(now.getTime() + 73 * 3_600_000))).ok, true);
      return { id: incidentId, token: await issuePortalToken(db, incidentId, now, DEFAULT_SETTINGS.tokenTtlMs) };
    }

    test('evidence shown as inert text, times in the customer zone; attestation with CSRF releases the line', async () => {
      const { id, token } = await restrictedIncident('p1');
      const res = await app.inject({ url: `/portal/${token}` });
      assert.equal(res.statusCode, 200);
      assert.doesNotMatch(res.body, /<script>|<img|<b>x<\/b>|<i>|\u202E/);
      assert.match(res.body, /&lt;script&gt;alert\(1\)&lt;\/script&gt;&lt;img src=x onerror=alert\(2\)&gt;/);
      assert.match(res.body, /&lt;\/pre&gt;&lt;b&gt;x&lt;\/b&gt;/);
      assert.match(res.body, /Win\.Worm\.Mydoom-&lt;i&gt;/);
      assert.match(res.body, /2026-03-01 10:13:14 (CET|GMT\+1)/, 'time in Europe/Berlin');
      assert.match(res.body, /Alle Geräte an diesem Anschluss wurden bereinigt/);
      const cookie = /bs_portal_csrf=([^;]+)/.exec(String(res.headers['set-cookie']))![1]!;
      const csrf = /name="csrf" value="([^"]+)"/.exec(res.body)![1]!;

      // no cookie, wrong field, cookie of another visitor: refused
      const post = (body: string, c?: string) => app.inject({ method: 'POST', url: `/portal/${token}/attest`, payload: body, headers: { 'content-type': 'application/x-www-form-urlencoded', ...(c ? { cookie: `bs_portal_csrf=${c}` } : {}) } });
      assert.equal((await post(form({ csrf, confirm: 'yes' }))).statusCode, 403);
      assert.equal((await post(form({ csrf: `${csrf}x`, confirm: 'yes' }), cookie)).statusCode, 403);
      assert.equal((await post(form({ csrf, confirm: 'yes' }), 'another-visitors-cookie')).statusCode, 403);
      assert.equal((await getIncident(h.store.db, id))!.incident.state, 'restricted');
      // without the box ticked: not attested
      assert.equal((await post(form({ csrf }), cookie)).statusCode, 400);

      const ok = await post(form({ csrf, confirm: 'yes' }), cookie);
      assert.equal(ok.statusCode, 200);
      assert.match(ok.body, /Einschränkung wird innerhalb einer Minute aufgehoben/);
      const after = (await getIncident(h.store.db, id))!;
      assert.equal(after.incident.state, 'probation');
      assert.equal(after.incident.self_releases_left, 1);
      assert.equal(after.incident.restriction_level, null);
      assert.equal(after.incident.portal_token_hash, null, 'token revoked');
      assert.deepEqual(after.events.slice(-2).map((e) => `${e.from_state}->${e.to_state}:${e.actor}`), ['restricted->attested:customer-portal', 'attested->probation:customer-portal']);
      assert.ok(await h.store.db.selectFrom('jobs').select('id').where('kind', '=', ENFORCE_JOB).where('dedupe_key', 'like', `desk-enforce:${id}:%`).executeTakeFirst());
      // the used link no longer opens anything
      assert.equal((await app.inject({ url: `/portal/${token}` })).statusCode, 404);
    });

    test('no self-release left: no button, and a forged POST is refused', async () => {
      const { id, token } = await restrictedIncident('p2', 'en');
      await h.store.db.updateTable('incidents').set({ self_releases_left: 0 }).where('id', '=', id).execute();
      const res = await app.inject({ url: `/portal/${token}` });
      assert.equal(res.statusCode, 200);
      assert.doesNotMatch(res.body, /<form|<button/);
      assert.match(res.body, /can no longer be lifted from this page/);
      const cookie = /bs_portal_csrf=([^;]+)/.exec(String(res.headers['set-cookie']))![1]!;
      const { createHmac } = await import('node:crypto');
      const { hashToken } = await import('../../src/desk/incidents.ts');
      const csrf = createHmac('sha256', 'test-key-0123456789').update(`portal-csrf\n${cookie}\n${hashToken(token)}`).digest('base64url');
      const post = await app.inject({ method: 'POST', url: `/portal/${token}/attest`, payload: form({ csrf, confirm: 'yes' }), headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: `bs_portal_csrf=${cookie}` } });
      assert.equal(post.statusCode, 403);
      assert.equal((await getIncident(h.store.db, id))!.incident.state, 'restricted');
    });

    test('expired token: 410; wrong tokens: 404, then 429 after the limit', async () => {
      const { id, token } = await restrictedIncident('p3', 'en');
      await h.store.db.updateTable('incidents').set({ portal_token_expires: new Date(now.getTime() - 1) }).where('id', '=', id).execute();
      assert.equal((await app.inject({ url: `/portal/${token}` })).statusCode, 410);
      const wrong = ['x', 'A'.repeat(43), `${token.slice(0, 42)}${token.endsWith('A') ? 'B' : 'A'}`, '../../etc/passwd', 'A'.repeat(44)];
      const codes = [];
      for (const w of wrong) codes.push((await app.inject({ url: `/portal/${encodeURIComponent(w)}`, remoteAddress: '198.51.100.9' })).statusCode);
      assert.deepEqual(codes, [404, 404, 404, 404, 404]);
      assert.equal((await app.inject({ url: `/portal/${'B'.repeat(43)}`, remoteAddress: '198.51.100.9' })).statusCode, 429);
      // even the right token is refused to the guesser for the window; another address is not affected
      assert.equal((await app.inject({ url: `/portal/${token}`, remoteAddress: '198.51.100.9' })).statusCode, 429);
      assert.equal((await app.inject({ url: `/portal/${'B'.repeat(43)}`, remoteAddress: '198.51.100.10' })).statusCode, 404);
      now = new Date(now.getTime() + 11 * 60_000);
      assert.equal((await app.inject({ url: `/portal/${'B'.repeat(43)}`, remoteAddress: '198.51.100.9' })).statusCode, 404, 'a new window');
    });
  });
}
