/*
 * One message's story in the trace, on PGlite and on PostgreSQL: the jobs it
 * caused, made by notify's own functions (the postmaster notice for a new
 * name, the digest for the next ones), a sender notice, and the abuse report
 * about its source's window — each linked to the outbox with its state.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ABUSE_JOB, type AbusePayload } from '../../src/notify/abuse.ts';
import type { Detection } from '../../src/notify/notice.ts';
import { recordDetections } from '../../src/notify/postmaster.ts';
import { SENDER_NOTICE_JOB } from '../../src/notify/sender.ts';
import { enqueue } from '../../src/store/jobs.ts';
import { app, assertInert, HOSTILE, insertMessage, loggedIn, onEachStore } from './helpers.ts';

function detectionOf(id: string, receivedAt: Date, clientIp: string, detail: string): Detection {
  return {
    id,
    receivedAt: receivedAt.toISOString(),
    verdict: 'infected',
    detail,
    engine: 'ClamAV',
    clientIp,
    clientPort: 40000,
    helo: 'client.example',
    mailFrom: 'sender@example.org',
    rcptTo: ['user@example.net'],
    messageId: null,
    action: 'reject',
    quarantineId: null,
    headers: 'Subject: x\r\n',
  };
}

onEachStore('trace', 'bs_web_trace', (current) => {
  test("a message's story lists the notices, digest and report it caused, linked to the outbox", async () => {
    const store = current();
    const at = new Date(Date.now() - 60_000);
    const first = await insertMessage(store, { receivedAt: at, clientIp: '203.0.113.9', verdict: 'infected', detail: 'Worm.Story' });
    const second = await insertMessage(store, { receivedAt: at, clientIp: '203.0.113.9', verdict: 'infected', detail: 'Worm.Story' });
    const other = await insertMessage(store, { receivedAt: at, clientIp: '203.0.113.10', verdict: 'infected', detail: 'Worm.Other' });
    const d1 = detectionOf(first.id, at, '203.0.113.9', 'Worm.Story');
    const d2 = detectionOf(second.id, at, '203.0.113.9', 'Worm.Story');
    assert.deepEqual(await recordDetections(store.db, [d1, d2], 10), ['notice', 'digest']);
    await enqueue(store.db, { kind: SENDER_NOTICE_JOB, payload: { detection: d1, via: 'spf' } });
    const payload: AbusePayload = { clientIp: '203.0.113.9', windowStart: new Date(at.getTime() - 1000).toISOString(), detection: d1 };
    const reportId = (await enqueue(store.db, { kind: ABUSE_JOB, payload }))!;
    await store.db.updateTable('jobs').set({ state: 'failed', last_error: 'no abuse contact <found>' }).where('id', '=', reportId).execute();

    const c = await loggedIn(app(store), 'ana');
    const story = (id: string) => c.get(`/trace/${id}`).then((r) => r.body);
    const linked = (body: string) => [...body.matchAll(/<a class="mono" href="\/outbox\/[^"]+">([a-z-]+)<\/a> <span class="state s-([a-z]+)">/g)].map((m) => `${m[1]}:${m[2]}`);

    const one = await story(first.id);
    assert.deepEqual(linked(one), ['postmaster-notice:queued', 'sender-notice:queued', 'abuse-report:failed']);
    assert.match(one, /sent about this message: <a/);
    assert.match(one, /abuse report about its source: <a[^>]*>abuse-report<\/a> <span class="state s-failed">failed<\/span> <span class="mono">no abuse contact &lt;found&gt;<\/span>/);
    assert.match(one, new RegExp(`href="/outbox/${reportId}"`));
    assert.deepEqual(linked(await story(second.id)), ['postmaster-digest:queued', 'abuse-report:failed'], 'the second of the name went to the digest');
    assert.deepEqual(linked(await story(other.id)), [], 'another source, not detected through notify: nothing');
  });

  test('hostile values on the trace pages of a message with jobs', async () => {
    const store = current();
    const m = await insertMessage(store, { verdict: 'infected', detail: HOSTILE.detail, subject: HOSTILE.subject, mailFrom: HOSTILE.mailFrom, rcpt: [HOSTILE.rcpt], helo: HOSTILE.helo, messageId: HOSTILE.messageId });
    const id = (await enqueue(store.db, { kind: 'postmaster-notice', payload: detectionOf(m.id, new Date(), '192.0.2.10', HOSTILE.detail) }))!;
    await store.db.updateTable('jobs').set({ state: 'failed', last_error: HOSTILE.subject }).where('id', '=', id).execute();
    const c = await loggedIn(app(store), 'admin');
    for (const url of [`/trace/${m.id}`, `/trace?sender=${encodeURIComponent(HOSTILE.mailFrom)}`, `/trace?message_id=${encodeURIComponent(HOSTILE.messageId)}`]) {
      const res = await c.get(url);
      assert.equal(res.statusCode, 200, url);
      assertInert(res.body, url);
    }
    assert.match((await c.get(`/trace?message_id=${encodeURIComponent(HOSTILE.messageId)}`)).body, new RegExp(`href="/trace/${m.id}"`), 'found by its hostile Message-ID');
  });
});
