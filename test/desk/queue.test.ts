/*
 * The desk's queue worked by hand (desk/queue.ts): the pure decision as a
 * table, then assign and dismiss on PGlite and PostgreSQL — refusals that
 * change nothing, an assignment that opens or joins the customer's incident
 * with the report as evidence, one forward job and an audit row, a
 * twice-submitted (and a concurrent) assign that files the report once, and a
 * dismissal with its cleaned reason.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { forwardHandlers } from '../../src/desk/forward.ts';
import { getIncident } from '../../src/desk/incidents.ts';
import { deskQueue, FORWARD_JOB, takeReport } from '../../src/desk/intake.ts';
import { assignReport, decideQueueAction, dismissReason, dismissReport, getReport, type QueueAction } from '../../src/desk/queue.ts';
import { deskPorts, forwardPorts } from '../../src/desk/wiring.ts';
import { startSmtpSink, type SmtpSink } from '../../src/replay/processes.ts';
import type { Store } from '../../src/store/store.ts';
import { openTestStore, STORE_KINDS } from '../helpers/pg.ts';
import { DESK_HOSTILE, hostileCustomer, queuedReport, staticImport } from '../web/desk-fixtures.ts';

const T = new Date('2026-03-01T10:00:00Z');
const queued = { state: 'unattributed' as const, ip: '203.0.113.9', observedAt: T, customerId: null, assignedBy: null, assignedAt: null, dismissedBy: null, dismissedAt: null };
const assign = (customerKnown = true, customerId = 'c-1'): QueueAction => ({ kind: 'assign', customerId, customerKnown });
const dismiss = (reason: string): QueueAction => ({ kind: 'dismiss', reason });

test('decideQueueAction: who may be assigned or dismissed, and the refusal in words', () => {
  const cases: [string, Parameters<typeof decideQueueAction>[0], QueueAction, string | null][] = [
    ['queued, known customer', queued, assign(), null],
    ['queued, with a reason', queued, dismiss('spam trap, not ours'), null],
    ['unknown report', null, assign(), 'unknown-report: no such report'],
    ['unknown report, dismiss', null, dismiss('x'), 'unknown-report: no such report'],
    ['already assigned', { ...queued, state: 'attributed', customerId: 'c-9', assignedBy: 'web:admin', assignedAt: T }, assign(), 'not-queued: already assigned to customer c-9 by web:admin at 2026-03-01T10:00:00Z'],
    ['assigned and forwarded', { ...queued, state: 'forwarded', customerId: 'c-9', assignedBy: 'cli:eve', assignedAt: T }, dismiss('x'), 'not-queued: already assigned to customer c-9 by cli:eve at 2026-03-01T10:00:00Z'],
    ['dismissed', { ...queued, state: 'dismissed', dismissedBy: 'web:admin', dismissedAt: T }, assign(), 'not-queued: already dismissed by web:admin at 2026-03-01T10:00:00Z'],
    ['dismissed twice', { ...queued, state: 'dismissed', dismissedBy: 'web:admin', dismissedAt: T }, dismiss('again'), 'not-queued: already dismissed by web:admin at 2026-03-01T10:00:00Z'],
    ['attributed on arrival', { ...queued, state: 'attributed', customerId: 'c-2' }, assign(), 'not-queued: not in the queue: attributed to customer c-2 when it arrived'],
    ['forwarded on arrival', { ...queued, state: 'forwarded', customerId: 'c-2' }, dismiss('x'), 'not-queued: not in the queue: attributed to customer c-2 when it arrived'],
    ['no address', { ...queued, ip: null }, assign(), 'not-fileable: the report names no address, so there is nothing to file against a customer (dismiss it instead)'],
    ['no address, dismissed', { ...queued, ip: null }, dismiss('no address given'), null],
    ['no time', { ...queued, observedAt: null }, assign(), 'not-fileable: the report gives no time, so there is nothing to file against a customer (dismiss it instead)'],
    ['unknown customer', queued, assign(false, ' c-404 '), 'unknown-customer: no customer with id c-404'],
    ['empty customer', queued, assign(false, '   '), 'unknown-customer: give the customer id'],
    ['empty reason', queued, dismiss(' \r\n\t '), 'bad-reason: a dismissal needs a reason'],
    ['long reason', queued, dismiss('x'.repeat(501)), 'bad-reason: the reason is 501 characters, at most 500 are kept'],
    ['longest reason', queued, dismiss(`${'x'.repeat(500)}\r\n`), null],
  ];
  for (const [name, report, action, want] of cases) {
    const d = decideQueueAction(report, action);
    assert.equal(d.ok ? null : `${d.why}: ${d.refused}`, want, name);
  }
});

test('dismissReason: one line, controls and bidi overrides replaced', () => {
  assert.deepEqual(dismissReason('  sinkhole\r\nnoise\t\u202Etxt.exe\u0007 '), { ok: true, reason: 'sinkhole noise ?txt.exe?' });
});

for (const kind of STORE_KINDS) {
  describe(`the desk's queue worked by hand (${kind})`, () => {
    let store: Store;
    let close: () => Promise<void>;
    before(async () => {
      ({ store, close } = await openTestStore(kind, 'bs_desk_queue'));
      await hostileCustomer(store, 'c-evil');
      await store.db.insertInto('customers').values({ id: 'c-1', name: 'Erika Mustermann', email: 'erika@customer.example', language: 'de', time_zone: 'Europe/Berlin' }).execute();
      await staticImport(store, 'c-evil');
    });
    after(() => close());

    const count = async (table: 'incident_evidence' | 'audit' | 'incidents') => Number((await store.db.selectFrom(table).select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()).n);
    const forwards = (reportId: string) => store.db.selectFrom('jobs').select(['id', 'payload']).where('kind', '=', FORWARD_JOB).where('dedupe_key', '=', `${FORWARD_JOB}:${reportId}`).execute();
    const snapshot = async () => ({ evidence: await count('incident_evidence'), audit: await count('audit'), incidents: await count('incidents'), jobs: (await store.db.selectFrom('jobs').select('id').execute()).length });

    test('refusals name the reason and change nothing', async () => {
      const db = store.db;
      const q = await queuedReport(store, '203.0.113.10');
      const noAddress = await takeReport(db, deskPorts({}), { via: 'abuse', reporter: 'r@example.org', ip: null, port: null, parsed: null });
      const noTime = await takeReport(db, deskPorts({}), { via: 'alias', reporter: 'r@example.org', ip: '203.0.113.11', port: null, parsed: null });
      const onArrival = await takeReport(db, deskPorts({}), { via: 'form', reporter: '198.51.100.77', ip: '198.51.100.3', port: null, parsed: null, form: { observedAt: T, zoneless: false, summary: 'spam', headers: null } });
      assert.equal(onArrival.state, 'attributed');
      const gone = '00000000-0000-4000-8000-000000000000';
      const before = await snapshot();
      const cases: [string, () => Promise<{ ok: boolean; why?: string; refused?: string }>, string][] = [
        ['unknown report', () => assignReport(db, gone, 'c-1', 'test'), 'unknown-report: no such report'],
        ['not an id', () => dismissReport(db, 'not-a-uuid', 'x', 'test'), 'unknown-report: no such report'],
        ['unknown customer', () => assignReport(db, q, 'c-404', 'test'), 'unknown-customer: no customer with id c-404'],
        ['no customer', () => assignReport(db, q, '', 'test'), 'unknown-customer: give the customer id'],
        ['no address', () => assignReport(db, noAddress.id, 'c-1', 'test'), 'not-fileable: the report names no address, so there is nothing to file against a customer (dismiss it instead)'],
        ['no time', () => assignReport(db, noTime.id, 'c-1', 'test'), 'not-fileable: the report gives no time, so there is nothing to file against a customer (dismiss it instead)'],
        ['attributed on arrival', () => assignReport(db, onArrival.id, 'c-1', 'test'), 'not-queued: not in the queue: attributed to customer c-evil when it arrived'],
        ['dismiss attributed', () => dismissReport(db, onArrival.id, 'x', 'test'), 'not-queued: not in the queue: attributed to customer c-evil when it arrived'],
        ['no reason', () => dismissReport(db, q, '  ', 'test'), 'bad-reason: a dismissal needs a reason'],
        ['long reason', () => dismissReport(db, q, 'y'.repeat(501), 'test'), 'bad-reason: the reason is 501 characters, at most 500 are kept'],
      ];
      for (const [name, run, want] of cases) {
        const r = await run();
        assert.equal(r.ok ? 'ok' : `${r.why}: ${r.refused}`, want, name);
      }
      assert.deepEqual(await snapshot(), before, 'no evidence, incident, job or audit row from a refusal');
      assert.equal((await getReport(db, q))!.state, 'unattributed');
    });

    test('assign: the customer\'s incident opens with the report as evidence, one forward job, an audit row; the next one joins it', async () => {
      const db = store.db;
      const id = await queuedReport(store, '203.0.113.20');
      const report = (await getReport(db, id))!;
      const at = new Date('2026-03-02T08:00:00Z');
      const r = await assignReport(db, id, ' c-1 ', 'web:admin', at, { detail: { ip: '127.0.0.1' } });
      assert.ok(r.ok, JSON.stringify(r));
      assert.equal(r.opened, true);

      const found = (await getIncident(db, r.incidentId))!;
      assert.equal(found.incident.customer_id, 'c-1');
      assert.equal(found.incident.state, 'suspected');
      assert.equal(found.evidence.length, 1);
      const e = found.evidence[0]!;
      assert.deepEqual(
        { source: e.source, ip: e.ip, observed: new Date(e.observed_at).toISOString(), at: new Date(e.at).toISOString(), summary: e.summary, headers: e.headers, malware: e.malware },
        { source: 'form', ip: '203.0.113.20', observed: report.observedAt!.toISOString(), at: at.toISOString(), summary: report.summary, headers: DESK_HOSTILE.headers, malware: [] },
      );
      const jobs = await forwards(id);
      assert.equal(jobs.length, 1);
      assert.deepEqual(jobs[0]!.payload, { reportId: id });

      const after = (await getReport(db, id))!;
      assert.deepEqual(
        { state: after.state, customer: after.customerId, incident: after.incidentId, by: after.assignedBy, at: after.assignedAt?.toISOString(), reason: after.reason },
        { state: 'attributed', customer: 'c-1', incident: r.incidentId, by: 'web:admin', at: at.toISOString(), reason: 'unknown: no customer held the address then' },
      );
      const audit = await db.selectFrom('audit').select(['actor', 'action', 'detail']).where('target', '=', id).execute();
      assert.deepEqual(audit.map((a) => [a.actor, a.action, a.detail]), [['web:admin', 'desk-report.assign', { customerId: 'c-1', incidentId: r.incidentId, opened: true, ip: '127.0.0.1' }]]);
      assert.ok(!(await deskQueue(db)).reports.some((q) => q.id === id), 'it left the queue');

      // A second report about the same customer joins the open incident.
      const second = await queuedReport(store, '203.0.113.21');
      const joined = await assignReport(db, second, 'c-1', 'cli:eve', new Date('2026-03-02T09:00:00Z'));
      assert.ok(joined.ok);
      assert.equal(joined.opened, false);
      assert.equal(joined.incidentId, r.incidentId);
      const history = (await getIncident(db, r.incidentId))!;
      assert.equal(history.evidence.length, 2);
      assert.deepEqual(history.events.map((ev) => ev.kind), ['opened', 'evidence']);
      assert.equal((await forwards(second)).length, 1);
    });

    test('the assigned report goes out like one attributed on arrival: the forward job mails the customer through a real relay, never the reporter', async () => {
      const db = store.db;
      const id = await queuedReport(store, '203.0.113.25');
      const r = await assignReport(db, id, 'c-1', 'web:admin');
      assert.ok(r.ok);
      const relay: SmtpSink = await startSmtpSink(join(mkdtempSync(join(tmpdir(), 'bs-desk-queue-')), 'relay'));
      try {
        const handlers = forwardHandlers(db, { notify: { relay: `smtp://127.0.0.1:${relay.port}` } as never }, { abuseDomain: 'abuse.isp.example' }, 'mx.isp.example', forwardPorts);
        const [job] = await db.selectFrom('jobs').selectAll().where('kind', '=', FORWARD_JOB).where('dedupe_key', '=', `${FORWARD_JOB}:${id}`).execute();
        await handlers[FORWARD_JOB]!(job!.payload, job! as never);
        const sent = relay.envelopes();
        assert.equal(sent.length, 1);
        assert.deepEqual(sent[0]!.rcptTo, ['erika@customer.example']);
        assert.match(sent[0]!.text, /Missbrauchsmeldung zu Ihrem Anschluss \(203\.0\.113\.25\)/);
        assert.doesNotMatch(sent[0]!.text, /alert\('reporter'\)|evil\.example/, "the reporter's identity stays with the desk");
        assert.equal((await getReport(db, id))!.state, 'forwarded');
      } finally {
        await relay.stop();
      }
    });

    test('a twice-submitted assign files the report once; two at the same moment, too', async () => {
      const db = store.db;
      const id = await queuedReport(store, '203.0.113.30');
      const evidence = await count('incident_evidence');
      const first = await assignReport(db, id, 'c-evil', 'web:admin');
      assert.ok(first.ok);
      const again = await assignReport(db, id, 'c-1', 'web:admin');
      assert.ok(!again.ok);
      assert.equal(again.why, 'not-queued');
      assert.match(again.refused, /^already assigned to customer c-evil by web:admin at /);
      assert.equal(await count('incident_evidence'), evidence + 1);
      assert.equal((await forwards(id)).length, 1);
      assert.equal((await getReport(db, id))!.customerId, 'c-evil', 'the first assignment stands');

      // Concurrent: A has filed the report but not committed when B asks. On PostgreSQL B waits on the row lock
      // and then sees A's outcome (without the lock it would read the old row and fail at the claim); PGlite has
      // one connection, so B waits for A's transaction.
      const raced = await queuedReport(store, '203.0.113.31');
      const before = await count('incident_evidence');
      let filed!: () => void;
      let commit!: () => void;
      const aFiled = new Promise<void>((resolve) => (filed = resolve));
      const aMayCommit = new Promise<void>((resolve) => (commit = resolve));
      const a = db.transaction().execute(async (tx) => {
        const r = await assignReport(tx, raced, 'c-1', 'web:admin');
        filed();
        await aMayCommit;
        return r;
      });
      await aFiled;
      let bSettled = false;
      const b = assignReport(db, raced, 'c-evil', 'web:other').finally(() => (bSettled = true));
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal(bSettled, false, 'B waits for A');
      commit();
      const results = await Promise.all([a, b]);
      assert.ok(results[0].ok, JSON.stringify(results[0]));
      assert.equal(results[1].ok ? 'ok' : `${results[1].why}: ${results[1].refused.replace(/ at .*/, '')}`, 'not-queued: already assigned to customer c-1 by web:admin');
      assert.equal(await count('incident_evidence'), before + 1);
      assert.equal((await forwards(raced)).length, 1);
      assert.equal((await db.selectFrom('audit').select('id').where('target', '=', raced).execute()).length, 1);
    });

    test('dismiss: out of the queue with who, when and the cleaned reason, audited; then neither assign nor dismiss again', async () => {
      const db = store.db;
      const id = await queuedReport(store, '203.0.113.40');
      const at = new Date('2026-03-03T12:00:00Z');
      const r = await dismissReport(db, id, 'a sinkhole\r\nnot a customer \u202Etxt.exe', 'cli:eve', at);
      assert.deepEqual(r, { ok: true, reason: 'a sinkhole not a customer ?txt.exe' });
      const after = (await getReport(db, id))!;
      assert.deepEqual(
        { state: after.state, by: after.dismissedBy, at: after.dismissedAt?.toISOString(), reason: after.dismissReason, customer: after.customerId },
        { state: 'dismissed', by: 'cli:eve', at: at.toISOString(), reason: 'a sinkhole not a customer ?txt.exe', customer: null },
      );
      assert.ok(!(await deskQueue(db)).reports.some((q) => q.id === id));
      const audit = await db.selectFrom('audit').select(['actor', 'action', 'detail']).where('target', '=', id).execute();
      assert.deepEqual(audit.map((a) => [a.actor, a.action, a.detail]), [['cli:eve', 'desk-report.dismiss', { reason: 'a sinkhole not a customer ?txt.exe' }]]);
      const assign = await assignReport(db, id, 'c-1', 'web:admin');
      assert.equal(assign.ok ? 'ok' : assign.refused, 'already dismissed by cli:eve at 2026-03-03T12:00:00Z');
      assert.equal((await dismissReport(db, id, 'again', 'web:admin')).ok, false);
      assert.equal((await forwards(id)).length, 0);
    });

    test('the table refuses a dismissal without its reason or a reason over 500 characters, whoever writes it', async () => {
      const id = await queuedReport(store, '203.0.113.50');
      await assert.rejects(store.db.updateTable('desk_reports').set({ state: 'dismissed', dismissed_at: T, dismissed_by: 'sql' }).where('id', '=', id).execute(), /desk_reports_dismissal/);
      await assert.rejects(store.db.updateTable('desk_reports').set({ state: 'dismissed', dismissed_at: T, dismissed_by: 'sql', dismiss_reason: 'z'.repeat(501) }).where('id', '=', id).execute(), /desk_reports_dismissal/);
      await assert.rejects(store.db.updateTable('desk_reports').set({ assigned_at: T, assigned_by: 'sql' }).where('id', '=', id).execute(), /desk_reports_assignment/);
    });
  });
}
