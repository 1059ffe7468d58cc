import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { stringify } from 'yaml';
import { startSmtpSink, type SmtpSink } from '../../src/replay/processes.ts';
import { quarantineMessage } from '../../src/store/quarantine.ts';
import { openStore } from '../../src/store/store.ts';

const BIN = new URL('../../bin/backstop.js', import.meta.url).pathname;
function backstop(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

let sink: SmtpSink;
let configFile: string;
let heldId: string;
const RAW = 'From: worm@example.org\r\nTo: user@example.net\r\nSubject: <script>alert(1)</script>\r\nMessage-ID: <q1@example.org>\r\n\r\nTHE-BODY-IS-THE-PAYLOAD\r\n';

before(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bs-qcli-'));
  sink = await startSmtpSink(join(dir, 'sink'));
  const store = `pglite:${join(dir, 'db')}`;
  configFile = join(dir, 'backstop.yaml');
  writeFileSync(configFile, stringify({ domains: ['example.net'], nextHop: `smtp://127.0.0.1:${sink.port}`, store, dataDir: join(dir, 'data') }));
  const s = await openStore(store);
  heldId = await quarantineMessage(s.db, {
    messageLogId: randomUUID(), clientIp: '192.0.2.7', helo: 'pc', mailFrom: 'worm@example.org', rcptTo: ['user@example.net', 'other@example.net'],
    messageId: '<q1@example.org>', subject: '<script>alert(1)</script>', verdict: 'infected', verdictDetail: 'Worm.Mydoom.A', raw: Buffer.from(RAW),
  });
  await s.close();
});
after(() => sink.stop());

test('quarantine list shows the held message with its verdict and recipients', async () => {
  const r = await backstop(['quarantine', 'list', '--config', configFile]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`^${heldId}\\t\\S+\\theld\\tinfected Worm\\.Mydoom\\.A\\t<worm@example\\.org>\\tuser@example\\.net,other@example\\.net$`, 'm'));
});

test('quarantine show prints the header block and never the body', async () => {
  const r = await backstop(['quarantine', 'show', heldId, '--config', configFile]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^verdict    infected Worm\.Mydoom\.A$/m);
  assert.match(r.stdout, /^Subject: <script>alert\(1\)<\/script>$/m);
  assert.doesNotMatch(r.stdout, /THE-BODY-IS-THE-PAYLOAD/);
});

test('an unknown id is exit 1, a malformed command exit 2', async () => {
  assert.equal((await backstop(['quarantine', 'show', randomUUID(), '--config', configFile])).code, 1);
  assert.equal((await backstop(['quarantine', 'show', "x' or 1=1 --", '--config', configFile])).code, 1);
  const bad = await backstop(['quarantine', 'frobnicate', '--config', configFile]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /expected list, show, release or delete/);
});

test('release delivers the whole message to the original recipients once; a second release is refused', async () => {
  const r = await backstop(['quarantine', 'release', heldId, '--config', configFile]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^released /);
  const [delivered] = sink.envelopes();
  assert.ok(delivered);
  assert.deepEqual(delivered.rcptTo, ['user@example.net', 'other@example.net']);
  assert.equal(delivered.mailFrom, 'worm@example.org');
  assert.match(delivered.text, /THE-BODY-IS-THE-PAYLOAD/);
  const again = await backstop(['quarantine', 'release', heldId, '--config', configFile]);
  assert.equal(again.code, 1);
  assert.equal(sink.envelopes().length, 1);
});

test('delete drops it; both actions are in the audit log', async () => {
  const r = await backstop(['quarantine', 'delete', heldId, '--config', configFile]);
  assert.equal(r.code, 0, r.stderr);
  const list = await backstop(['quarantine', 'list', '--all', '--config', configFile]);
  assert.match(list.stdout, /\tdeleted\t/);
  const { parse } = await import('yaml');
  const { readFileSync } = await import('node:fs');
  const s = await openStore(parse(readFileSync(configFile, 'utf8')).store);
  const audit = await s.db.selectFrom('audit').select(['action', 'target']).where('target', '=', heldId).execute();
  await s.close();
  assert.deepEqual(audit.map((a) => a.action).sort(), ['quarantine.delete', 'quarantine.release']);
});

test('config check prints the effective configuration and masks secrets; a bad file exits 2 naming the key', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bs-cfgcli-'));
  const good = join(dir, 'good.yaml');
  writeFileSync(good, 'store: "postgres://backstop:s3cret@db.example/backstop"\ndomains: [example.net]\n');
  const r = await backstop(['config', 'check', '--config', good]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /store: postgres:\/\/backstop:\*\*\*\*\*@db\.example\/backstop/);
  assert.doesNotMatch(r.stdout, /s3cret/);
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, 'actions: { infected: bounce }\n');
  const b = await backstop(['config', 'check', '--config', bad]);
  assert.equal(b.code, 2);
  assert.match(b.stderr, /actions\.infected: got "bounce": "bounce" is not offered/);
});

test('outbox list, show, cancel and retry over the job queue; a job in the wrong state is exit 1', async () => {
  const { parse } = await import('yaml');
  const { readFileSync } = await import('node:fs');
  const { enqueue } = await import('../../src/store/jobs.ts');
  const s = await openStore(parse(readFileSync(configFile, 'utf8')).store);
  const id = (await enqueue(s.db, { kind: 'postmaster-notice', payload: { subject: 'possible virus found: Worm.Mydoom.A' } }))!;
  await s.close();
  const list = await backstop(['outbox', 'list', '--config', configFile]);
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, new RegExp(`^${id}\\tpostmaster-notice\\tqueued\\t0\\t`, 'm'));
  const show = await backstop(['outbox', 'show', id, '--config', configFile]);
  assert.match(show.stdout, /possible virus found: Worm\.Mydoom\.A/);
  assert.equal((await backstop(['outbox', 'cancel', id, '--config', configFile])).code, 0);
  assert.equal((await backstop(['outbox', 'cancel', id, '--config', configFile])).code, 1);
  assert.equal((await backstop(['outbox', 'retry', id, '--config', configFile])).code, 0);
  assert.match((await backstop(['outbox', 'list', '--state', 'queued', '--config', configFile])).stdout, new RegExp(id));
  assert.equal((await backstop(['outbox', 'list', '--state', 'bogus', '--config', configFile])).code, 2);
});

test('outbox list says which jobs may have gone out twice and which node sent them; --possible-duplicates lists only those', async () => {
  const { parse } = await import('yaml');
  const { readFileSync } = await import('node:fs');
  const { enqueue } = await import('../../src/store/jobs.ts');
  const s = await openStore(parse(readFileSync(configFile, 'utf8')).store);
  const dup = (await enqueue(s.db, { kind: 'abuse-report', payload: { n: 'dup' } }))!;
  const once = (await enqueue(s.db, { kind: 'abuse-report', payload: { n: 'once' } }))!;
  await s.db.updateTable('jobs').set({ state: 'done', possible_duplicate: true, sent_by: 'node-2:4242' }).where('id', '=', dup).execute();
  await s.db.updateTable('jobs').set({ state: 'done', sent_by: 'node-1:77' }).where('id', '=', once).execute();
  await s.close();
  const all = await backstop(['outbox', 'list', '--kind', 'abuse-report', '--config', configFile]);
  assert.equal(all.code, 0, all.stderr);
  assert.match(all.stdout, new RegExp(`^${dup}\tabuse-report\tdone\t.*\tnode-2:4242\tpossible-duplicate$`, 'm'));
  assert.match(all.stdout, new RegExp(`^${once}\tabuse-report\tdone\t.*\tnode-1:77\t$`, 'm'));
  const only = await backstop(['outbox', 'list', '--possible-duplicates', '--config', configFile]);
  assert.match(only.stdout, new RegExp(dup));
  assert.doesNotMatch(only.stdout, new RegExp(once));
});

test('outbox approve takes several ids in one process: each on its own line, exit 1 when any failed, the others still approved', async () => {
  const { parse } = await import('yaml');
  const { readFileSync } = await import('node:fs');
  const { enqueue } = await import('../../src/store/jobs.ts');
  const s = await openStore(parse(readFileSync(configFile, 'utf8')).store);
  const held = [];
  for (let i = 0; i < 3; i++) held.push((await enqueue(s.db, { kind: 'backscatter-complaint', payload: { n: i }, state: 'review' }))!);
  const queued = (await enqueue(s.db, { kind: 'postmaster-notice', payload: { n: 'q' } }))!;
  await s.close();

  const all = await backstop(['outbox', 'approve', held[0]!, held[1]!, '--config', configFile]);
  assert.equal(all.code, 0, all.stderr);
  assert.deepEqual(all.stdout.trim().split('\n'), [`approve ${held[0]}`, `approve ${held[1]}`]);

  // One approved already, one never held, one unknown, one still held: only the last is done, and the exit says some failed.
  const unknown = randomUUID();
  const mixed = await backstop(['outbox', 'approve', held[0]!, queued, unknown, held[2]!, '--config', configFile]);
  assert.equal(mixed.code, 1);
  assert.deepEqual(mixed.stdout.trim().split('\n'), [`approve ${held[2]}`]);
  assert.deepEqual(mixed.stderr.trim().split('\n'), [`cannot approve ${held[0]}: it is queued`, `cannot approve ${queued}: it is queued`, `no job with id ${unknown}`]);
  const review = await backstop(['outbox', 'list', '--state', 'review', '--config', configFile]);
  for (const id of held) assert.doesNotMatch(review.stdout, new RegExp(id));
  // One listing of several kinds, and of those kinds only.
  const kinds = await backstop(['outbox', 'list', '--kind', 'backscatter-complaint', '--kind', 'postmaster-notice', '--config', configFile]);
  for (const id of [...held, queued]) assert.match(kinds.stdout, new RegExp(`^${id}\\t`, 'm'));
  assert.deepEqual(new Set(kinds.stdout.trim().split('\n').map((l) => l.split('\t')[1])), new Set(['backscatter-complaint', 'postmaster-notice']));
  assert.doesNotMatch((await backstop(['outbox', 'list', '--kind', 'postmaster-notice', '--config', configFile])).stdout, /backscatter-complaint/);

  // cancel takes several too; show still takes exactly one; approve without an id is a usage error.
  assert.equal((await backstop(['outbox', 'cancel', held[0]!, held[1]!, '--config', configFile])).code, 0);
  assert.equal((await backstop(['outbox', 'show', held[0]!, held[1]!, '--config', configFile])).code, 2);
  assert.equal((await backstop(['outbox', 'approve', '--config', configFile])).code, 2);
});
