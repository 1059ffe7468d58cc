/*
 * `backstop incident list|show|transition|tick` as an operator runs it: the
 * real binary over a PGlite directory store.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { recordEvidence } from '../../src/desk/incidents.ts';
import { openStore } from '../../src/store/store.ts';

const dir = mkdtempSync(join(tmpdir(), 'bs-incident-cli-'));
const configFile = join(dir, 'backstop.yaml');
let incidentId = '';

const backstop = (...args: string[]) => {
  const r = spawnSync(process.execPath, [join(import.meta.dirname, '../../bin/backstop.js'), ...args, '--config', configFile], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

before(async () => {
  writeFileSync(configFile, `store: "pglite:${join(dir, 'db')}"\nnextHop: smtp://127.0.0.1:1\ndesk:\n  abuseDomain: abuse.isp.example\n  enforcement: { listFile: ${join(dir, 'list.txt')} }\n`);
  const store = await openStore(`pglite:${join(dir, 'db')}`);
  const r = await recordEvidence(store.db, { customerId: 'c-42', source: 'arf', ip: '192.0.2.42', observedAt: new Date('2026-03-01T10:00:00Z'), summary: 'spam \u001b[31mred', malware: ['Win.Worm.X'] }, new Date());
  incidentId = r.incidentId;
  await store.close();
});

test('list, show, refused and allowed transitions, tick', () => {
  const list = backstop('incident', 'list', '--open');
  assert.equal(list.code, 0, list.err);
  assert.match(list.out, new RegExp(`^${incidentId}\\tc-42\\tsuspected\\t`, 'm'));

  const show = backstop('incident', 'show', incidentId);
  assert.equal(show.code, 0, show.err);
  assert.match(show.out, /state\s+suspected/);
  assert.match(show.out, /arf\t192\.0\.2\.42\tWin\.Worm\.X/);
  assert.doesNotMatch(show.out, /\u001b/);

  const refused = backstop('incident', 'transition', incidentId, 'attest');
  assert.equal(refused.code, 1);
  assert.match(refused.err, /refused: attestation applies to a restricted line, not suspected/);

  const hold = backstop('incident', 'transition', incidentId, 'hold');
  assert.equal(hold.code, 0, hold.err);
  assert.match(hold.out, /suspected -> evidence-hold/);
  assert.match(backstop('incident', 'show', incidentId).out, /evidence-hold\t.*cli:/);

  assert.equal(backstop('incident', 'transition', incidentId, 'explode').code, 2);
  assert.equal(backstop('incident', 'show', '00000000-0000-0000-0000-000000000000').code, 1);
  assert.equal(backstop('incident', 'show', 'not-a-uuid').code, 1);

  // tick: the opening notice is due; on hold it is not sent (the job is done, nothing fails)
  const tick = backstop('incident', 'tick');
  assert.equal(tick.code, 0, tick.err);
  assert.match(tick.out, /^ran 1, failed 0$/m);
  // unhold goes back to suspected and queues the notice again; the customer is unknown (no contact address), so it fails and waits for a retry
  assert.equal(backstop('incident', 'transition', incidentId, 'unhold').code, 0);
  const again = backstop('incident', 'tick');
  assert.equal(again.code, 1);
  assert.match(again.out, /^ran 0, failed 1$/m);
  assert.match(again.err, /the customer has no contact address/);
});
