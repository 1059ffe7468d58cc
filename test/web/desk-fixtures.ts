/*
 * test/web/desk-fixtures — abuse-desk data for the console tests (HTTP and
 * browser): a customer whose CRM record is hostile, incidents brought to a
 * state through the real lifecycle (recordEvidence + transition under a fake
 * clock, as the timers would), a report left in the desk's queue, and a
 * lease import with a hostile file name.
 */
import { importStaticAssignments } from '../../src/desk/leases.ts';
import { DEFAULT_SETTINGS, recordEvidence, transition } from '../../src/desk/incidents.ts';
import { takeReport } from '../../src/desk/intake.ts';
import { deskPorts } from '../../src/desk/wiring.ts';
import type { Store } from '../../src/store/store.ts';
import { HOSTILE } from './helpers.ts';

const H = 3_600_000;

// What a worm, a reporter or a careless CRM export can put in front of the desk: markup, CRLF, a right-to-left override, 5,000 characters.
export const DESK_HOSTILE = {
  name: `<script>alert("name")</script>\r\nX-Injected: 1 \u202Egpj.exe ${'N'.repeat(5000)}`,
  email: `"><img src=x onerror=alert(1)>@evil.example`,
  summary: `<script>alert("summary")</script>\r\nX-Injected: 1 \u202Etxt.exe ${'S'.repeat(5000)}`,
  headers: `Received: from pc ([192.0.2.50])\r\nSubject: <script>alert("hdr")</script> \u202Egpj.exe\r\nX-Long: ${'H'.repeat(5000)}\r\n`,
  malware: HOSTILE.detail,
  reporter: `"><script>alert('reporter')</script>\u202E@evil.example`,
  file: `<img src=x onerror=alert('file')>\u202E.csv`,
};

export async function hostileCustomer(store: Store, id: string): Promise<void> {
  await store.db.insertInto('customers').values({ id, name: DESK_HOSTILE.name, email: DESK_HOSTILE.email, language: 'en', time_zone: 'Europe/Berlin' }).execute();
}

/**
 * An incident for `customerId` walked through the lifecycle to `state`:
 * evidence, notice sent at `noticeAt`, and — for restricted — the grace timer
 * fired once the grace period ran out. Returns the incident id.
 */
export async function incidentIn(store: Store, customerId: string, state: 'suspected' | 'notified' | 'restricted', noticeAt: Date, ip = '198.51.100.3'): Promise<string> {
  const { incidentId } = await recordEvidence(
    store.db,
    { customerId, source: 'arf', ip, observedAt: new Date(noticeAt.getTime() - 60_000), summary: DESK_HOSTILE.summary, headers: DESK_HOSTILE.headers, malware: [DESK_HOSTILE.malware, 'Win.Worm.Mydoom'] },
    noticeAt,
  );
  if (state === 'suspected') return incidentId;
  const sent = await transition(store.db, incidentId, 'notice-sent', 'system', noticeAt);
  if (!sent.ok) throw new Error(sent.refused);
  if (state === 'notified') return incidentId;
  const expired = await transition(store.db, incidentId, 'grace-expired', 'timer', new Date(noticeAt.getTime() + DEFAULT_SETTINGS.graceMs + 60_000));
  if (!expired.ok) throw new Error(expired.refused);
  return incidentId;
}

/** A restricted incident whose grace ran out four days ago. */
export const restrictedIncident = (store: Store, customerId: string) => incidentIn(store, customerId, 'restricted', new Date(Date.now() - 96 * H));

/** A report about an address nobody holds: it lands in the desk's queue with the reason. */
export async function queuedReport(store: Store, ip = '203.0.113.9'): Promise<string> {
  const r = await takeReport(store.db, deskPorts({}), {
    via: 'form',
    reporter: DESK_HOSTILE.reporter,
    ip,
    port: null,
    parsed: null,
    form: { observedAt: new Date(Date.now() - 2 * H), zoneless: false, summary: DESK_HOSTILE.summary, headers: DESK_HOSTILE.headers },
  });
  if (r.state !== 'unattributed') throw new Error(`expected the report in the queue, got ${r.state}`);
  return r.id;
}

/** 198.51.100.0/29 assigned statically to `customerId` since 2025, from a file with a hostile name. */
export async function staticImport(store: Store, customerId: string): Promise<void> {
  await importStaticAssignments(store.db, [{ customerId, network: '198.51.100.0/29', from: new Date('2025-01-01T00:00:00Z'), to: null }], { format: 'static-csv', file: DESK_HOSTILE.file });
}
