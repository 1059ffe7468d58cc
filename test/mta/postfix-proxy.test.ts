/*
 * Backstop inside real, private Postfix instances (src/replay/postfix.ts):
 *
 * 1. Before-queue content filter (Postfix SMTPD_PROXY_README):
 *      client bound to 127.3.4.5 → Postfix smtpd (smtpd_proxy_filter = Backstop,
 *      smtpd_proxy_options = speed_adjust) → `backstop serve` (trustXforwardFrom
 *      127.0.0.1) → Postfix's re-injection smtpd (smtpd_authorized_xforward_hosts)
 *      → Postfix's queue → smtp-sink.
 *    Postfix tells Backstop the client with XFORWARD; Backstop tells the
 *    re-injection smtpd with XFORWARD in turn.
 * 2. Front MX (XCLIENT_README / XFORWARD_README): client 127.5.6.7 → Backstop →
 *    Postfix with smtpd_authorized_xclient_hosts (or _xforward_hosts) → smtp-sink:
 *    the after-filter Postfix's own Received: line and log name the real client.
 *
 * The config lines here are the README's "Deployment" section, line for line.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { freePort, startBackstop, startSmtpSink, type RunningProcess, type SmtpSink } from '../../src/replay/processes.ts';
import { releaseQuarantined } from '../../src/edge/release.ts';
import { openStore, type Store } from '../../src/store/store.ts';
import { EICAR, startTestGateway, swaks, waitFor, type TestGateway } from '../helpers/gateway.ts';
import { createTestDatabase } from '../helpers/pg.ts';
import { reinjectionService, startPostfix, type PostfixInstance } from '../../src/replay/postfix.ts';

const PROXY_CLIENT = '127.3.4.5';

describe('Backstop as Postfix\'s before-queue content filter (smtpd_proxy_filter)', () => {
  let dir: string;
  let sink: SmtpSink;
  let reports: SmtpSink;
  let backstop: RunningProcess;
  let postfix: PostfixInstance;
  let store: Store;
  let dropDb: () => Promise<void>;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'bs-proxy-'));
    const db = await createTestDatabase('bs_proxy');
    dropDb = () => db.drop();
    sink = await startSmtpSink(join(dir, 'sink'));
    reports = await startSmtpSink(join(dir, 'reports'));
    const reinject = await freePort();
    const bsPort = await freePort();
    backstop = await startBackstop(join(dir, 'backstop'), {
      dataDir: join(dir, 'data'),
      // One process: a node of workers is tested in test/cluster/workers.test.ts.
      smtp: { listen: `127.0.0.1:${bsPort}`, hostname: 'filter.example.net', greetingDelayMs: 0, trustXforwardFrom: ['127.0.0.1'], workers: 1 },
      web: { listen: `127.0.0.1:${await freePort()}` },
      domains: ['example.net'],
      nextHop: `smtp://127.0.0.1:${reinject}`,
      store: db.url,
      notify: { relay: `smtp://127.0.0.1:${reports.port}`, from: 'backstop@example.net', postmaster: 'postmaster@example.net' },
      abuse: { reportDelay: '1s', overrides: [{ cidr: '127.0.0.0/8', contact: 'abuse@isp.example' }], rdap: { enabled: false }, dns: { zone: '' }, reverseFallback: false },
      log: { level: 'warn' },
    });
    postfix = await startPostfix(
      { relayhost: `[127.0.0.1]:${sink.port}`, relay_domains: 'example.net' },
      { smtpdArgs: { smtpd_proxy_filter: `127.0.0.1:${bsPort}`, smtpd_proxy_options: 'speed_adjust' }, services: [reinjectionService(reinject)] },
    );
    store = await openStore(db.url);
  });
  after(async () => {
    await postfix?.stop();
    await backstop?.stop();
    await store?.close();
    await dropDb?.();
    await sink?.stop();
    await reports?.stop();
  });

  const send = (args: string[], input?: string) =>
    swaks(postfix.port, ['--local-interface', PROXY_CLIENT, '--ehlo', 'pc7.dsl.example', '--from', 'someone@example.org', '--to', 'user@example.net', ...args], input);
  async function recordOf(subject: string) {
    let rows: { client_ip: string; helo: string; action: string; reply: string }[] = [];
    await waitFor(async () => {
      rows = (await store.db.selectFrom('messages').select(['client_ip', 'helo', 'action', 'reply']).where('subject', '=', subject).execute()) as typeof rows;
      return rows.length === 1;
    }, 10_000);
    return rows[0]!;
  }

  test('clean mail arrives; the record, Backstop\'s Received: and the re-injecting Postfix\'s Received: name the real client', async () => {
    const r = await send(['--header', 'Subject: proxy clean']);
    assert.match(r.last, /^250 2\.0\.0 Ok: queued as /, r.transcript);
    await waitFor(() => sink.messages().length === 1, 15_000);
    const msg = sink.messages()[0]!;
    // Ours: the client's HELO and address, not Postfix's.
    assert.match(msg, /^Received: from pc7\.dsl\.example \(\[127\.3\.4\.5\]\)\r?\n\tby filter\.example\.net \(Backstop\) with ESMTP id /m);
    // The before-queue smtpd's own line (the client's connection).
    assert.match(msg, /^Received: from pc7\.dsl\.example \(unknown \[127\.3\.4\.5\]\)\r?\n\tby postfix\.test\.invalid \(Postfix\) with ESMTP\r?\n/m);
    // The re-injection smtpd took XFORWARD from Backstop: it logs the client as the message's origin
    // (its Received: line names the connection it had, Backstop's, as Postfix always does for XFORWARD).
    assert.match(postfix.log(), /client=unknown\[127\.0\.0\.1\], orig_client=unknown\[127\.3\.4\.5\]/);
    const rec = await recordOf('proxy clean');
    assert.deepEqual([rec.client_ip, rec.helo, rec.action], [PROXY_CLIENT, 'pc7.dsl.example', 'deliver']);
  });

  test('EICAR is refused to the client with Backstop\'s reply; the record and the ARF\'s Source-IP name the real client', async () => {
    const r = await send(['--header', 'Subject: proxy eicar', '--attach-type', 'text/plain', '--attach-name', 'eicar.com', '--attach', '-'], EICAR);
    const rec = await recordOf('proxy eicar');
    assert.match(r.last, /^550 5\.7\.1 Message refused, virus found/, r.transcript);
    assert.equal(r.last, rec.reply);
    assert.deepEqual([rec.client_ip, rec.action], [PROXY_CLIENT, 'reject']);
    await waitFor(() => reports.envelopes().some((m) => m.rcptTo.includes('abuse@isp.example')), 30_000);
    const arf = reports.envelopes().find((m) => m.rcptTo.includes('abuse@isp.example'))!;
    assert.match(arf.text, /^Source-IP: 127\.3\.4\.5$/m);
    assert.doesNotMatch(arf.text, /^Source-IP: 127\.0\.0\.1$/m);
  });

  test('a banned file is refused with Backstop\'s reply; nothing refused reached the sink', async () => {
    const r = await send(['--header', 'Subject: proxy banned', '--attach-name', 'screensaver.pif', '--attach', '-'], 'MZ harmless but banned by name\n');
    const rec = await recordOf('proxy banned');
    assert.match(r.last, /^550 5\.7\.1 Message refused, forbidden content: /, r.transcript);
    assert.equal(r.last, rec.reply);
    assert.equal(rec.client_ip, PROXY_CLIENT);
    assert.equal(sink.messages().length, 1);
  });
});

const MX_CLIENT = '127.5.6.7';

describe('Backstop as the front MX: the Postfix behind it learns the real client', () => {
  const worlds: { postfix: PostfixInstance; sink: SmtpSink; g: TestGateway }[] = [];
  after(async () => {
    for (const w of worlds) {
      await w.g.close();
      await w.postfix.stop();
      await w.sink.stop();
    }
  });

  async function world(postfixMain: Record<string, string>, nextHopXclient: 'on' | 'off', extra: Record<string, unknown> = {}) {
    const dir = mkdtempSync(join(tmpdir(), 'bs-frontmx-'));
    const sink = await startSmtpSink(join(dir, 'sink'));
    const postfix = await startPostfix({ relayhost: `[127.0.0.1]:${sink.port}`, relay_domains: 'example.net', ...postfixMain });
    const g = await startTestGateway({ nextHop: `smtp://127.0.0.1:${postfix.port}`, nextHopXclient, ...extra }, { noSink: true });
    const w = { postfix, sink, g };
    worlds.push(w);
    return w;
  }
  const send = (port: number, subject: string) =>
    swaks(port, ['--local-interface', MX_CLIENT, '--ehlo', 'pc9.cable.example', '--from', 'someone@example.org', '--to', 'user@example.net', '--header', `Subject: ${subject}`]);

  test('XCLIENT (smtpd_authorized_xclient_hosts, nextHopXclient: on): Postfix\'s Received: and log name 127.5.6.7 and its HELO', async () => {
    const w = await world({ smtpd_authorized_xclient_hosts: '127.0.0.1' }, 'on');
    const r = await send(w.g.port, 'front xclient');
    assert.match(r.last, /^250 /, r.transcript);
    await waitFor(() => w.sink.messages().length === 1, 15_000);
    const msg = w.sink.messages()[0]!;
    assert.match(msg, /^Received: from pc9\.cable\.example \(unknown \[127\.5\.6\.7\]\)\r?\n\tby postfix\.test\.invalid \(Postfix\) with ESMTP id /m);
    assert.match(w.postfix.log(), /client=unknown\[127\.5\.6\.7\]/);
    assert.doesNotMatch(w.postfix.log(), /client=\S*\[127\.0\.0\.1\]/);
  });

  test('XFORWARD (smtpd_authorized_xforward_hosts, nextHopXclient: off): Postfix logs 127.5.6.7 as the origin (orig_client=)', async () => {
    const w = await world({ smtpd_authorized_xforward_hosts: '127.0.0.1' }, 'off');
    const r = await send(w.g.port, 'front xforward');
    assert.match(r.last, /^250 /, r.transcript);
    await waitFor(() => w.sink.messages().length === 1, 15_000);
    // XFORWARD informs Postfix's logs and the XFORWARD it sends on; its Received: line names its own connection.
    assert.match(w.postfix.log(), /client=unknown\[127\.0\.0\.1\], orig_client=unknown\[127\.5\.6\.7\]/);
    assert.match(w.sink.messages()[0]!, /^Received: from pc9\.cable\.example \(\[127\.5\.6\.7\]\)\r?\n\tby mx\.example\.net \(Backstop\)/m);
  });

  test('a quarantined message released later is XFORWARDed with the original client and SOURCE=LOCAL, never XCLIENTed', async () => {
    const w = await world({ smtpd_authorized_xforward_hosts: '127.0.0.1', smtpd_authorized_xclient_hosts: '127.0.0.1' }, 'on', { actions: { infected: 'quarantine' } });
    const r = await swaks(w.g.port, ['--local-interface', MX_CLIENT, '--ehlo', 'pc9.cable.example', '--from', 'someone@example.org', '--to', 'user@example.net', '--header', 'Subject: front held', '--attach-type', 'text/plain', '--attach-name', 'eicar.com', '--attach', '-'], EICAR);
    assert.match(r.last, /^250 /, r.transcript);
    const [row] = await w.g.store.db.selectFrom('quarantine').select(['id']).execute();
    const released = await releaseQuarantined(w.g.store.db, w.g.config, row!.id, 'test');
    assert.ok(released.ok, released.reply);
    await waitFor(() => w.sink.messages().length === 1, 15_000);
    assert.match(w.postfix.log(), /client=unknown\[127\.0\.0\.1\], orig_client=unknown\[127\.5\.6\.7\]/);
    // The release's own connection (the last one): XFORWARD, no XCLIENT (the first connection, the client's, was XCLIENTed).
    const last = w.postfix.log().split('\n').filter((l) => /disconnect from/.test(l)).at(-1)!;
    assert.match(last, /disconnect from unknown\[127\.0\.0\.1\] ehlo=1 xforward=1 mail=1 rcpt=1 data=1/);
  });

  test('a Postfix that authorises neither: mail still flows, as Backstop\'s own (clean fallback)', async () => {
    const w = await world({}, 'on');
    const r = await send(w.g.port, 'front none');
    assert.match(r.last, /^250 /, r.transcript);
    await waitFor(() => w.sink.messages().length === 1, 15_000);
    assert.match(w.sink.messages()[0]!, /^Received: from mx\.example\.net \(unknown \[127\.0\.0\.1\]\)/m);
    assert.match(w.postfix.log(), /client=unknown\[127\.0\.0\.1\]/);
  });
});
