/*
 * The desk behind a real gateway: swaks sends real reports (fixtures) to the
 * per-IP alias and to abuse@, the row is stored, an attributed report gets
 * its evidence and a forward job, and the forward reaches the customer at a
 * real smtp-sink — without the reporter's identity or any body. Unknown
 * addresses land in the desk's queue with the reason; a store failure is 451.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { composeForward, forwardHandlers, redactForCustomer, type CustomerContact } from '../../src/desk/forward.ts';
import { timeInZone } from '../../src/desk/zones.ts';
import { deskRoute, FORWARD_JOB, type DeskPorts } from '../../src/desk/intake.ts';
import type { EvidenceInput } from '../../src/desk/incidents.ts';
import { startSmtpSink, type SmtpSink } from '../../src/replay/processes.ts';
import { openStore, type Store } from '../../src/store/store.ts';
import { EICAR, startTestGateway, swaks, type TestGateway } from '../helpers/gateway.ts';

const fixtures = join(import.meta.dirname, 'fixtures', 'reports');
const fixture = (name: string) => readFileSync(join(fixtures, name), 'latin1');
const DOMAIN = 'abuse.example.net';

const CUSTOMER: CustomerContact = { id: 'c-42', name: 'Erika Mustermann', email: 'erika@customer.example', language: 'de', time_zone: 'Europe/Berlin' };

/** Attribution and incidents as small stand-ins over the real store handle (their modules are other roles'). */
function ports(evidence: EvidenceInput[], options: { failAttribute?: boolean; failFor?: string } = {}): DeskPorts {
  return {
    async attribute(db, q) {
      if (options.failAttribute || q.ip === options.failFor) throw new Error('store went away');
      // Touch the store through the handle we were given: a transaction must be usable here.
      await db.selectFrom('desk_reports').select('id').limit(1).execute();
      if (q.ip === '192.0.2.7') return { kind: 'customer', customerId: CUSTOMER.id };
      if (q.ip === '100.64.0.1' && !q.port) return { kind: 'ambiguous', reason: 'a CGNAT address without a port' };
      return { kind: 'unknown' };
    },
    async recordEvidence(_db, e) {
      evidence.push(e);
      return { incidentId: `inc-${evidence.length}`, opened: evidence.length === 1 };
    },
  };
}

let g: TestGateway;
let store: Store;
let relay: SmtpSink;
const evidence: EvidenceInput[] = [];

before(async () => {
  store = await openStore('pglite-memory:');
  relay = await startSmtpSink(join(mkdtempSync(join(tmpdir(), 'bs-desk-')), 'relay'));
  g = await startTestGateway({}, { store, routes: [deskRoute(store.db, { abuseDomain: DOMAIN }, ports(evidence))] });
});
after(async () => {
  await g?.close();
  await relay?.stop();
  await store?.close();
});

test('an ARF report to 192-0-2-7@abuse.example.net is stored, attributed, evidence recorded and a forward job queued', async () => {
  const r = await swaks(g.port, ['--from', 'fbl@reporter.example', '--to', `192-0-2-7@${DOMAIN}`, '--data', '-'], fixture('sisimai-arf-15.eml'));
  assert.match(r.last, /^250 /, r.transcript);
  const rows = await store.db.selectFrom('desk_reports').selectAll().where('ip', '=', '192.0.2.7').execute();
  assert.equal(rows.length, 1);
  const row = rows[0]!;
  assert.equal(row.via, 'alias');
  assert.equal(row.kind, 'arf');
  assert.equal(row.state, 'attributed');
  assert.equal(row.customer_id, 'c-42');
  assert.equal(row.incident_id, 'inc-1');
  assert.equal(row.reporter, 'fbl@reporter.example');
  assert.equal(new Date(row.observed_at!).toISOString(), '2015-04-29T23:34:45.000Z');
  assert.equal(row.time_source, 'arrival-date');
  assert.equal(row.port, null, "the report's Source-Port is about another address");
  assert.equal(evidence.length, 1);
  assert.equal(evidence[0]!.source, 'arf');
  assert.equal(evidence[0]!.ip, '192.0.2.7');
  const jobs = await store.db.selectFrom('jobs').selectAll().where('kind', '=', FORWARD_JOB).execute();
  assert.equal(jobs.length, 1);
  assert.deepEqual(jobs[0]!.payload, { reportId: row.id });

  // The forward job: to the customer through a real relay (smtp-sink), in German, Berlin time.
  const handlers = forwardHandlers(store.db, { notify: { relay: `smtp://127.0.0.1:${relay.port}` } as never }, { abuseDomain: DOMAIN }, 'mx.example.net', {
    getCustomer: async (_db, id) => (id === CUSTOMER.id ? CUSTOMER : null),
  });
  await handlers[FORWARD_JOB]!({ reportId: row.id }, jobs[0]!);
  const sent = relay.envelopes();
  assert.equal(sent.length, 1);
  const mail = sent[0]!;
  assert.deepEqual(mail.rcptTo, ['erika@customer.example']);
  assert.equal(mail.mailFrom, `abuse@${DOMAIN}`, "the desk's mailbox as envelope sender");
  assert.match(mail.text, /^Auto-Submitted: auto-generated/m);
  assert.match(mail.text, /Content-Type: text\/rfc822-headers/);
  assert.match(mail.text, /Missbrauchsmeldung/);
  assert.match(mail.text, /2015-04-30 01:34:45 (GMT\+2|CEST)/, 'time in the customer zone');
  assert.doesNotMatch(mail.text, /reporter\.example|returnpath|fbl@/i, "the reporter's identity stays with the desk");
  assert.match(mail.text, /ein Dritter/);
  const after1 = await store.db.selectFrom('desk_reports').select('state').where('id', '=', row.id).executeTakeFirstOrThrow();
  assert.equal(after1.state, 'forwarded');
  // Running the job again sends nothing more.
  await handlers[FORWARD_JOB]!({ reportId: row.id }, jobs[0]!);
  assert.equal(relay.envelopes().length, 1);
});

test('free text to abuse@ about an address no customer held lands in the queue with the reason, same 250', async () => {
  const r = await swaks(g.port, ['--from', 'staff@hotmail.example', '--to', `abuse@${DOMAIN}`, '--data', '-'], fixture('sisimai-arf-22.eml'));
  assert.match(r.last, /^250 2\.0\.0 Ok: report received by the abuse desk/, r.transcript);
  const row = await store.db.selectFrom('desk_reports').selectAll().where('via', '=', 'abuse').executeTakeFirstOrThrow();
  assert.equal(row.state, 'unattributed');
  assert.equal(row.ip, '203.0.113.245');
  assert.equal(row.kind, 'free-text');
  assert.match(row.reason ?? '', /^unknown/);
  assert.equal(row.time_source, 'received');
  // Headers only: the attached message's body line "Nyaan" after its header block is not stored.
  assert.ok(row.headers?.includes('Subject: Nyaan'));
  assert.doesNotMatch(row.headers ?? '', /^Nyaan$/m);
});

test('the same answer for assigned and unassigned addresses, after the same minimum time (the reporter learns nothing)', async () => {
  let t = Date.now();
  const a = await swaks(g.port, ['--from', 'x@reporter.example', '--to', `192.0.2.7@${DOMAIN}`, '--data', '-'], fixture('pyxarf-login-attack.eml'));
  const tookA = Date.now() - t;
  t = Date.now();
  const b = await swaks(g.port, ['--from', 'x@reporter.example', '--to', `198-51-100-9@${DOMAIN}`, '--data', '-'], fixture('pyxarf-login-attack.eml'));
  const tookB = Date.now() - t;
  assert.ok(tookA >= 300 && tookB >= 300, `both wait for the floor (${tookA} ms, ${tookB} ms)`);
  assert.equal(a.last, b.last);
  assert.match(a.last, /^250 /);
});

test('a CGNAT address without a port is ambiguous: queued with the reason', async () => {
  const r = await swaks(g.port, ['--from', 'x@reporter.example', '--to', `100-64-0-1@${DOMAIN}`, '--data', '-'], fixture('sisimai-arf-19.eml'));
  assert.match(r.last, /^250 /);
  const row = await store.db.selectFrom('desk_reports').selectAll().where('ip', '=', '100.64.0.1').executeTakeFirstOrThrow();
  assert.equal(row.state, 'unattributed');
  assert.match(row.reason ?? '', /^ambiguous: a CGNAT address without a port/);
});

test('store trouble during intake is 451 and leaves no row', async () => {
  const s = await openStore('pglite-memory:');
  const gw = await startTestGateway({}, { store: s, routes: [deskRoute(s.db, { abuseDomain: DOMAIN }, ports([], { failAttribute: true }))] });
  try {
    const r = await swaks(gw.port, ['--from', 'x@reporter.example', '--to', `192-0-2-7@${DOMAIN}`, '--data', '-'], fixture('sisimai-arf-15.eml'));
    assert.match(r.last, /^451 4\.3\.0/, r.transcript);
    const rows = await s.db.selectFrom('desk_reports').selectAll().execute();
    assert.equal(rows.length, 0, 'the transaction rolled back');
  } finally {
    await gw.close();
    await s.close();
  }
});

test("malware aimed at an alias is the gateway scan's: refused before the desk, no row", async () => {
  const before = await store.db.selectFrom('desk_reports').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow();
  const r = await swaks(g.port, ['--from', 'worm@infected.example', '--to', `192-0-2-7@${DOMAIN}`, '--attach-type', 'application/octet-stream', '--attach-name', 'eicar.com', '--attach', '-'], EICAR);
  assert.match(r.last, /^5\d\d /, r.transcript);
  const afterCount = await store.db.selectFrom('desk_reports').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow();
  assert.equal(Number(afterCount.n), Number(before.n));
});

test('one message to two aliases is two reports, one per address', async () => {
  const r = await swaks(g.port, ['--from', 'x@reporter.example', '--to', `192.0.2.7@${DOMAIN},203-0-113-50@${DOMAIN}`, '--data', '-'], fixture('sisimai-arf-01.eml'));
  assert.match(r.last, /^250 /, r.transcript);
  const rows = await store.db.selectFrom('desk_reports').selectAll().where('reporter', '=', 'x@reporter.example').where('kind', '=', 'arf').where('time_source', '=', 'arrival-date').where('zoneless', '=', true).execute();
  assert.deepEqual(rows.map((row) => row.ip).sort(), ['192.0.2.7', '203.0.113.50']);
  assert.deepEqual(rows.map((row) => row.state).sort(), ['attributed', 'unattributed']);
});

test('two aliases in one message are stored together or not at all', async () => {
  const s = await openStore('pglite-memory:');
  const gw = await startTestGateway({}, { store: s, routes: [deskRoute(s.db, { abuseDomain: DOMAIN }, ports([], { failFor: '203.0.113.66' }), { answerFloorMs: 0 })] });
  try {
    const r = await swaks(gw.port, ['--from', 'x@reporter.example', '--to', `192-0-2-7@${DOMAIN},203-0-113-66@${DOMAIN}`, '--data', '-'], fixture('sisimai-arf-15.eml'));
    assert.match(r.last, /^451 4\.3\.0/, r.transcript);
    assert.equal((await s.db.selectFrom('desk_reports').selectAll().execute()).length, 0, 'the first address is not stored alone');
    assert.equal((await s.db.selectFrom('jobs').selectAll().execute()).length, 0);
  } finally {
    await gw.close();
    await s.close();
  }
});

test('recipients outside the desk are not the route’s: a bogus alias is refused by the gateway', async () => {
  const r = await swaks(g.port, ['--from', 'x@reporter.example', '--to', `010-0-0-1@${DOMAIN}`, '--data', '-'], fixture('sisimai-arf-15.eml'));
  assert.match(r.last, /^5\d\d /);
});

test('redaction: the reporter side of the header block is gone, the hop naming the customer stays', () => {
  const block = [
    'Received: from mx1.reporter.example (mx1.reporter.example [198.51.100.2]) by mx2.reporter.example; Mon, 2 Mar 2026 09:13:15 +0100',
    'Received: from pc7.isp.example (pc7.isp.example [192.0.2.7])',
    '\tby mx1.reporter.example (Postfix) with ESMTP id 1; Mon, 2 Mar 2026 09:13:14 +0100',
    'Received: from [10.0.0.5] by pc7.isp.example; Mon, 2 Mar 2026 09:13:13 +0100',
    'To: victim@reporter.example',
    'Delivered-To: victim@reporter.example',
    'Authentication-Results: mx1.reporter.example; spf=fail',
    'From: forged@bank.example',
    'Subject: your invoice',
    '',
  ].join('\r\n');
  const out = redactForCustomer(block, '192.0.2.7');
  assert.doesNotMatch(out, /reporter\.example/);
  assert.match(out, /^Received: from pc7\.isp\.example \(pc7\.isp\.example \[192\.0\.2\.7\]\)\r\n\tby \[the recipient's server\]; Mon, 2 Mar 2026 09:13:14 \+0100\r\n/);
  assert.match(out, /Received: from \[10\.0\.0\.5\] by pc7\.isp\.example/);
  assert.match(out, /Subject: your invoice/);
});

test('compose: language fallback, zone fallback, hostile names stay one line', async () => {
  assert.equal(timeInZone(new Date('2026-01-01T12:00:00Z'), 'Not/AZone').zone, 'UTC');
  const raw = (
    await composeForward(
      { ip: '192.0.2.7', port: 4242, observedAt: new Date('2026-01-01T12:00:00Z'), summary: 'x\r\nBcc: evil@example.org', malware: [], headers: null },
      { ...CUSTOMER, name: 'Eve\r\nBcc: evil@example.org', language: 'xx', time_zone: 'America/New_York' },
      'Abuse desk <abuse@abuse.example.net>',
    )
  ).toString();
  assert.doesNotMatch(raw, /^Bcc:/m);
  assert.match(raw, /Abuse report about your connection/);
  assert.match(raw, /2026-01-01 07:00:00 EST/);
  assert.match(raw, /port 4242/);
});

test('the forward read back by an independent parser (Python email): our text decoded, header block as text/rfc822-headers, no body', async () => {
  const { execFileSync } = await import('node:child_process');
  const raw = await composeForward(
    {
      ip: '192.0.2.7',
      port: null,
      observedAt: new Date('2026-03-02T08:13:14Z'),
      summary: 'Feedback report (ARF), type abuse about mail from 192.0.2.7.',
      malware: ['Worm.Mydoom.A'],
      headers: 'Received: from pc7 ([192.0.2.7]) by mx.reporter.example; Mon, 2 Mar 2026 09:13:14 +0100\r\nTo: victim@reporter.example\r\nSubject: Grüße\r\n',
    },
    CUSTOMER,
    'Abuse desk <abuse@abuse.example.net>',
  );
  const script = `
import sys, json, email
from email import policy
m = email.message_from_bytes(sys.stdin.buffer.read(), policy=policy.default)
parts = [p for p in m.walk() if not p.is_multipart()]
out = {'ct': m.get_content_type(), 'auto': m['Auto-Submitted'], 'to': m['To'], 'subject': str(m['Subject']), 'types': [p.get_content_type() for p in parts],
       'text': parts[0].get_content(), 'headers': parts[1].get_payload(decode=True).decode('utf-8', 'replace') if len(parts) > 1 else '', 'defects': [str(d) for d in m.defects]}
print(json.dumps(out))`;
  const got = JSON.parse(execFileSync('python3', ['-c', script], { input: raw }).toString());
  assert.equal(got.ct, 'multipart/mixed');
  assert.equal(got.auto, 'auto-generated');
  assert.equal(got.to, 'erika@customer.example');
  assert.match(got.subject, /Missbrauchsmeldung/);
  assert.deepEqual(got.types, ['text/plain', 'text/rfc822-headers']);
  assert.match(got.text, /ein Dritter/);
  assert.match(got.text, /2026-03-02 09:13:14 (GMT\+1|MEZ|CET)/);
  assert.match(got.text, /Worm\.Mydoom\.A/);
  assert.match(got.headers, /^Received: from pc7 \(\[192\.0\.2\.7\]\) by \[the recipient's server\];/);
  assert.doesNotMatch(got.headers, /reporter\.example/);
  assert.deepEqual(got.defects, []);
});
