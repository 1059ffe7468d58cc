/*
 * A whole incident lifecycle under a fake clock, on PGlite and PostgreSQL,
 * with real attribution (a dynamic lease), the gateway's decided hook as the
 * source of evidence, notices delivered to Postfix's smtp-sink, the
 * enforcement set loaded into a real nft in a network namespace, the
 * smarthost refusing the restricted line, and the portal over HTTP:
 *
 * evidence → notice → grace → restricted (in the nft set; lease change
 * followed) → attest via portal → released → recurrence → restricted with
 * one fewer self-release → attest → recurrence → no self-release left →
 * desk release → probation → closed.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import fastifyFormbody from '@fastify/formbody';
import { sql } from 'kysely';
import PostalMime from 'postal-mime';
import { parseConfig } from '../../src/config/load.ts';
import { getIncident, incidentSettings, recordEvidence as recordEvidenceWith, tick, transition as transitionWith, type EvidenceInput } from '../../src/desk/incidents.ts';
import { deskRuntime, type DeskRuntime } from '../../src/desk/runtime.ts';
import type { DecidedMessage, TransactionView } from '../../src/edge/gateway.ts';
import { startSmtpSink, type SmtpSink } from '../../src/replay/processes.ts';
import { openTestStore, STORE_KINDS } from '../helpers/pg.ts';

const H = 3_600_000;
const WORM = Buffer.from('Received: from pc ([192.0.2.50]) by smarthost\r\nFrom: <victim@customer.example>\r\nSubject: <b>Re: your document</b>\r\nMessage-ID: <w1@pc>\r\n\r\nWORM-BODY-MUST-NOT-LEAK\r\n');

function netnsAllowed(): boolean {
  const r = spawnSync('ip', ['netns', 'add', 'bs-probe2'], { stdio: 'ignore' });
  if (r.status !== 0) return false;
  spawnSync('ip', ['netns', 'del', 'bs-probe2'], { stdio: 'ignore' });
  return true;
}

for (const kind of STORE_KINDS) {
  describe(`incident lifecycle on ${kind}`, () => {
    let h: Awaited<ReturnType<typeof openTestStore>>;
    let sink: SmtpSink;
    let app: FastifyInstance;
    let runtime: DeskRuntime;
    let now = new Date('2026-03-02T08:00:00Z');
    const dir = mkdtempSync(join(tmpdir(), 'bs-incidents-'));
    const ns = `bs-inc-${process.pid}-${kind}`;
    let useNetns = false;
    let settings = incidentSettings(undefined);
    const recordEvidence = (db: typeof h.store.db, e: EvidenceInput, at: Date) => recordEvidenceWith(db, e, at, settings);
    const transition = (db: typeof h.store.db, id: string, ev: Parameters<typeof transitionWith>[2], actor: string, at: Date) => transitionWith(db, id, ev, actor, at, settings);

    before(async () => {
      h = await openTestStore(kind, 'bs_incidents');
      sink = await startSmtpSink(join(dir, 'sink'));
      const config = parseConfig({
        nextHop: 'smtp://127.0.0.1:25',
        store: 'pglite-memory:',
        notify: { relay: `smtp://127.0.0.1:${sink.port}`, from: 'noc@isp.example', postmaster: 'postmaster@isp.example' },
        desk: {
          abuseDomain: 'abuse.isp.example',
          graceHours: 72,
          probationDays: 14,
          selfReleases: 2,
          restriction: { level: 'port25-block' },
          portal: { baseUrl: 'https://portal.isp.example' },
          enforcement: { nftSetFile: join(dir, 'set.nft'), nftScriptFile: join(dir, 'script.nft'), listFile: join(dir, 'list.txt') },
        },
      });
      runtime = deskRuntime(config, h.store.db, undefined, () => now)!;
      settings = incidentSettings(config.desk);
      app = Fastify();
      await app.register(fastifyFormbody);
      await runtime.web(app);
      await app.ready();
      const db = h.store.db;
      await sql`insert into customers (id, name, email, language, time_zone) values ('c-1', 'Erika Mustermann', 'erika@customer.example', 'de', 'Europe/Berlin')`.execute(db);
      await sql`insert into leases (ip, customer_id, valid, source) values ('192.0.2.50', 'c-1', tstzrange('2026-03-01T00:00:00Z', '2026-03-05T12:00:00Z'), 'test')`.execute(db);
      useNetns = netnsAllowed();
      if (useNetns) execFileSync('ip', ['netns', 'add', ns]);
    });
    after(async () => {
      if (useNetns) spawnSync('ip', ['netns', 'del', ns]);
      await app?.close();
      await sink?.stop();
      await h?.close();
    });

    const run = async () => {
      const r = await tick(h.store.db, runtime.handlers, now, 'test');
      assert.deepEqual(r.errors, []);
      return r;
    };
    const state = async (id: string) => (await getIncident(h.store.db, id))!.incident;
    const mails = () => sink.messages();
    const subjectOf = async (m: string) => (await PostalMime.parse(m.replace(/^X-[A-Za-z-]+: .*\n/gm, ''))).subject ?? '';
    const seen = new Set<string>();
    /** The one notice that arrived since the last call. */
    const newMail = () => {
      const fresh = mails().filter((m) => !seen.has(m));
      assert.equal(fresh.length, 1, `one new notice, got ${fresh.length}`);
      seen.add(fresh[0]!);
      return fresh[0]!;
    };
    const linkIn = (mail: string) => {
      const m = /https:\/\/portal\.isp\.example\/portal\/([A-Za-z0-9_-]{43})/.exec(mail.replace(/=\r?\n/g, ''));
      assert.ok(m, 'the notice carries the portal link');
      return m[1]!;
    };
    const nftSet = (set: string) => {
      if (!useNetns) {
        execFileSync('nft', ['-c', '-f', join(dir, 'script.nft')]);
        return readFileSync(join(dir, 'script.nft'), 'utf8');
      }
      execFileSync('ip', ['netns', 'exec', ns, 'nft', '-f', join(dir, 'script.nft')]);
      return execFileSync('ip', ['netns', 'exec', ns, 'nft', 'list', 'set', 'inet', 'backstop', set], { encoding: 'utf8' });
    };
    const gatewaySees = async (ip: string) => {
      const t: TransactionView = { clientIp: ip, clientPort: 40000, helo: 'pc', mailFrom: 'victim@customer.example', rcptTo: ['x@example.org'], relayed: true };
      return runtime.hooks.mail[0]!(t);
    };
    const wormFromCustomer = async () => {
      const t: TransactionView = { clientIp: '192.0.2.50', clientPort: 40000, helo: 'pc', mailFrom: 'victim@customer.example', rcptTo: ['x@example.org'], relayed: true };
      const d: DecidedMessage = { id: 'm1', verdict: { kind: 'infected', name: 'Win.Worm.Mydoom-1', engine: 'clamd' }, action: 'reject', reply: { code: 550, message: '5.7.1 infected' }, raw: WORM, quarantineId: null, receivedAt: now };
      await runtime.hooks.decided[0]!(t, d);
    };
    const attest = async (token: string) => {
      const page = await app.inject({ url: `/portal/${token}` });
      assert.equal(page.statusCode, 200);
      const csrf = /name="csrf" value="([^"]+)"/.exec(page.body);
      if (!csrf) return { page, post: null };
      const cookie = /bs_portal_csrf=([^;]+)/.exec(String(page.headers['set-cookie']))![1]!;
      const post = await app.inject({ method: 'POST', url: `/portal/${token}/attest`, payload: `csrf=${encodeURIComponent(csrf[1]!)}&confirm=yes`, headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: `bs_portal_csrf=${cookie}` } });
      return { page, post };
    };

    test('report → notice → grace → restricted → attest → recurrence → … → no self-release left → desk release → closed', async () => {
      const db = h.store.db;
      // 1. The gateway finds a worm in mail relayed for the customer's line: evidence, attributed through the lease.
      await wormFromCustomer();
      const open = await db.selectFrom('incidents').selectAll().where('customer_id', '=', 'c-1').execute();
      assert.equal(open.length, 1);
      const id = open[0]!.id;
      assert.equal(open[0]!.state, 'suspected');
      assert.deepEqual(open[0]!.contact_snapshot, { id: 'c-1', name: 'Erika Mustermann', email: 'erika@customer.example', phone: null, language: 'de', time_zone: 'Europe/Berlin' });

      // 2. The notice goes out (German, Berlin time, portal link, header lines not the body) and the grace period starts.
      await run();
      const notice = newMail();
      assert.equal(await subjectOf(notice), 'Sicherheitshinweis zu Ihrem Internetanschluss');
      assert.match(notice, /RCPT TO:<erika@customer\.example>|erika@customer\.example/);
      assert.match(notice.replace(/=\r?\n/g, ''), /2026-03-05 09:00:00 (CET|GMT\+1)/, 'grace end in the customer zone');
      assert.match(notice.replace(/=\r?\n/g, ''), /Win\.Worm\.Mydoom-1/);
      assert.doesNotMatch(notice, /WORM-BODY-MUST-NOT-LEAK/);
      const firstToken = linkIn(notice);
      assert.equal((await state(id)).state, 'notified');
      assert.equal((await gatewaySees('192.0.2.50')).outcome, 'continue', 'not restricted during grace');

      // 3. 71 hours later: still in grace. 73 hours: restricted, notice, in the nft set.
      now = new Date(now.getTime() + 71 * H);
      await run();
      assert.equal((await state(id)).state, 'notified');
      now = new Date(now.getTime() + 2 * H);
      await run();
      assert.equal((await state(id)).state, 'restricted');
      assert.equal((await state(id)).restriction_level, 'port25-block');
      const restrictedNotice = newMail();
      assert.equal(await subjectOf(restrictedNotice), 'Ihr Internetanschluss wurde eingeschränkt');
      const token1 = linkIn(restrictedNotice);
      assert.notEqual(token1, firstToken);
      assert.equal((await app.inject({ url: `/portal/${firstToken}` })).statusCode, 404, 'an older link stops working');
      assert.match(nftSet('backstop_port25_block_v4'), /192\.0\.2\.50/);
      assert.equal(readFileSync(join(dir, 'list.txt'), 'utf8'), '192.0.2.50/32\n');
      const refused = await gatewaySees('192.0.2.50');
      assert.equal(refused.outcome, 'reply');
      assert.ok(refused.outcome === 'reply' && refused.reply.code === 550 && /^5\.7\.1 .*portal\.isp\.example/.test(refused.reply.message));
      assert.equal((await gatewaySees('192.0.2.51')).outcome, 'continue');

      // 4. The lease changes: the set follows the customer (refresh job every minute).
      await sql`insert into leases (ip, customer_id, valid, source) values ('192.0.2.77', 'c-1', tstzrange('2026-03-05T12:00:00Z', null), 'test')`.execute(db);
      now = new Date('2026-03-05T12:01:30Z');
      await run();
      assert.equal(readFileSync(join(dir, 'list.txt'), 'utf8'), '192.0.2.77/32\n');
      const moved = nftSet('backstop_port25_block_v4');
      assert.match(moved, /192\.0\.2\.77/);
      assert.doesNotMatch(moved, /192\.0\.2\.50/);

      // 5. The customer attests on the portal: probation, released, out of the set.
      const a1 = await attest(token1);
      assert.equal(a1.post?.statusCode, 200);
      await run();
      let inc = await state(id);
      assert.equal(inc.state, 'probation');
      assert.equal(inc.self_releases_left, 1);
      assert.equal(readFileSync(join(dir, 'list.txt'), 'utf8'), '');
      assert.doesNotMatch(nftSet('backstop_port25_block_v4'), /elements/);
      assert.equal((await gatewaySees('192.0.2.77')).outcome, 'continue');

      // 6. Recurrence in probation (now from the new address): restricted at once, one self-release left.
      now = new Date(now.getTime() + 2 * 24 * H);
      const r2 = await recordEvidence(db, { customerId: 'c-1', source: 'arf', ip: '192.0.2.77', observedAt: now, summary: 'spam run reported', malware: [] }, now);
      assert.deepEqual(r2, { incidentId: id, opened: false });
      await run();
      inc = await state(id);
      assert.equal(inc.state, 'restricted');
      assert.equal(inc.recurrences, 1);
      const recurrenceNotice = newMail();
      assert.equal(await subjectOf(recurrenceNotice), 'Ihr Internetanschluss wurde erneut eingeschränkt');
      assert.match(nftSet('backstop_port25_block_v4'), /192\.0\.2\.77/);
      const a2 = await attest(linkIn(recurrenceNotice));
      assert.match(a2.page.body, /noch 1-mal selbst aufheben/);
      assert.equal(a2.post?.statusCode, 200);
      await run();
      inc = await state(id);
      assert.equal(inc.state, 'probation');
      assert.equal(inc.self_releases_left, 0);

      // 7. Again: restricted, and no self-release left — the portal has no button, only the desk can release.
      now = new Date(now.getTime() + 24 * H);
      await recordEvidence(db, { customerId: 'c-1', source: 'form', ip: '192.0.2.77', observedAt: now, summary: 'form report' }, now);
      await run();
      assert.equal((await state(id)).state, 'restricted');
      const a3 = await attest(linkIn(newMail()));
      assert.equal(a3.post, null);
      assert.match(a3.page.body, /nicht mehr über diese Seite aufgehoben werden/);
      assert.equal((await transition(db, id, 'attest', 'customer-portal', now)).ok, false);
      const release = await transition(db, id, 'desk-release', 'cli:desk', now);
      assert.deepEqual(release, { ok: true, state: 'probation', from: 'restricted' });
      await run();
      assert.equal(readFileSync(join(dir, 'list.txt'), 'utf8'), '');

      // 8. Probation runs out: closed. New evidence would open a new incident.
      now = new Date(now.getTime() + 14 * 24 * H + 1000);
      await run();
      assert.equal((await state(id)).state, 'closed');
      const fresh = await recordEvidence(db, { customerId: 'c-1', source: 'alias', ip: '192.0.2.77', observedAt: now, summary: 'again' }, now);
      assert.equal(fresh.opened, true);
      assert.notEqual(fresh.incidentId, id);

      // Every transition is in the history and the audit log.
      const history = (await getIncident(db, id))!.events.filter((e) => e.from_state !== e.to_state).map((e) => `${e.from_state ?? ''}>${e.to_state}`);
      assert.deepEqual(history, [
        '>suspected',
        'suspected>notified',
        'notified>restricted',
        'restricted>attested',
        'attested>probation',
        'probation>restricted',
        'restricted>attested',
        'attested>probation',
        'probation>restricted',
        'restricted>probation',
        'probation>closed',
      ]);
      const audits = await db.selectFrom('audit').select(['action', 'actor']).where('target', '=', id).orderBy('id').execute();
      assert.deepEqual(audits.map((a) => `${a.action}/${a.actor}`).sort(), [
        'incident.open/system',
        'incident.notice-sent/system',
        'incident.grace-expired/timer',
        'incident.attest/customer-portal',
        'incident.evidence/system',
        'incident.attest/customer-portal',
        'incident.evidence/system',
        'incident.desk-release/cli:desk',
        'incident.probation-expired/timer',
      ].sort());
    });

    test('timers are jobs: one grace timer at the right time; a timer that fires during a hold is dropped, unhold restarts the grace period', async () => {
      const db = h.store.db;
      const t0 = new Date('2026-06-01T00:00:00Z');
      await sql`insert into customers (id, name, email, language, time_zone) values ('c-2', 'Joe', 'joe@customer.example', 'en', 'America/New_York')`.execute(db);
      const { incidentId } = await recordEvidence(db, { customerId: 'c-2', source: 'arf', ip: '198.51.100.7', observedAt: t0, summary: 'x' }, t0);
      now = t0;
      await run();
      const graceJobs = await db.selectFrom('jobs').select(['run_at', 'state']).where('kind', '=', 'desk-grace-expiry').where(sql<boolean>`payload->>'incidentId' = ${incidentId}`).execute();
      assert.equal(graceJobs.length, 1);
      assert.equal(new Date(graceJobs[0]!.run_at).toISOString(), '2026-06-04T00:00:00.000Z');
      // The desk holds it before grace ends: the timer fires and is dropped, the incident stays on hold.
      assert.equal((await transition(db, incidentId, 'hold', 'cli:desk', t0)).ok, true);
      now = new Date(t0.getTime() + 73 * H);
      await run();
      assert.equal((await state(incidentId)).state, 'evidence-hold');
      // Unhold: back to notified with a fresh grace period.
      assert.equal((await transition(db, incidentId, 'unhold', 'cli:desk', now)).ok, true);
      assert.equal((await state(incidentId)).state, 'notified');
      now = new Date(now.getTime() + 72 * H);
      await run();
      assert.equal((await state(incidentId)).state, 'restricted');
    });
  });
}
