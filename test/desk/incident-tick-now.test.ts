/*
 * `backstop incident tick --now TIME`: the desk's fake clock, as the outbreak
 * replay uses it — the real binary over a PGlite directory store, the notices
 * going to a real smtp-sink relay. Before the grace period ends nothing
 * fires; past it the line is restricted, listed and told so, dated TIME.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { importCustomers } from '../../src/desk/customers.ts';
import { recordEvidence } from '../../src/desk/incidents.ts';
import { importStaticAssignments } from '../../src/desk/leases.ts';
import { startSmtpSink, type SmtpSink } from '../../src/replay/processes.ts';
import { openStore } from '../../src/store/store.ts';

const dir = mkdtempSync(join(tmpdir(), 'bs-tick-now-'));
const configFile = join(dir, 'backstop.yaml');
const listFile = join(dir, 'restricted.txt');
const H = 3_600_000;
let relay: SmtpSink;
let incidentId = '';
const opened = new Date();

const backstop = (...args: string[]) => {
  const r = spawnSync(process.execPath, [join(import.meta.dirname, '../../bin/backstop.js'), ...args, '--config', configFile], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
};
const state = () => /state\s+(\S+)/.exec(backstop('incident', 'show', incidentId).out)?.[1];

before(async () => {
  relay = await startSmtpSink(join(dir, 'relay'));
  writeFileSync(
    configFile,
    [
      `store: "pglite:${join(dir, 'db')}"`,
      'nextHop: smtp://127.0.0.1:1',
      'smtp: { hostname: mx.isp.example }',
      `notify: { relay: "smtp://127.0.0.1:${relay.port}", from: backstop@isp.example, postmaster: postmaster@isp.example }`,
      'desk:',
      '  graceHours: 72',
      '  notice: { from: abuse-desk@isp.example }',
      `  enforcement: { listFile: ${listFile} }`,
      '',
    ].join('\n'),
  );
  const store = await openStore(`pglite:${join(dir, 'db')}`);
  await importCustomers(store.db, 'id,name,email,language,time_zone\nc-7,Seven,seven@home.example,en,UTC\n');
  await importStaticAssignments(store.db, [{ customerId: 'c-7', network: '192.0.2.8/30', from: new Date('2025-01-01T00:00:00Z'), to: null }], { format: 'static-csv', file: 'test' });
  incidentId = (await recordEvidence(store.db, { customerId: 'c-7', source: 'gateway', ip: '192.0.2.9', observedAt: opened, summary: 'worm', malware: ['Win.Test.EICAR_HDB-1'] }, opened)).incidentId;
  await store.close();
});
after(() => relay.stop());

test('tick --now: nothing before the grace period ends; past it restricted, listed and told, dated TIME', () => {
  const first = backstop('incident', 'tick');
  assert.equal(first.code, 0, first.err);
  assert.equal(state(), 'notified');
  assert.equal(relay.envelopes().length, 1, 'the opening notice');

  const early = backstop('incident', 'tick', '--now', new Date(opened.getTime() + 71 * H).toISOString());
  assert.equal(early.code, 0, early.err);
  assert.equal(state(), 'notified', 'the grace period still runs at +71 h');

  const at = new Date(opened.getTime() + 73 * H).toISOString();
  const late = backstop('incident', 'tick', '--now', at);
  assert.equal(late.code, 0, late.err);
  const shown = backstop('incident', 'show', incidentId).out;
  assert.match(shown, /state\s+restricted/);
  assert.match(shown, new RegExp(`${at.slice(0, 16)}.*\\tgrace-expired\\tnotified -> restricted\\ttimer`));
  assert.equal(readFileSync(listFile, 'utf8'), '192.0.2.8/30\n');
  const notices = relay.envelopes();
  assert.equal(notices.length, 2, 'the restriction notice');
  assert.deepEqual(notices.map((m) => m.rcptTo[0]), ['seven@home.example', 'seven@home.example']);
  assert.ok(notices.some((m) => /^Subject: Your Internet connection has been restricted/m.test(m.text)));

  assert.equal(backstop('incident', 'tick', '--now', 'tomorrow').code, 2);
  assert.equal(backstop('incident', 'list', '--now', at).code, 2);
});
