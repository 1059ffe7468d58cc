/*
 * Backstop as a milter of a real, private Postfix: a client bound to
 * 127.7.7.7 → Postfix smtpd (smtpd_milters = inet:127.0.0.1:PORT) →
 * Postfix's queue → smtp-sink. Backstop runs as `backstop serve` with a
 * milter: role, on a scratch PostgreSQL database the test reads.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decide } from '../../src/policy/actions.ts';
import { startClamd, TEST_SIGNATURE_NAME, type RunningClamd } from '../../src/replay/clamd.ts';
import { freePort, startBackstop, startSmtpSink, type RunningProcess, type SmtpSink } from '../../src/replay/processes.ts';
import { banned, infected } from '../../src/scan/verdict.ts';
import { openStore, type Store } from '../../src/store/store.ts';
import { EICAR, swaks, waitFor } from '../helpers/gateway.ts';
import { createTestDatabase } from '../helpers/pg.ts';
import { startPostfix, type PostfixInstance } from '../../src/replay/postfix.ts';

const CLIENT = '127.7.7.7';
const defaults = { infected: 'reject', banned: 'reject', unscannable: 'tempfail' } as const;
/** The words the SMTP gateway says for a verdict: the milter must say the same. */
const gatewayText = (v: Parameters<typeof decide>[0]) => {
  const o = decide(v, defaults);
  return 'reply' in o ? `${o.reply.code} ${o.reply.message}` : '';
};

interface World {
  dir: string;
  smtpPort: number;
  postfix: PostfixInstance;
  sink: SmtpSink;
  reports: SmtpSink;
  backstop: RunningProcess;
  store: Store;
  dropDb(): Promise<void>;
  close(): Promise<void>;
}

async function startWorld(clamdUrl: string, extra: Record<string, unknown> = {}, postfixMain: (smtpPort: number, dir: string) => Record<string, string> = () => ({})): Promise<World> {
  const dir = mkdtempSync(join(tmpdir(), 'bs-milter-'));
  const db = await createTestDatabase('bs_milter');
  const sink = await startSmtpSink(join(dir, 'sink'));
  const reports = await startSmtpSink(join(dir, 'reports'));
  const milterPort = await freePort();
  // extra.milter may name a unix socket instead: the path goes to Postfix as it is.
  const milter = (extra.milter as { listen: string } | undefined) ?? { listen: `inet:127.0.0.1:${milterPort}` };
  const smtpPort = await freePort();
  const webPort = await freePort();
  const backstop = await startBackstop(join(dir, 'backstop'), {
    dataDir: join(dir, 'data'),
    // One process: the milter's behaviour is tested here, a node of workers in test/cluster/workers.test.ts.
    smtp: { listen: `127.0.0.1:${smtpPort}`, hostname: 'mx.example.net', greetingDelayMs: 0, workers: 1 },
    web: { listen: `127.0.0.1:${webPort}` },
    domains: ['example.net'],
    // The gateway role is idle here: Postfix delivers.
    nextHop: 'smtp://127.0.0.1:1',
    store: db.url,
    clamd: clamdUrl,
    notify: { relay: `smtp://127.0.0.1:${reports.port}`, from: 'backstop@example.net', postmaster: 'postmaster@example.net' },
    abuse: { reportDelay: '1s', overrides: [{ cidr: '127.0.0.0/8', contact: 'abuse@isp.example' }], rdap: { enabled: false }, dns: { zone: '' }, reverseFallback: false },
    log: { level: 'warn' },
    ...extra,
    milter,
  });
  const postfix = await startPostfix({
    relayhost: `[127.0.0.1]:${sink.port}`,
    relay_domains: 'example.net',
    smtpd_milters: milter.listen,
    milter_protocol: '6',
    milter_default_action: 'tempfail',
    ...postfixMain(smtpPort, dir),
  });
  const store = await openStore(db.url);
  return {
    dir,
    smtpPort,
    postfix,
    sink,
    reports,
    backstop,
    store,
    dropDb: () => db.drop(),
    async close() {
      await postfix.stop();
      await backstop.stop();
      await store.close();
      await db.drop();
      await sink.stop();
      await reports.stop();
    },
  };
}

const send = (w: World, args: string[], input?: string) =>
  swaks(w.postfix.port, ['--local-interface', CLIENT, '--from', 'someone@example.org', '--to', 'user@example.net', ...args], input);

async function recordOf(w: World, subject: string) {
  let rows: { client_ip: string; action: string; verdict: string; reply: string; quarantine_id: string | null; helo: string }[] = [];
  await waitFor(async () => {
    rows = (await w.store.db.selectFrom('messages').select(['client_ip', 'action', 'verdict', 'reply', 'quarantine_id', 'helo']).where('subject', '=', subject).execute()) as typeof rows;
    return rows.length === 1;
  }, 10_000);
  return rows[0]!;
}

describe('Backstop as the milter of a real Postfix (reject mode)', () => {
  let clamd: RunningClamd;
  let w: World;
  before(async () => {
    clamd = await startClamd();
    w = await startWorld(clamd.url);
  });
  after(async () => {
    await w.close();
    await clamd.stop();
  });

  test('clean mail goes through Postfix to the sink whole, recorded with the real client 127.7.7.7', async () => {
    const r = await send(w, ['--header', 'Subject: milter clean', '--ehlo', 'pc7.example', '--body', 'Line one\r\n.leading dot\r\nLast line\r\n']);
    assert.match(r.last, /^250 2\.0\.0 Ok: queued as /, r.transcript);
    await waitFor(() => w.sink.messages().length === 1, 15_000);
    const [msg] = w.sink.messages();
    assert.match(msg!, /^Subject: milter clean$/m);
    assert.match(msg!, /Line one\r?\n\.leading dot\r?\nLast line/);
    const rec = await recordOf(w, 'milter clean');
    assert.equal(rec.client_ip, CLIENT);
    assert.equal(rec.helo, 'pc7.example');
    assert.equal(rec.verdict, 'clean');
    assert.equal(rec.action, 'deliver');
  });

  test('EICAR is refused to the client by Postfix with the gateway\'s own 550 text; nothing queued; the ARF names 127.7.7.7', async () => {
    const r = await send(w, ['--header', 'Subject: milter eicar', '--attach-type', 'text/plain', '--attach-name', 'eicar.com', '--attach', '-'], EICAR);
    assert.equal(r.last, gatewayText(infected('Eicar-Test-Signature')));
    const rec = await recordOf(w, 'milter eicar');
    assert.equal(rec.client_ip, CLIENT);
    assert.equal(rec.action, 'reject');
    assert.match(w.postfix.log(), /milter-reject: END-OF-MESSAGE from unknown\[127\.7\.7\.7\]: 5\.7\.1 Message refused, virus found: Eicar-Test-Signature/);
    // The abuse report goes to the network of the infected PC, not of Postfix (R6).
    await waitFor(() => w.reports.envelopes().some((m) => m.rcptTo.includes('abuse@isp.example')), 30_000);
    const arf = w.reports.envelopes().find((m) => m.rcptTo.includes('abuse@isp.example'))!;
    assert.match(arf.text, /^Source-IP: 127\.7\.7\.7$/m);
    assert.match(arf.text, /Content-Type: multipart\/report; report-type=feedback-report/i);
  });

  test('a ClamAV test file only clamd finds (clam.exe in a .cab) is refused with clamd\'s name for it', async () => {
    const r = await send(w, ['--header', 'Subject: milter clam', '--attach-name', 'report.cab', '--attach', '/usr/share/clamav-testfiles/clam.cab']);
    assert.equal(r.last, gatewayText(infected(TEST_SIGNATURE_NAME)));
    assert.equal((await recordOf(w, 'milter clam')).client_ip, CLIENT);
  });

  test('a banned file type is refused with the gateway\'s words', async () => {
    const r = await send(w, ['--header', 'Subject: milter banned', '--attach-name', 'screensaver.pif', '--attach', '-'], 'MZ harmless but banned by name\n');
    const rec = await recordOf(w, 'milter banned');
    assert.equal(rec.verdict, 'banned');
    assert.equal(r.last, rec.reply);
    assert.match(r.last, /^550 5\.7\.1 Message refused, forbidden content: /);
  });

  test('nothing refused reached the sink', () => {
    assert.equal(w.sink.messages().length, 1);
  });

  test('Backstop down: Postfix\'s milter_default_action = tempfail answers 451, and the message stays with the sender', async () => {
    await w.backstop.stop();
    const r = await send(w, ['--header', 'Subject: milter down']);
    assert.equal(r.last, '451 4.7.1 Service unavailable - try again later', r.transcript);
    assert.equal(w.sink.messages().length, 1);
  });
});

describe('Backstop as the milter of a real Postfix (quarantine mode)', () => {
  let w: World;
  before(async () => {
    w = await startWorld('tcp://127.0.0.1:1', { clamd: undefined, actions: { infected: 'quarantine' } });
  });
  after(() => w.close());

  test('an infected message is held whole in Backstop\'s quarantine and discarded from Postfix (SMFIR_DISCARD): 250 to the client, nothing at the sink', async () => {
    const r = await send(w, ['--header', 'Subject: milter held', '--attach-type', 'text/plain', '--attach-name', 'eicar.com', '--attach', '-'], EICAR);
    assert.match(r.last, /^250 /);
    const rec = await recordOf(w, 'milter held');
    assert.equal(rec.action, 'quarantine');
    assert.equal(rec.client_ip, CLIENT);
    const q = await w.store.db.selectFrom('quarantine').selectAll().where('id', '=', rec.quarantine_id!).executeTakeFirstOrThrow();
    const raw = Buffer.from(q.raw as Uint8Array).toString('latin1');
    assert.match(raw, /^Subject: milter held\r$/m);
    // swaks sends the attachment base64-encoded: the held copy has it, so it is the whole message.
    assert.ok(raw.replace(/\r\n/g, '').includes(Buffer.from(EICAR.slice(0, 66)).toString('base64')), 'the whole message, attachment and all');
    assert.match(w.postfix.log(), /milter-discard: END-OF-MESSAGE from unknown\[127\.7\.7\.7\]/);
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(w.sink.messages().length, 0);
  });
});

describe('Backstop as the milter of a real Postfix over a unix socket', () => {
  let w: World;
  before(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bs-milter-sock-'));
    // Postfix's smtpd runs as user postfix: it walks into the directory and writes the socket (milter.socketMode).
    chmodSync(dir, 0o755);
    w = await startWorld('tcp://127.0.0.1:1', { clamd: undefined, milter: { listen: `unix:${join(dir, 'milter.sock')}`, socketMode: '0666' } });
  });
  after(() => w.close());

  test('clean mail arrives and EICAR is refused with the gateway\'s text', async () => {
    assert.match((await send(w, ['--header', 'Subject: unix clean'])).last, /^250 2\.0\.0 Ok: queued as /);
    assert.equal((await send(w, ['--header', 'Subject: unix eicar', '--attach-type', 'text/plain', '--attach-name', 'eicar.com', '--attach', '-'], EICAR)).last, gatewayText(infected('Eicar-Test-Signature')));
    await waitFor(() => w.sink.messages().length === 1, 15_000);
    assert.equal((await recordOf(w, 'unix eicar')).client_ip, CLIENT);
  });
});

describe('the desk\'s per-IP alias domain beside the milter: transport_maps to Backstop\'s SMTP listener', () => {
  let w: World;
  before(async () => {
    w = await startWorld('tcp://127.0.0.1:1', { clamd: undefined, desk: { abuseDomain: 'abuse.example.net' } }, (smtpPort, dir) => {
      // The README's line: `abuse.example.net smtp:[127.0.0.1]:PORT` (texthash: no postmap needed).
      const file = join(dir, 'transport');
      writeFileSync(file, `abuse.example.net smtp:[127.0.0.1]:${smtpPort}\n`);
      return { relay_domains: 'example.net abuse.example.net', transport_maps: `texthash:${file}` };
    });
  });
  after(() => w.close());

  test('a report to 192-0-2-77@abuse.example.net passes the milter, is routed to Backstop\'s SMTP and taken by the desk for 192.0.2.77', async () => {
    const r = await swaks(w.postfix.port, ['--local-interface', '127.8.8.8', '--from', 'abuse@remote-isp.example', '--to', '192-0-2-77@abuse.example.net', '--header', 'Subject: abuse from 192.0.2.77', '--body', 'Your customer at 192.0.2.77 sent us a worm.\r\n']);
    assert.match(r.last, /^250 2\.0\.0 Ok: queued as /, r.transcript);
    let rows: { ip: string | null; via: string; reporter: string }[] = [];
    await waitFor(async () => {
      rows = (await w.store.db.selectFrom('desk_reports').select(['ip', 'via', 'reporter']).execute()) as typeof rows;
      return rows.length === 1;
    }, 20_000);
    assert.deepEqual(rows[0], { ip: '192.0.2.77', via: 'alias', reporter: 'abuse@remote-isp.example' });
    // Postfix delivered it to Backstop's SMTP listener (not to the relayhost), which answered with the desk's words.
    const delivered = new RegExp(`to=<192-0-2-77@abuse\\.example\\.net>, relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${w.smtpPort},.*status=sent \\(250 2\\.0\\.0 Ok: report received by the abuse desk\\)`);
    await waitFor(() => delivered.test(w.postfix.log()), 10_000);
    assert.equal(w.sink.messages().length, 0);
  });
});
