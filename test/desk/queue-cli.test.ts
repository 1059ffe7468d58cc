/*
 * `backstop desk-queue list|show|assign|dismiss` as an operator runs it: the
 * real binary over a PGlite directory store — the queue listed and one report
 * shown with terminal escapes cleaned, an unknown customer refused, an
 * assignment that files the report once (evidence, forward job, audit as
 * cli:USER), a dismissal that needs its reason, and the exit codes.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { FORWARD_JOB, takeReport } from '../../src/desk/intake.ts';
import { deskPorts } from '../../src/desk/wiring.ts';
import { openStore } from '../../src/store/store.ts';

const dir = mkdtempSync(join(tmpdir(), 'bs-desk-queue-cli-'));
const storeUrl = `pglite:${join(dir, 'db')}`;
const configFile = join(dir, 'backstop.yaml');
const ESC = '\u001b[31m';
let first = '';
let second = '';

// The operator is USER (SUDO_USER would win: not set here).
const { SUDO_USER: _sudo, ...env } = process.env;
const backstop = (...args: string[]) => {
  const r = spawnSync(process.execPath, [join(import.meta.dirname, '../../bin/backstop.js'), ...args, '--config', configFile], { encoding: 'utf8', timeout: 60_000, env: { ...env, USER: 'eve' } });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

before(async () => {
  writeFileSync(configFile, `store: "${storeUrl}"\nnextHop: smtp://127.0.0.1:1\ndesk:\n  abuseDomain: abuse.isp.example\n  enforcement: { listFile: ${join(dir, 'list.txt')} }\n`);
  const store = await openStore(storeUrl);
  await store.db.insertInto('customers').values({ id: 'c-42', name: 'Erika', email: 'erika@customer.example', language: 'de', time_zone: 'Europe/Berlin' }).execute();
  const report = (ip: string) =>
    takeReport(store.db, deskPorts({}), {
      via: 'form',
      reporter: `${ESC}evil\u202E@reporter.example`,
      ip,
      port: null,
      parsed: null,
      form: { observedAt: new Date('2026-03-01T10:00:00Z'), zoneless: false, summary: `spam ${ESC}red\r\nX-Injected: 1`, headers: `Received: from pc ([${ip}])\r\nSubject: ${ESC}hi \u202Eexe.txt\r\n` },
    });
  first = (await report('203.0.113.7')).id;
  second = (await report('203.0.113.8')).id;
  await store.close();
});

test('list, show, assign (refused, done, again), dismiss (needs its reason), exit codes', async () => {
  const list = backstop('desk-queue', 'list');
  assert.equal(list.code, 0, list.err);
  assert.match(list.out, new RegExp(`^${first}\\t\\S+\\tform/form\\t203\\.0\\.113\\.7\\t2026-03-01T10:00:00\\.000Z\\tunknown: no customer held the address then$`, 'm'));
  assert.match(list.out, new RegExp(`^${second}\\t`, 'm'));

  const show = backstop('desk-queue', 'show', first);
  assert.equal(show.code, 0, show.err);
  assert.match(show.out, /^state\s+in the queue$/m);
  assert.match(show.out, /^summary\s+spam \?\[31mred\?\?X-Injected: 1$/m, 'the summary on one line, its escape and CRLF neutralised');
  assert.match(show.out, /^attribute now\s+unknown$/m);
  assert.match(show.out, /^headers:\n  Received: from pc \(\[203\.0\.113\.7\]\)\n  Subject: \?\[31mhi \?exe\.txt$/m);
  assert.doesNotMatch(show.out, /[\u001b\u202e\r]/);

  const unknown = backstop('desk-queue', 'assign', first, 'c-404');
  assert.equal(unknown.code, 1);
  assert.match(unknown.err, /^refused: no customer with id c-404$/m);

  const assigned = backstop('desk-queue', 'assign', first, 'c-42');
  assert.equal(assigned.code, 0, assigned.err);
  const m = new RegExp(`^${first}: assigned to c-42, incident ([0-9a-f-]{36}) \\(opened\\), forward queued$`, 'm').exec(assigned.out);
  assert.ok(m, assigned.out);
  const again = backstop('desk-queue', 'assign', first, 'c-42');
  assert.equal(again.code, 1);
  assert.match(again.err, /^refused: already assigned to customer c-42 by cli:eve at \S+Z$/m);
  assert.match(backstop('desk-queue', 'show', first).out, /^assigned\s+to c-42 by cli:eve at /m);

  assert.equal(backstop('desk-queue', 'dismiss', second).code, 2, 'no --reason is a usage error');
  const blank = backstop('desk-queue', 'dismiss', second, '--reason', '  ');
  assert.equal(blank.code, 2);
  assert.match(blank.err, /refused: a dismissal needs a reason/);
  const dismissed = backstop('desk-queue', 'dismiss', second, '--reason', `sinkhole\r\n${ESC}noise`);
  assert.equal(dismissed.code, 0, dismissed.err);
  assert.match(dismissed.out, new RegExp(`^${second}: dismissed \\(sinkhole \\?\\[31mnoise\\)$`, 'm'));
  assert.equal(backstop('desk-queue', 'list').out, '', 'the queue is empty now');

  assert.equal(backstop('desk-queue', 'show', '00000000-0000-4000-8000-000000000000').code, 1);
  assert.equal(backstop('desk-queue', 'assign', 'not-a-uuid', 'c-42').code, 1);
  assert.equal(backstop('desk-queue', 'assign', first).code, 2, 'assign needs a customer');
  assert.equal(backstop('desk-queue', 'explode').code, 2);
  assert.equal(backstop('desk-queue', 'list', '--reason', 'x').code, 2);

  // What the assignment wrote, read back from the store the binary used.
  const store = await openStore(storeUrl);
  try {
    const evidence = await store.db.selectFrom('incident_evidence').select(['incident_id', 'ip']).execute();
    assert.deepEqual(evidence, [{ incident_id: m![1], ip: '203.0.113.7' }]);
    const forwards = await store.db.selectFrom('jobs').select('payload').where('kind', '=', FORWARD_JOB).execute();
    assert.deepEqual(forwards.map((f) => f.payload), [{ reportId: first }]);
    const audit = await store.db.selectFrom('audit').select(['actor', 'action', 'target']).where('action', 'like', 'desk-report.%').orderBy('at').execute();
    assert.deepEqual(audit, [
      { actor: 'cli:eve', action: 'desk-report.assign', target: first },
      { actor: 'cli:eve', action: 'desk-report.dismiss', target: second },
    ]);
  } finally {
    await store.close();
  }
});
