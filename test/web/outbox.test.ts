/*
 * The outbox page through the whole app, on PGlite and on PostgreSQL: list
 * and filter jobs, open one with its payload as inert text, and retry,
 * cancel and approve — admin only, CSRF-checked, audited, through setState.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { enqueue, setState } from '../../src/store/jobs.ts';
import type { Store } from '../../src/store/store.ts';
import { actionsFor, describePayload, JOB_STATES } from '../../src/web/pages/outbox.ts';
import { app, assertInert, csrfOf, HOSTILE, insertMessage, loggedIn, onEachStore } from './helpers.ts';

/** A job put straight into a state (the worker's own transitions are tested with jobs.ts). */
async function jobIn(store: Store, state: string, kind = 'abuse-complaint', payload: unknown = { n: state }): Promise<string> {
  const id = (await enqueue(store.db, { kind, payload, state: state === 'review' ? 'review' : 'queued' }))!;
  if (state !== 'review' && state !== 'queued') await store.db.updateTable('jobs').set({ state, last_error: state === 'failed' ? 'relay said 554 no' : null, attempts: 3 }).where('id', '=', id).execute();
  return id;
}

test('describePayload: the message a job is about, from a detection or a wrapped one', () => {
  const id = '6f1c1f8e-2a47-4a55-9a1e-1d1f0b0c0d0e';
  const cases: [unknown, { messageId: string | null; summary: string }][] = [
    [{ id, detail: 'Worm.Mydoom.A', clientIp: '192.0.2.7', verdict: 'infected' }, { messageId: id, summary: 'Worm.Mydoom.A from 192.0.2.7' }],
    [{ clientIp: '192.0.2.7', windowStart: 'x', detection: { id, detail: 'Worm.B' } }, { messageId: id, summary: 'Worm.B' }],
    [{ windowEnd: '2026-01-01T00:10:00.000Z' }, { messageId: null, summary: 'window ending 2026-01-01T00:10:00.000Z' }],
    [{ id: 'not-a-uuid', detail: 'x' }, { messageId: null, summary: '{"id":"not-a-uuid","detail":"x"}' }],
    [null, { messageId: null, summary: 'null' }],
  ];
  for (const [payload, want] of cases) assert.deepEqual(describePayload(payload), want, JSON.stringify(payload));
});

onEachStore('outbox', 'bs_web_outbox', (current) => {
  test('the buttons shown for each state are exactly what setState allows', async () => {
    const store = current();
    for (const state of JOB_STATES) {
      for (const action of ['retry', 'cancel', 'approve'] as const) {
        const id = await jobIn(store, state);
        assert.equal(await setState(store.db, id, action), actionsFor(state).includes(action), `${action} from ${state}`);
      }
    }
  });

  test('a job its node handed to the relay and died over is shown as a possible duplicate, with the node that sent it', async () => {
    const store = current();
    const id = await jobIn(store, 'done', 'dup-report', { about: 'needle-dup' });
    const clean = await jobIn(store, 'done', 'dup-report', { about: 'needle-clean' });
    await store.db.updateTable('jobs').set({ possible_duplicate: true, sent_by: 'node-2:4242', handoffs: 2, sending_at: new Date() }).where('id', '=', id).execute();
    await store.db.updateTable('jobs').set({ sent_by: 'node-1:77', handoffs: 1, sending_at: new Date() }).where('id', '=', clean).execute();
    const c = await loggedIn(app(store), 'ana');
    const list = (await c.get('/outbox?kind=dup-report')).body;
    const row = (needle: string) => list.split('<tr>').find((r) => r.includes(needle)) ?? '';
    assert.match(row('needle-dup'), /possible duplicate/);
    assert.match(row('needle-dup'), /node-2:4242/);
    assert.doesNotMatch(row('needle-clean'), /possible duplicate/);
    const one = (await c.get(`/outbox/${id}`)).body;
    assert.match(one, /Possible duplicate: a worker handed this mail to the relay and died/);
    assert.match(one, /node-2:4242, handed to the relay 2 times/);
    assert.doesNotMatch((await c.get(`/outbox/${clean}`)).body, /Possible duplicate/);
  });

  test('list: filter by kind and state, counts per state, a nudge for jobs waiting for review', async () => {
    const store = current();
    await jobIn(store, 'review', 'filter-complaint', { about: 'needle-review' });
    await jobIn(store, 'failed', 'filter-report', { about: 'needle-failed' });
    await jobIn(store, 'done', 'filter-report', { about: 'needle-done' });
    const c = await loggedIn(app(store), 'ana');
    const shows = async (q: string) => {
      const body = (await c.get(`/outbox${q}`)).body;
      return ['needle-review', 'needle-failed', 'needle-done'].filter((n) => body.includes(n));
    };
    assert.deepEqual(await shows(''), ['needle-review', 'needle-failed', 'needle-done']);
    assert.deepEqual(await shows('?kind=filter-report'), ['needle-failed', 'needle-done']);
    assert.deepEqual(await shows('?kind=filter-report&state=failed'), ['needle-failed']);
    assert.deepEqual(await shows('?state=review&kind=filter-complaint'), ['needle-review']);
    const page = (await c.get('/outbox?kind=filter-report')).body;
    assert.match(page, /failed \(1\)/);
    assert.match(page, /done \(1\)/);
    assert.match(page, /relay said 554 no/);
    assert.match((await c.get('/outbox?kind=filter-complaint')).body, /1 waiting for review/);
    assert.equal((await c.get('/outbox?state=sent')).statusCode, 400);
    assert.equal((await c.get('/outbox?kind=%3Cscript%3E')).statusCode, 400);
  });

  test('approve a job held for review: admin only, CSRF-checked, audited, then queued to run now', async () => {
    const store = current();
    const id = await jobIn(store, 'review', 'abuse-complaint', { to: 'abuse@example.net' });
    const web = app(store);
    const ana = await loggedIn(web, 'ana');
    const page = await ana.get(`/outbox/${id}`);
    assert.equal(page.statusCode, 200);
    assert.doesNotMatch(page.body, /action="\/outbox\/[^"]+\/approve"/, 'an analyst sees no approve form');
    assert.match(page.body, /need the admin role/);
    assert.equal((await ana.post(`/outbox/${id}/approve`, { _csrf: csrfOf(page.body) })).statusCode, 403);

    const admin = await loggedIn(web, 'admin');
    assert.equal((await admin.post(`/outbox/${id}/approve`, { _csrf: 'forged' })).statusCode, 403);
    assert.equal((await store.db.selectFrom('jobs').select('state').where('id', '=', id).executeTakeFirstOrThrow()).state, 'review');

    const shown = await admin.get(`/outbox/${id}`);
    assert.match(shown.body, /waits for a person's approval/);
    assert.match(shown.body, /action="\/outbox\/[^"]+\/approve"/);
    const res = await admin.post(`/outbox/${id}/approve`, { _csrf: csrfOf(shown.body) });
    assert.equal(res.statusCode, 303);
    assert.equal(res.headers.location, `/outbox/${id}?done=approve`);
    const job = await store.db.selectFrom('jobs').select(['state', 'run_at']).where('id', '=', id).executeTakeFirstOrThrow();
    assert.equal(job.state, 'queued');
    assert.ok(job.run_at.getTime() <= Date.now());
    const after = (await admin.get(`/outbox/${id}?done=approve`)).body;
    assert.match(after, /Approved: it is queued/);
    assert.match(after, /web:admin: outbox\.approve/);
    const audit = await store.db.selectFrom('audit').select(['actor', 'action', 'detail']).where('target', '=', id).execute();
    assert.deepEqual(audit.map((a) => [a.actor, a.action, a.detail]), [['web:admin', 'outbox.approve', { kind: 'abuse-complaint', from: 'review', ip: '127.0.0.1' }]]);

    // A second approve finds it queued: refused, not audited.
    const again = await admin.submit(`/outbox/${id}`, `/outbox/${id}/approve`);
    assert.equal(again.statusCode, 409);
    assert.match(again.body, /Cannot approve a job that is queued/);
    assert.equal((await store.db.selectFrom('audit').select('id').where('target', '=', id).execute()).length, 1);
  });

  test('retry a failed job resets its attempts and error; cancel a queued one; both audited', async () => {
    const store = current();
    const failed = await jobIn(store, 'failed');
    const queued = await jobIn(store, 'queued');
    const admin = await loggedIn(app(store), 'admin');
    assert.equal((await admin.submit(`/outbox/${failed}`, `/outbox/${failed}/retry`)).statusCode, 303);
    assert.deepEqual(await store.db.selectFrom('jobs').select(['state', 'attempts', 'last_error']).where('id', '=', failed).executeTakeFirstOrThrow(), { state: 'queued', attempts: 0, last_error: null });
    assert.equal((await admin.submit(`/outbox/${queued}`, `/outbox/${queued}/cancel`)).statusCode, 303);
    assert.equal((await store.db.selectFrom('jobs').select('state').where('id', '=', queued).executeTakeFirstOrThrow()).state, 'cancelled');
    const actions = await store.db.selectFrom('audit').select(['action', 'target']).where('target', 'in', [failed, queued]).orderBy('at').execute();
    assert.deepEqual(actions, [{ action: 'outbox.retry', target: failed }, { action: 'outbox.cancel', target: queued }]);
    assert.equal((await admin.submit(`/outbox/${queued}`, `/outbox/${queued}/approve`)).statusCode, 409);
    assert.equal((await admin.get('/outbox/00000000-0000-4000-8000-000000000000')).statusCode, 404);
    assert.equal((await admin.get('/outbox/not-a-uuid')).statusCode, 400);
  });

  test('a notice about a hostile message: the payload is inert text, the message is linked', async () => {
    const store = current();
    const m = await insertMessage(store, { verdict: 'infected', detail: HOSTILE.detail, subject: HOSTILE.subject, mailFrom: HOSTILE.mailFrom });
    const detection = {
      id: m.id,
      receivedAt: new Date().toISOString(),
      verdict: 'infected',
      detail: HOSTILE.detail,
      clientIp: '192.0.2.10',
      mailFrom: HOSTILE.mailFrom,
      rcptTo: [HOSTILE.rcpt],
      messageId: HOSTILE.messageId,
      headers: `Subject: ${HOSTILE.subject}\r\nFrom: ${HOSTILE.mailFrom}\r\n`,
    };
    const id = (await enqueue(store.db, { kind: 'postmaster-notice', payload: detection }))!;
    const c = await loggedIn(app(store), 'ana');
    for (const url of ['/outbox', `/outbox/${id}`, '/outbox?kind=postmaster-notice']) {
      const res = await c.get(url);
      assert.equal(res.statusCode, 200, url);
      assertInert(res.body, url);
    }
    const body = (await c.get(`/outbox/${id}`)).body;
    assert.match(body, new RegExp(`<a href="/trace/${m.id}">message of`));
    assert.match(body, /&quot;headers&quot;: &quot;Subject: &lt;script&gt;alert\(\\&quot;subject\\&quot;\)&lt;\/script&gt;\\r\\nX-Injected/, 'the header block is in the payload as escaped JSON text');
    assert.match(body, /\uFFFDgpj\.exe/, 'the right-to-left override is replaced');
    assert.ok(body.length < 100_000, `the 10 kB subject is shown once, cut where long (${body.length})`);
  });

  test('without a session: pages redirect to the login, actions are 401', async () => {
    const store = current();
    const id = await jobIn(store, 'review');
    const web = app(store);
    for (const url of ['/outbox', `/outbox/${id}`]) {
      const res = await web.inject({ method: 'GET', url });
      assert.equal(res.statusCode, 303, url);
      assert.match(String(res.headers.location), /^\/login\?next=/);
    }
    assert.equal((await web.inject({ method: 'POST', url: `/outbox/${id}/approve`, payload: { _csrf: 'x' } })).statusCode, 401);
    assert.equal((await store.db.selectFrom('jobs').select('state').where('id', '=', id).executeTakeFirstOrThrow()).state, 'review');
  });
});
