/*
 * The console's pages through the whole app: what they show, the quarantine
 * actions and their audit trail, and hostile values from mail (markup, CRLF,
 * right-to-left overrides, 10 kB strings) escaped on every page that shows
 * mail data.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { openStore, type Store } from '../../src/store/store.ts';
import type { ReleaseResult } from '../../src/edge/release.ts';
import { parseConfig } from '../../src/config/load.ts';
import { app, assertInert, Client, csrfOf, HOSTILE, hostileMessage, insertMessage, loggedIn, withUsers } from './helpers.ts';

let store: Store;
let hostile: { id: string; quarantineId: string | null };
before(async () => {
  store = await openStore('pglite-memory:');
  await withUsers(store);
  hostile = await insertMessage(store, {
    clientIp: '198.51.100.77',
    mailFrom: HOSTILE.mailFrom,
    rcpt: [HOSTILE.rcpt, 'second@example.net'],
    subject: HOSTILE.subject,
    messageId: HOSTILE.messageId,
    helo: HOSTILE.helo,
    verdict: 'infected',
    detail: HOSTILE.detail,
    quarantine: hostileMessage(),
  });
});
after(() => store.close());

test('hostile values from mail are escaped on every page that shows mail data', async () => {
  const c = await loggedIn(app(store), 'admin');
  const pages = [
    '/',
    '/trace',
    `/trace?sender=${encodeURIComponent('<script>')}`,
    `/trace/${hostile.id}`,
    '/quarantine',
    `/quarantine/${hostile.quarantineId}`,
    `/quarantine/${hostile.quarantineId}/confirm/release`,
    `/quarantine/${hostile.quarantineId}/confirm/download`,
    '/audit',
  ];
  for (const url of pages) {
    const res = await c.get(url);
    assert.equal(res.statusCode, 200, url);
    assertInert(res.body, url);
  }
  const detail = (await c.get(`/quarantine/${hostile.quarantineId}`)).body;
  assert.match(detail, /&lt;script&gt;alert\(&quot;subject&quot;\)&lt;\/script&gt;/, 'the subject is shown, escaped');
  assert.match(detail, /\uFFFDtxt\.exe&lt;script&gt;alert\(&#39;file&#39;\)&lt;\/script&gt;\.pif/, 'the attachment name is shown with the override replaced');
  assert.match(detail, /Subject: &lt;script&gt;alert\(&quot;hdr&quot;\)&lt;\/script&gt; \uFFFDgpj\.exe/, 'the header block is shown as text');
  // The 10 kB subject is cut in lists, and kept whole only in a title attribute of at most 2,000 characters.
  const list = (await c.get('/quarantine')).body;
  assert.ok(!list.includes('A'.repeat(2100)));
  assert.ok(list.length < 20_000, `the list stays small (${list.length})`);
});

test('the hostile search term is escaped back into the form', async () => {
  const c = await loggedIn(app(store), 'ana');
  const res = await c.get(`/trace?sender=${encodeURIComponent('"><script>alert(1)</script>')}`);
  assert.equal(res.statusCode, 200);
  assert.match(res.body, /value="&quot;&gt;&lt;script&gt;alert\(1\)&lt;\/script&gt;"/);
  assertInert(res.body, 'trace search');
});

test('the dashboard series counts messages per minute by verdict and by action in the range', async () => {
  const s = await openStore('pglite-memory:');
  try {
    await withUsers(s);
    const now = Date.now();
    for (let i = 0; i < 6; i++) await insertMessage(s, { receivedAt: new Date(now - 5 * 60_000), verdict: 'clean' });
    for (let i = 0; i < 3; i++) await insertMessage(s, { receivedAt: new Date(now - 5 * 60_000), verdict: 'infected', detail: 'Worm.Mydoom.A', clientIp: '192.0.2.66' });
    await insertMessage(s, { receivedAt: new Date(now - 2 * 3_600_000), verdict: 'banned', detail: 'forbidden file type (.pif)', clientIp: '2001:db8:1:2::5' });
    const c = await loggedIn(app(s), 'ana');
    const hour = (await c.get('/api/dashboard/series?range=hour')).json();
    assert.equal(hour.bucketSeconds, 60);
    assert.ok(hour.t.length >= 59 && hour.t.length <= 61, String(hour.t.length));
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    assert.equal(sum(hour.verdict.clean), 6);
    assert.equal(sum(hour.verdict.infected), 3);
    assert.equal(sum(hour.verdict.banned), 0, 'two hours ago is outside the hour');
    assert.equal(sum(hour.action.deliver), 6);
    assert.equal(sum(hour.action.reject), 3);
    const day = (await c.get('/api/dashboard/series?range=day')).json();
    assert.equal(day.bucketSeconds, 600);
    // Ten-minute buckets, per minute: one message in a bucket is 0.1/min.
    assert.ok(Math.abs(sum(day.verdict.banned) - 0.1) < 1e-9);
    assert.equal((await c.get('/api/dashboard/series?range=year')).statusCode, 400);

    const page = (await c.get('/?range=day')).body;
    assert.match(page, /Worm\.Mydoom\.A/);
    assert.match(page, /forbidden file type \(\.pif\)/);
    assert.match(page, /192\.0\.2\.0\/24/);
    assert.match(page, /2001:db8:1::\/48/);
    assert.match(page, /data-src="\/api\/dashboard\/series\?range=day"/);
  } finally {
    await s.close();
  }
});

test('message trace: time range, network, sender, recipient, Message-ID and verdict filters', async () => {
  const s = await openStore('pglite-memory:');
  try {
    await withUsers(s);
    const a = await insertMessage(s, { clientIp: '203.0.113.5', mailFrom: 'alice_100%@example.org', rcpt: ['bob@example.net'], messageId: '<abc@example.org>', subject: 'needle-a' });
    const b = await insertMessage(s, { clientIp: '203.0.113.200', mailFrom: 'carol@example.org', rcpt: ['dave@example.net'], verdict: 'infected', detail: 'Worm.X', subject: 'needle-b' });
    await insertMessage(s, { clientIp: '198.51.100.1', receivedAt: new Date(Date.now() - 3 * 86_400_000), subject: 'needle-old' });
    const c = await loggedIn(app(s), 'ana');
    const find = async (q: string) => (await c.get(`/trace?${q}`)).body;
    const shows = (body: string) => ['needle-a', 'needle-b', 'needle-old'].filter((n) => body.includes(n));
    assert.deepEqual(shows(await find('')), ['needle-a', 'needle-b'], 'last 24 hours by default');
    assert.deepEqual(shows(await find(`from=${new Date(Date.now() - 4 * 86_400_000).toISOString()}`)), ['needle-a', 'needle-b', 'needle-old']);
    assert.deepEqual(shows(await find('ip=203.0.113.0/24')), ['needle-a', 'needle-b']);
    assert.deepEqual(shows(await find('ip=203.0.113.5')), ['needle-a']);
    assert.deepEqual(shows(await find('sender=_100%25')), ['needle-a'], 'LIKE characters are literal');
    assert.deepEqual(shows(await find('sender=li_e')), [], 'an underscore is not a wildcard');
    assert.deepEqual(shows(await find('recipient=DAVE@')), ['needle-b'], 'case-insensitive');
    assert.deepEqual(shows(await find('message_id=abc@example.org')), ['needle-a'], 'with or without angle brackets');
    assert.deepEqual(shows(await find('verdict=infected')), ['needle-b']);
    const bad = await c.get('/trace?ip=not-an-ip');
    assert.equal(bad.statusCode, 400);
    assert.match(bad.body, /must be an address or a network/);
    assert.equal((await c.get('/trace?verdict=evil')).statusCode, 400);
    const story = (await c.get(`/trace/${b.id}`)).body;
    assert.match(story, /Worm\.X/);
    assert.match(story, /550 5\.7\.1 Message refused/);
    assert.ok(a.id);
  } finally {
    await s.close();
  }
});

test('quarantine: release goes through the given function as the logged-in admin; failures are audited', async () => {
  const calls: { id: string; actor: string }[] = [];
  let answer: ReleaseResult = { ok: false, reply: '451 4.3.0 next hop busy', refused: [] };
  const web = app(store, { releaseQuarantined: async (id, actor) => (calls.push({ id, actor }), answer) });
  const c = await loggedIn(web, 'admin');
  const { quarantineId } = await insertMessage(store, { verdict: 'banned', detail: 'forbidden file type (.scr)', quarantine: Buffer.from('Subject: x\r\n\r\nbody\r\n') });
  const failed = await c.submit(`/quarantine/${quarantineId}/confirm/release`, `/quarantine/${quarantineId}/release`);
  assert.equal(failed.statusCode, 409);
  assert.match(failed.body, /Not released: 451 4\.3\.0 next hop busy/);
  answer = { ok: true, reply: '250 2.0.0 Ok: queued', refused: ['gone@example.net'] };
  const ok = await c.submit(`/quarantine/${quarantineId}/confirm/release`, `/quarantine/${quarantineId}/release`);
  assert.equal(ok.statusCode, 200);
  assert.match(ok.body, /Released: 250 2\.0\.0 Ok: queued\. Refused by the next hop: gone@example\.net/);
  assert.deepEqual(calls, [{ id: quarantineId, actor: 'web:admin' }, { id: quarantineId, actor: 'web:admin' }]);
  const audit = await store.db.selectFrom('audit').select(['actor', 'action']).where('target', '=', quarantineId!).execute();
  assert.deepEqual(audit, [{ actor: 'web:admin', action: 'quarantine.release-failed' }]);
});

test('quarantine: release without a release function or configuration says so', async () => {
  const c = await loggedIn(app(store), 'admin');
  const { quarantineId } = await insertMessage(store, { verdict: 'infected', quarantine: Buffer.from('Subject: x\r\n\r\nbody\r\n') });
  const res = await c.submit(`/quarantine/${quarantineId}/confirm/release`, `/quarantine/${quarantineId}/release`);
  assert.equal(res.statusCode, 503);
  assert.match(res.body, /Release is not available/);
});

test('quarantine: release through the configured next hop (edge/release) refuses a message already deleted', async () => {
  const config = parseConfig({ domains: ['example.net'], nextHop: 'smtp://127.0.0.1:1' });
  const c = await loggedIn(app(store, { config }), 'admin');
  const { quarantineId } = await insertMessage(store, { verdict: 'infected', quarantine: Buffer.from('Subject: x\r\n\r\nbody\r\n') });
  assert.equal((await c.submit(`/quarantine/${quarantineId}/confirm/delete`, `/quarantine/${quarantineId}/delete`)).statusCode, 200);
  const res = await c.submit(`/quarantine/${quarantineId}/confirm/release`, `/quarantine/${quarantineId}/release`);
  assert.equal(res.statusCode, 409);
  assert.match(res.body, /Not released: already deleted/);
});

test('quarantine: delete and download are confirmed, audited, and the .eml is never served inline', async () => {
  const c = await loggedIn(app(store), 'admin');
  const raw = Buffer.from('Subject: keep me\r\n\r\nMZ worm\r\n');
  const { quarantineId } = await insertMessage(store, { verdict: 'infected', detail: 'Worm.Y', quarantine: raw });
  const confirm = await c.get(`/quarantine/${quarantineId}/confirm/download`);
  assert.match(confirm.body, /may be live malware/);
  const dl = await c.post(`/quarantine/${quarantineId}/download`, { _csrf: csrfOf(confirm.body) });
  assert.equal(dl.statusCode, 200);
  assert.equal(dl.headers['content-type'], 'application/octet-stream');
  assert.equal(dl.headers['content-disposition'], `attachment; filename="quarantine-${quarantineId}.eml"`);
  assert.equal(dl.headers['x-content-type-options'], 'nosniff');
  assert.deepEqual(dl.rawPayload, raw);
  // A GET never hands the message out.
  assert.equal((await c.get(`/quarantine/${quarantineId}/download`)).statusCode, 404);

  const del = await c.submit(`/quarantine/${quarantineId}/confirm/delete`, `/quarantine/${quarantineId}/delete`);
  assert.equal(del.statusCode, 200);
  assert.equal((await c.submit(`/quarantine/${quarantineId}/confirm/delete`, `/quarantine/${quarantineId}/delete`)).statusCode, 409);
  assert.equal((await c.submit(`/quarantine/${quarantineId}/confirm/download`, `/quarantine/${quarantineId}/download`)).statusCode, 410);
  const detail = (await c.get(`/quarantine/${quarantineId}`)).body;
  assert.match(detail, /The content was deleted/);
  assert.match(detail, /web:admin: quarantine\.delete/);
  const audit = await store.db.selectFrom('audit').select(['actor', 'action', 'detail']).where('target', '=', quarantineId!).orderBy('at').execute();
  assert.deepEqual(audit.map((a) => a.action), ['quarantine.download', 'quarantine.delete']);
  assert.equal((audit[0]!.detail as { sha256: string }).sha256.length, 64);
  const log = (await c.get('/audit?action=quarantine.')).body;
  assert.match(log, /quarantine\.download/);
});

test('quarantine detail: MIME structure and attachments with decoded names, sizes and SHA-256', async () => {
  const c = await loggedIn(app(store), 'ana');
  const body = (await c.get(`/quarantine/${hostile.quarantineId}`)).body;
  assert.match(body, /multipart\/mixed/);
  assert.match(body, /· <\/span>text\/html/);
  assert.match(body, /application\/octet-stream/);
  const sha = (await import('node:crypto')).createHash('sha256').update('MZ pretend program').digest('hex');
  assert.ok(body.includes(sha), 'the decoded attachment hash');
  assert.match(body, /Release, delete and download need the admin role/);
});

test('quarantine list filters by state, verdict and text', async () => {
  const s = await openStore('pglite-memory:');
  try {
    await withUsers(s);
    await insertMessage(s, { verdict: 'infected', detail: 'Worm.Held', subject: 'held-one', quarantine: Buffer.from('Subject: a\r\n\r\nx') });
    const gone = await insertMessage(s, { verdict: 'banned', detail: 'banned.name', subject: 'deleted-one', quarantine: Buffer.from('Subject: b\r\n\r\nx') });
    const c = await loggedIn(app(s), 'admin');
    await c.submit(`/quarantine/${gone.quarantineId}/confirm/delete`, `/quarantine/${gone.quarantineId}/delete`);
    const shows = async (query: string) => {
      const body = (await c.get(`/quarantine${query}`)).body;
      return ['held-one', 'deleted-one'].filter((n) => body.includes(n));
    };
    assert.deepEqual(await shows(''), ['held-one']);
    assert.deepEqual(await shows('?state=all'), ['held-one', 'deleted-one']);
    assert.deepEqual(await shows('?state=deleted'), ['deleted-one']);
    assert.deepEqual(await shows('?state=all&verdict=infected'), ['held-one']);
    assert.deepEqual(await shows('?state=all&q=WORM.HELD'), ['held-one']);
  } finally {
    await s.close();
  }
});

test('settings: version, the configuration with secrets masked, users for admins only', async () => {
  const config = parseConfig({ domains: ['example.net'], store: 'postgres://backstop:s3cret-pw@db.example/backstop' });
  const web = app(store, { config });
  const admin = (await (await loggedIn(web, 'admin')).get('/settings')).body;
  assert.match(admin, /Backstop 0\.\d+\.\d+/);
  assert.match(admin, /postgres:\/\/backstop:\*\*\*\*\*@db\.example\/backstop/);
  assert.doesNotMatch(admin, /s3cret-pw/);
  assert.match(admin, /Console users/);
  const analyst = (await (await loggedIn(web, 'ana')).get('/settings')).body;
  assert.doesNotMatch(analyst, /Console users/);
  assert.doesNotMatch(analyst, /s3cret-pw/);
});

test('the audit log records logins and pages back in time', async () => {
  const c = new Client(app(store));
  await c.login('ana');
  const body = (await c.get('/audit?action=login&limit=1')).body;
  assert.match(body, /web:ana/);
  assert.match(body, /Older entries/);
});
