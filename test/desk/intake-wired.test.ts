/*
 * The desk intake as `backstop serve` wires it (desk/wiring): real
 * attribution over customers, static assignments and CGNAT blocks, real
 * incidents, a real gateway with swaks, smtp-sink as the relay. A report to
 * the per-IP alias opens the customer's incident and reaches the customer;
 * a CGNAT address needs the report's Source-Port.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { parseConfig } from '../../src/config/load.ts';
import { FORWARD_JOB } from '../../src/desk/intake.ts';
import { deskIntake } from '../../src/desk/wiring.ts';
import { silentLogger } from '../../src/obs/log.ts';
import { startSmtpSink, type SmtpSink } from '../../src/replay/processes.ts';
import type { Store } from '../../src/store/store.ts';
import { openTestStore, STORE_KINDS } from '../helpers/pg.ts';
import { startTestGateway, swaks, type TestGateway } from '../helpers/gateway.ts';

const DOMAIN = 'abuse.example.net';
const fixture = (name: string) => readFileSync(join(import.meta.dirname, 'fixtures', 'reports', name), 'latin1');

for (const kind of STORE_KINDS) describe(`desk intake wired, on ${kind}`, () => {
  let store: Store;
  let relay: SmtpSink;
  let g: TestGateway;
  let stop: (() => Promise<void>) | undefined;
  let handlers: Record<string, (payload: unknown, job: never) => Promise<void>>;

  before(async () => {
    let closeStore: () => Promise<void>;
    ({ store, close: closeStore } = await openTestStore(kind, 'bs_deskw'));
    stop = closeStore;
    relay = await startSmtpSink(join(mkdtempSync(join(tmpdir(), 'bs-deskw-')), 'relay'));
    const config = parseConfig({
      dataDir: mkdtempSync(join(tmpdir(), 'bs-deskw-data-')),
      smtp: { listen: '127.0.0.1:0', hostname: 'mx.example.net' },
      domains: ['example.net'],
      nextHop: 'smtp://127.0.0.1:1',
      store: 'pglite-memory:',
      notify: { relay: `smtp://127.0.0.1:${relay.port}`, from: 'postmaster@example.net', postmaster: 'postmaster@example.net' },
      desk: { abuseDomain: DOMAIN, cgnatRanges: ['198.51.100.0/28'] },
    });
    const desk = deskIntake(config, store, silentLogger);
    assert.ok(desk);
    assert.ok(desk.publicForm, 'the form is on by default');
    handlers = desk.handlers as typeof handlers;
    const db = store.db;
    await sql`insert into customers (id, name, email, language, time_zone) values ('c-7', 'Erika Mustermann', 'erika@customer.example', 'de', 'Europe/Berlin'), ('c-9', 'Joe Bloggs', 'joe@customer.example', 'en', 'America/New_York')`.execute(db);
    await sql`insert into static_assignments (customer_id, network, valid) values ('c-7', '192.0.2.0/29', tstzrange('2010-01-01', null))`.execute(db);
    await sql`insert into cgnat_blocks (public_ip, ports, valid, customer_id) values ('198.51.100.1', int4range(1024, 2048), tstzrange('2010-01-01', null), 'c-9')`.execute(db);
    g = await startTestGateway({}, { store, routes: [desk.route] });
  });
  after(async () => {
    await g?.close();
    await relay?.stop();
    await stop?.();
  });

  test('ARF to the per-IP alias: attributed by the static assignment, incident opened, forward delivered in German', async () => {
    const r = await swaks(g.port, ['--from', 'fbl@reporter.example', '--to', `192-0-2-7@${DOMAIN}`, '--data', '-'], fixture('sisimai-arf-15.eml'));
    assert.match(r.last, /^250 /, r.transcript);
    const row = await store.db.selectFrom('desk_reports').selectAll().where('ip', '=', '192.0.2.7').executeTakeFirstOrThrow();
    assert.equal(row.state, 'attributed');
    assert.equal(row.customer_id, 'c-7');
    const incident = await sql<{ id: string; customer_id: string; state: string }>`select id::text as id, customer_id, state from incidents where customer_id = 'c-7'`.execute(store.db);
    assert.equal(incident.rows.length, 1);
    assert.equal(incident.rows[0]!.id, row.incident_id);
    const job = await store.db.selectFrom('jobs').selectAll().where('kind', '=', FORWARD_JOB).executeTakeFirstOrThrow();
    await handlers[FORWARD_JOB]!(job.payload, job as never);
    const mails = relay.envelopes().filter((m) => m.rcptTo.includes('erika@customer.example'));
    assert.equal(mails.length, 1);
    assert.match(mails[0]!.text, /Missbrauchsmeldung/);
    assert.equal(mails[0]!.mailFrom, `abuse@${DOMAIN}`);
    assert.doesNotMatch(mails[0]!.text, /reporter\.example/);
  });

  test('CGNAT: the alias alone is ambiguous; an ARF with Source-Port to abuse@ names the customer', async () => {
    const noPort = await swaks(g.port, ['--from', 'x@reporter.example', '--to', `198-51-100-1@${DOMAIN}`, '--data', '-'], fixture('sisimai-arf-19.eml'));
    assert.match(noPort.last, /^250 /);
    const amb = await store.db.selectFrom('desk_reports').selectAll().where('ip', '=', '198.51.100.1').executeTakeFirstOrThrow();
    assert.equal(amb.state, 'unattributed');
    assert.match(amb.reason ?? '', /^ambiguous/);

    const arf = [
      'From: reports@mx.example.org', `To: abuse@${DOMAIN}`, 'Subject: abuse report', 'Date: Mon, 2 Mar 2026 10:00:00 +0000', 'MIME-Version: 1.0',
      'Content-Type: multipart/report; report-type=feedback-report; boundary="x"', '', '--x', 'Content-Type: text/plain', '', 'Mail from your network carried the virus Worm.Mydoom.A (found by clamd).', '',
      '--x', 'Content-Type: message/feedback-report', '', 'Feedback-Type: virus', 'Version: 1', 'Arrival-Date: Mon, 2 Mar 2026 09:00:05 +0000', 'Source-IP: 198.51.100.1', 'Source-Port: 1500', '',
      '--x', 'Content-Type: text/rfc822-headers', '', 'Received: from pc ([198.51.100.1]) by mx.example.org; Mon, 2 Mar 2026 09:00:05 +0000', 'Subject: hi', '', '--x--', '',
    ].join('\r\n');
    const r = await swaks(g.port, ['--from', 'reports@mx.example.org', '--to', `abuse@${DOMAIN}`, '--data', '-'], arf);
    assert.match(r.last, /^250 /);
    const row = await store.db.selectFrom('desk_reports').selectAll().where('via', '=', 'abuse').executeTakeFirstOrThrow();
    assert.equal(row.port, 1500);
    assert.equal(row.state, 'attributed');
    assert.equal(row.customer_id, 'c-9');
  });

  test('an address no one holds: queued as unknown', async () => {
    const r = await swaks(g.port, ['--from', 'x@reporter.example', '--to', `203-0-113-77@${DOMAIN}`, '--data', '-'], fixture('pyxarf-login-attack.eml'));
    assert.match(r.last, /^250 /);
    const row = await store.db.selectFrom('desk_reports').selectAll().where('ip', '=', '203.0.113.77').executeTakeFirstOrThrow();
    assert.equal(row.state, 'unattributed');
    assert.match(row.reason ?? '', /^unknown/);
  });
});
