/*
 * The console in a real browser: Debian's Chromium driven by playwright-core,
 * against a console and a real gateway sharing one store, with Postfix's
 * smtp-sink as the next hop and swaks as the worm.
 *
 * One walk through what a postmaster does during an outbreak: log in, watch
 * the dashboard fill (its data endpoint and its DOM) while EICAR mail comes
 * in, trace a message, release one from the quarantine and see it arrive at
 * the next hop, approve a job waiting for review; then an analyst who is
 * refused the admin pages, and a visitor without a session. Then the abuse
 * desk: an admin puts a restricted line on evidence hold, lifts the hold and
 * releases it, seeing each state on the page; an analyst reads the desk but
 * gets no buttons. Nothing may trip the Content-Security-Policy or open a
 * dialog. Screenshots of each main page go to test-artifacts/screenshots/.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { detectionFrom } from '../../src/notify/detection.ts';
import { recordDetection } from '../../src/notify/postmaster.ts';
import { silentLogger } from '../../src/obs/log.ts';
import { enqueue } from '../../src/store/jobs.ts';
import { openStore, type Store } from '../../src/store/store.ts';
import { buildWebApp } from '../../src/web/server.ts';
import { EICAR, startTestGateway, swaks, waitFor, type TestGateway } from '../helpers/gateway.ts';
import { getIncident } from '../../src/desk/incidents.ts';
import { HOSTILE, PASSWORD, withUsers } from './helpers.ts';
import { hostileCustomer, queuedReport, restrictedIncident, staticImport } from './desk-fixtures.ts';

const SHOTS = 'test-artifacts/screenshots';
const WAVE = 8;

let store: Store;
let gateway: TestGateway;
let web: ReturnType<typeof buildWebApp>;
let base: string;
let profile: string;
let browser: BrowserContext;
let page: Page;
const consoleLines: string[] = [];

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  store = await openStore('pglite-memory:');
  await withUsers(store);
  // Infected mail is held, and each detection is recorded for the postmaster as `backstop serve` does.
  gateway = await startTestGateway({ actions: { infected: 'quarantine' } }, {
    store,
    hooks: { decided: [async (t, m) => { const d = detectionFrom(t, m); if (d) await recordDetection(store.db, d, 10); }] },
  });
  web = buildWebApp({ store, logger: silentLogger, nodeName: 'browser-test', config: gateway.config });
  await web.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(web.server.address() as AddressInfo).port}`;
  profile = mkdtempSync(join(tmpdir(), 'bs-chromium-'));
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1400, height: 1000 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
  page = browser.pages()[0] ?? (await browser.newPage());
  page.setDefaultTimeout(10_000);
  page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
});

after(async () => {
  await browser?.close();
  await web?.close();
  await gateway?.close();
  await store?.close();
  rmSync(profile, { recursive: true, force: true });
});

const shot = (name: string) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });

async function logIn(name: string): Promise<void> {
  await page.fill('input[name=name]', name);
  await page.fill('input[name=password]', PASSWORD);
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
}

test('a postmaster works an outbreak in the browser; an analyst and a visitor are kept out of admin pages', async () => {
  // Without a session, a console page sends the browser to the login form and back after it.
  await page.goto(`${base}/quarantine`);
  assert.equal(new URL(page.url()).pathname, '/login');
  assert.equal(new URL(page.url()).searchParams.get('next'), '/quarantine');
  await shot('login');
  await logIn('admin');
  assert.equal(new URL(page.url()).pathname, '/quarantine');

  // The dashboard before the wave: charts drawn from the endpoint, nothing infected, no banner.
  await page.goto(`${base}/`);
  await page.waitForSelector('.chart[data-group=verdict][data-state=drawn]');
  assert.equal(await page.textContent('[data-verdict=infected] b'), '0');
  assert.equal(await page.isHidden('.outbreak'), true);

  // The wave: EICAR from several sources, held in quarantine. The open page must show it without a reload.
  const series = page.waitForResponse(async (r) => r.url().includes('/api/dashboard/series') && (await r.json()).totals?.infected === WAVE, { timeout: 20_000 });
  for (let i = 0; i < WAVE; i++) {
    const r = await swaks(gateway.port, ['--to', 'alice@example.net', '--from', `worm${i}@example.org`, '--h-Subject', `wave ${i}`, '--attach', '-'], EICAR);
    assert.match(r.last, /^250 /, r.transcript);
  }
  const data = await (await series).json();
  assert.equal(data.totals.infected, WAVE);
  assert.equal(data.verdict.infected.reduce((a: number, b: number) => a + b, 0), WAVE, 'one-minute buckets: the per-minute rates add up to the wave');
  assert.equal(data.action.quarantine.reduce((a: number, b: number) => a + b, 0), WAVE);
  await page.waitForFunction((n) => document.querySelector('[data-verdict=infected] b')?.textContent === String(n), WAVE, { timeout: 15_000 });
  await page.waitForSelector('.outbreak:not([hidden])', { timeout: 15_000 });
  assert.match((await page.textContent('.outbreak'))!, new RegExp(`Eicar-Test-Signature ${WAVE} in 10 min`));
  assert.ok(Number(await page.getAttribute('.chart[data-group=verdict]', 'data-rounds')) >= 2, 'the chart was redrawn from fresh data');
  // Reloaded, the tables have it too: the name, its sources' /24, the notice queued for the postmaster.
  await page.reload();
  await page.waitForSelector('.chart[data-group=action][data-state=drawn]');
  const tables = (await page.textContent('section.cols'))!;
  assert.match(tables, /Eicar-Test-Signature/);
  assert.match(tables, /127\.0\.0\.0\/24/);
  assert.match(tables, /postmaster-notice/);
  await shot('dashboard');

  // Trace: find the wave and read one message's story, with the postmaster notice it caused.
  await page.goto(`${base}/trace?verdict=infected`);
  assert.equal(await page.locator('table.grid tbody tr').count(), WAVE);
  await shot('trace');
  await Promise.all([page.waitForNavigation(), page.locator('table.grid tbody tr td:first-child a').last().click()]);
  assert.match((await page.textContent('ol.story'))!, /sent about this message: postmaster-notice/);
  await shot('trace-message');

  // Quarantine: open the oldest, release it, and see it arrive at the next hop for its original recipient.
  await page.goto(`${base}/quarantine`);
  assert.equal(await page.locator('table.grid tbody tr').count(), WAVE);
  await shot('quarantine');
  await Promise.all([page.waitForNavigation(), page.locator('table.grid tbody tr td:first-child a').last().click()]);
  const quarantineId = (await page.textContent('table.kv tr:first-child td'))!.trim();
  await shot('quarantine-message');
  await Promise.all([page.waitForNavigation(), page.click('a.button:has-text("Release")')]);
  assert.equal(gateway.sink!.messages().length, 0, 'nothing reached the next hop before the release');
  await Promise.all([page.waitForNavigation(), page.click('form[action$="/release"] button[type=submit]')]);
  assert.match((await page.textContent('[role=status]'))!, /^Released: 250 /);
  await waitFor(() => gateway.sink!.envelopes().length === 1);
  const [arrived] = gateway.sink!.envelopes();
  assert.deepEqual(arrived!.rcptTo, ['alice@example.net']);
  assert.match(arrived!.mailFrom, /^worm0@example\.org$/);
  assert.ok(arrived!.text.includes(Buffer.from(EICAR).toString('base64').slice(0, 40)), 'the message went unchanged');
  const released = await store.db.selectFrom('audit').select(['actor', 'action']).where('target', '=', quarantineId).execute();
  assert.deepEqual(released, [{ actor: 'web:admin', action: 'quarantine.release' }]);

  // Outbox: a complaint waiting for review, with a hostile payload, approved from its page.
  const jobId = (await enqueue(store.db, { kind: 'abuse-complaint', payload: { to: 'abuse@example.org', subject: HOSTILE.subject }, state: 'review' }))!;
  await page.goto(`${base}/outbox`);
  await shot('outbox');
  await page.click('nav.tabs a:has-text("review")');
  await Promise.all([page.waitForNavigation(), page.click(`a[href="/outbox/${jobId}"]`)]);
  assert.ok((await page.textContent('pre.payload'))!.includes('"subject": "<script>alert(\\"subject\\")</script>\\r\\nX-Injected'), 'the hostile payload is text on the page');
  await shot('outbox-job');
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Approve and send")')]);
  assert.match((await page.textContent('[role=status]'))!, /Approved/);
  assert.equal((await store.db.selectFrom('jobs').select('state').where('id', '=', jobId).executeTakeFirstOrThrow()).state, 'queued');
  assert.deepEqual(await store.db.selectFrom('audit').select('action').where('target', '=', jobId).execute(), [{ action: 'outbox.approve' }]);

  for (const name of ['audit', 'settings']) {
    await page.goto(`${base}/${name}`);
    await shot(name);
  }

  // An analyst reads but may not act: no approve button, and the admin-only page is refused.
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Log out")')]);
  await logIn('ana');
  const other = (await enqueue(store.db, { kind: 'abuse-complaint', payload: { n: 2 }, state: 'review' }))!;
  await page.goto(`${base}/outbox/${other}`);
  assert.equal(await page.locator('button:has-text("Approve")').count(), 0);
  const refused = await page.goto(`${base}/quarantine/${quarantineId}/confirm/delete`);
  assert.equal(refused!.status(), 403);
  assert.match((await page.textContent('main'))!, /needs the admin role; you are logged in as analyst/);
  await shot('analyst-refused');

  // Logged out (from the refusal page, which keeps the console's frame): every page is the login form again.
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Log out")')]);
  for (const path of ['/outbox', `/quarantine/${quarantineId}/confirm/release`, '/settings']) {
    await page.goto(`${base}${path}`);
    assert.equal(new URL(page.url()).pathname, '/login', path);
  }

  const violations = consoleLines.filter((l) => /Content[- ]Security[- ]Policy|Refused to (load|execute|apply|connect|frame)|pageerror/i.test(l));
  assert.deepEqual(violations, [], 'no CSP violations or script errors');
});

test('the abuse desk in the browser: an admin holds, unholds and releases a restricted line; an analyst only reads', async () => {
  const dialogs: string[] = [];
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    void d.dismiss();
  });
  await hostileCustomer(store, 'c-browser');
  const id = await restrictedIncident(store, 'c-browser');
  await queuedReport(store);
  await staticImport(store, 'c-browser');

  await page.goto(`${base}/desk`);
  assert.equal(new URL(page.url()).pathname, '/login', 'the desk needs a session');
  await logIn('admin');
  assert.equal(new URL(page.url()).pathname, '/desk');
  assert.equal((await page.textContent('nav.tabs a[data-state=restricted]'))!.trim(), 'restricted (1)');
  const row = page.locator(`tr[data-incident="${id}"]`);
  assert.match((await row.textContent())!, /walled-garden/);
  assert.match((await row.textContent())!, /restricted until the customer attests or the desk releases/);
  assert.match((await page.textContent('table.queue'))!, /unknown: no customer held the address then/);
  assert.match((await page.textContent('table.imports'))!, /static-csv/);
  await shot('desk');

  // The lookup from the desk page: the static network names the customer.
  await page.fill('form.lookup input[name=ip]', '198.51.100.3');
  await page.fill('form.lookup input[name=at]', '2026-03-01T10:05');
  await page.fill('form.lookup input[name=zone]', 'Europe/Berlin');
  await Promise.all([page.waitForNavigation(), page.click('form.lookup button[type=submit]')]);
  assert.match((await page.textContent('[data-answer]'))!, /Customer c-browser/);
  assert.match((await page.textContent('.lookup-answer'))!, /at 2026-03-01 09:05:00Z/);
  await shot('desk-lookup');

  await page.goto(`${base}/desk?state=restricted`);
  await Promise.all([page.waitForNavigation(), page.locator(`tr[data-incident="${id}"] td:first-child a`).click()]);
  assert.equal((await page.textContent('.head .state'))!.trim(), 'restricted');
  assert.equal(await page.locator('ol.evidence > li').count(), 1);
  await page.click('ol.evidence summary');
  assert.match((await page.textContent('pre.headers'))!, /^Received: from pc \(\[192\.0\.2\.50\]\)\nSubject: <script>alert\("hdr"\)<\/script> \uFFFDgpj\.exe\n/, 'the header lines are text');
  await shot('desk-incident');

  const act = async (event: string, want: string, done: RegExp) => {
    await Promise.all([page.waitForNavigation(), page.click(`button[data-event="${event}"]`)]);
    assert.equal((await page.textContent('.head .state'))!.trim(), want, event);
    assert.match((await page.textContent('[role=status]'))!, done);
    assert.equal((await getIncident(store.db, id))!.incident.state, want);
  };
  await page.fill('input[name=note]', 'checking the ARF with the reporter');
  await act('hold', 'evidence-hold', /Put on evidence hold \(it was restricted\)/);
  assert.deepEqual(await page.locator('button[data-event]').evaluateAll((b) => b.map((x) => x.getAttribute('data-event'))), ['unhold', 'close']);
  assert.match((await page.textContent('table.history'))!, /checking the ARF with the reporter/);
  await act('unhold', 'restricted', /Hold lifted \(it was evidence-hold\)/);
  await act('desk-release', 'probation', /Released by the desk \(it was restricted\)/);
  assert.match((await page.textContent('table.kv'))!, /probation ends .* \(in (14 d|13 d 23 h)\)/);
  await shot('desk-incident-released');
  const audited = await store.db.selectFrom('audit').select(['actor', 'action']).where('target', '=', id).where('actor', '=', 'web:admin').orderBy('at').execute();
  assert.deepEqual(audited.map((a) => a.action), ['incident.hold', 'incident.unhold', 'incident.desk-release']);

  // An analyst sees the desk and the incident, and no button that changes a state.
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Log out")')]);
  await logIn('ana');
  await page.goto(`${base}/desk`);
  assert.equal(await page.locator('header nav a[href="/desk"]').count(), 1, 'the desk is in the analyst\'s navigation');
  await page.goto(`${base}/desk/incidents/${id}`);
  assert.equal((await page.textContent('.head .state'))!.trim(), 'probation');
  assert.equal(await page.locator('button[data-event]').count(), 0);
  assert.equal(await page.locator('form[action$="/transition"]').count(), 0);
  assert.match((await page.textContent('main'))!, /State changes need the admin role/);
  await shot('desk-incident-analyst');
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Log out")')]);

  assert.deepEqual(dialogs, [], 'nothing from the evidence ran');
  const violations = consoleLines.filter((l) => /Content[- ]Security[- ]Policy|Refused to (load|execute|apply|connect|frame)|pageerror/i.test(l));
  assert.deepEqual(violations, [], 'no CSP violations or script errors');
});
