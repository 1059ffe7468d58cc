/*
 * The issue's "How it is shown": a worm wave forging our users, bounced back
 * by a real Postfix that accepted the mail and then could not deliver it, and
 * "virus found" notices and bounces in several vendors' styles, reach our
 * users' mailboxes at most 1% of the time; bounces of mail our users really
 * sent (tagged on the way out) do arrive; complaints are queued once per
 * bouncing organisation.
 *
 *   our users (127.0.0.1, relayFrom) ──► gateway OUT (smarthost mode) ──► Postfix "mx.far.example"
 *   infected PCs elsewhere (127.0.1.x) ─────────────────────────────────► Postfix
 *   Postfix ──► far.example's mailbox host (smtp-sink refusing at end of DATA: delivery fails)
 *   Postfix's bounces (from 127.0.0.2) ──► gateway IN ──► our users' mailboxes (smtp-sink)
 *   notice senders of four organisations (127.0.0.3–7) ──► gateway IN
 *
 * Both gateways share one store, so one set of BATV and stamp keys (as nodes do).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { COMPLAINT_JOB, complaintHandlers } from '../../src/backscatter/complaint.ts';
import { backscatterHooks, BOUNCER_JOB, ShieldRecorder, type ShieldSettings } from '../../src/backscatter/hooks.ts';
import { KeyCache } from '../../src/backscatter/keys.ts';
import { parseConfig } from '../../src/config/load.ts';
import { freePort, startSmtpSink, waitForPort, type SmtpSink } from '../../src/replay/processes.ts';
import { buildRaw, EICAR, type BackscatterEntry, type BackscatterStyle } from '../../src/replay/traffic.ts';
import { runWorker } from '../../src/store/jobs.ts';
import { openStore, type Store } from '../../src/store/store.ts';
import { startTestGateway, waitFor, type TestGateway } from '../helpers/gateway.ts';

const USERS = ['alice', 'bob', 'carol', 'dave', 'erin'].map((u) => `${u}@example.net`);
const WORMS_VIA_POSTFIX = 60;
const WORMS_VIA_US = 10;
const LEGIT = 8;
const NOTICE_STYLES: BackscatterStyle[] = ['norton-notice', 'mcafee-notice', 'trend-scanmail-notice', 'mailscanner-notice', 'messagelabs-notice'];
const DSN_STYLES: BackscatterStyle[] = ['postfix-dsn', 'exim-bounce', 'qmail-bounce', 'sendmail-dsn', 'exchange-ndr'];
/** Notice senders: address, HELO, organisation (two addresses for notice-a.example). */
const NOTICERS = [
  { ip: '127.0.0.3', name: 'av.far.example', org: 'far.example' },
  { ip: '127.0.0.4', name: 'mx1.notice-a.example', org: 'notice-a.example' },
  { ip: '127.0.0.7', name: 'mx2.notice-a.example', org: 'notice-a.example' },
  { ip: '127.0.0.5', name: 'mx.notice-b.example', org: 'notice-b.example' },
  { ip: '127.0.0.6', name: 'gw.notice-c.example', org: 'notice-c.example' },
];
const REVERSE: Record<string, string> = { '127.0.0.2': 'mx.far.example', ...Object.fromEntries(NOTICERS.map((n) => [n.ip, n.name])) };

interface Postfix {
  port: number;
  dir: string;
  child: ChildProcess;
  log: () => string;
  stop(): Promise<void>;
}

/** A private Postfix: own config dir, queue and data dir in a temp folder, one smtpd on a loopback port, no chroot. */
async function startPostfix(relayFailPort: number, bounceTo: number): Promise<Postfix> {
  const dir = mkdtempSync(join(tmpdir(), 'bs-postfix-'));
  chmodSync(dir, 0o755);
  mkdirSync(join(dir, 'queue'));
  mkdirSync(join(dir, 'data'));
  const pf = spawnSync('id', ['-u', 'postfix']).stdout.toString().trim();
  chownSync(join(dir, 'data'), Number(pf), -1);
  const port = await freePort();
  writeFileSync(join(dir, 'transport'), `far.example smtp:[127.0.0.1]:${relayFailPort}\nexample.net smtp:[127.0.0.1]:${bounceTo}\n`);
  writeFileSync(
    join(dir, 'main.cf'),
    [
      'compatibility_level = 3.6',
      `queue_directory = ${dir}/queue`,
      `data_directory = ${dir}/data`,
      'myhostname = mx.far.example',
      'mydomain = far.example',
      'mydestination =',
      'inet_interfaces = loopback-only',
      'inet_protocols = ipv4',
      'mynetworks = 127.0.0.0/8',
      'relay_domains = far.example',
      `transport_maps = texthash:${dir}/transport`,
      // Its bounces leave from their own address, so the gateway sees "the bouncing MTA" as a peer of its own.
      'smtp_bind_address = 127.0.0.2',
      'smtp_dns_support_level = disabled',
      'smtp_host_lookup = native',
      'maillog_file = /dev/stdout',
      'notify_classes =',
      'alias_maps =',
      'alias_database =',
      'biff = no',
      'queue_run_delay = 1s',
      'minimal_backoff_time = 1s',
      'maximal_backoff_time = 2s',
      'smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination',
      'default_process_limit = 20',
    ].join('\n') + '\n',
  );
  const master = readFileSync('/etc/postfix/master.cf', 'utf8')
    .split('\n')
    .map((line) => {
      if (/^smtp\s+inet\s/.test(line)) return `127.0.0.1:${port} inet n - n - - smtpd`;
      const f = line.split(/\s+/);
      if (/^[a-z0-9]/.test(line) && f.length >= 8 && f[4] === 'y') {
        f[4] = 'n';
        return f.join(' ');
      }
      return line;
    })
    .join('\n');
  writeFileSync(join(dir, 'master.cf'), master);
  // Its log to a file: with pipes for stdout/stderr, start-fg never got as far as listening.
  const logFile = join(dir, 'maillog');
  const fd = openSync(logFile, 'w');
  const child = spawn('/usr/sbin/postfix', ['-c', dir, 'start-fg'], { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  try {
    await waitForPort(port);
  } catch (err) {
    spawnSync('/usr/sbin/postfix', ['-c', dir, 'stop']);
    throw err;
  }
  return {
    port,
    dir,
    child,
    log: () => readFileSync(logFile, 'utf8'),
    async stop() {
      spawnSync('/usr/sbin/postfix', ['-c', dir, 'stop']);
      await new Promise<void>((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', () => resolve())));
    },
  };
}

function send(port: number, localAddress: string, helo: string, from: string, to: string, raw: string | Buffer): Promise<number> {
  return new Promise((resolve) => {
    const c = new SMTPConnection({ host: '127.0.0.1', port, localAddress, name: helo, ignoreTLS: true, socketTimeout: 30_000 });
    c.on('error', () => resolve(0));
    c.connect(() =>
      c.send({ from, to: [to] }, raw, (err) => {
        c.quit();
        resolve(err ? ((err as { responseCode?: number }).responseCode ?? 0) : 250);
      }),
    );
  });
}

function worm(forged: string, rcpt: string, i: number): string {
  return [
    `From: ${forged}`, `To: ${rcpt}`, 'Subject: Mail Delivery System', `Message-ID: <worm${i}@home-pc>`, 'MIME-Version: 1.0',
    'Content-Type: multipart/mixed; boundary="w"', '', '--w', 'Content-Type: text/plain', '', 'The message contains Unicode characters and has been sent as a binary attachment.', '--w',
    'Content-Type: application/octet-stream; name="document.zip"', 'Content-Disposition: attachment; filename="document.zip"', '', EICAR, '--w--', '',
  ].join('\r\n');
}

let store: Store;
let keys: KeyCache;
let recorder: ShieldRecorder;
let inbound: TestGateway;
let outbound: TestGateway;
let failing: SmtpSink;
let relay: SmtpSink;
let postfix: Postfix;

before(async () => {
  store = await openStore('pglite-memory:');
  keys = await KeyCache.open(store.db, 0);
  recorder = new ShieldRecorder(store.db, (err) => console.error(err), 20);
  const base: ShieldSettings = { mode: 'enforce', batvDomains: ['example.net'], onBackscatter: 'refuse', ourRelays: ['mx.example.net'], relayFrom: [], hostname: 'mx.example.net', complaints: 'review' };
  inbound = await startTestGateway({}, { store, hooks: backscatterHooks({ settings: base, keys: () => keys.current, recorder }) });
  const dir = mkdtempSync(join(tmpdir(), 'bs-wave-'));
  failing = await startSmtpSink(join(dir, 'far-mailboxes'), ['-f', '.']);
  relay = await startSmtpSink(join(dir, 'relay'));
  postfix = await startPostfix(failing.port, inbound.port);
  outbound = await startTestGateway(
    { relayFrom: ['127.0.0.1/32'], nextHop: `smtp://127.0.0.1:${postfix.port}` },
    { store, noSink: true, hooks: backscatterHooks({ settings: { ...base, relayFrom: ['127.0.0.1/32'] }, keys: () => keys.current, recorder }) },
  );
});

after(async () => {
  await outbound?.close();
  await postfix?.stop();
  await inbound?.close();
  await failing?.stop();
  await relay?.stop();
  await recorder?.flush();
  keys?.close();
  await store?.close();
});

test('a worm wave forging our users: backscatter kept from the mailboxes, real bounces arrive, one complaint per bouncing organisation', { timeout: 240_000 }, async () => {
  // 1. Our users' real mail leaves through the gateway (signed), to mailboxes at far.example that do not take it.
  for (let i = 0; i < LEGIT; i++) {
    const user = USERS[i % USERS.length]!;
    const code = await send(outbound.port, '127.0.0.1', 'pc.example.net', user, `partner${i}@far.example`, `From: ${user}\r\nTo: partner${i}@far.example\r\nSubject: Offer ${i}\r\nMessage-ID: <offer${i}@example.net>\r\n\r\nOur offer.\r\n`);
    assert.equal(code, 250, `legit ${i}`);
  }
  // 2. The worm on our own customers' PCs, through our smarthost: refused in the session, nothing reaches Postfix.
  for (let i = 0; i < WORMS_VIA_US; i++) {
    const code = await send(outbound.port, '127.0.0.1', 'home-pc', USERS[(i + 1) % USERS.length]!, `victim${i}@far.example`, worm(USERS[(i + 1) % USERS.length]!, `victim${i}@far.example`, 1000 + i));
    assert.equal(code, 550, `worm through our smarthost ${i}`);
  }
  // 3. The worm elsewhere, forging our users, straight to far.example's Postfix: it accepts every one, then cannot deliver.
  const accepted: number[] = [];
  for (let i = 0; i < WORMS_VIA_POSTFIX; i += 10) {
    // Ten infected PCs at a time: the private Postfix runs few smtpd processes.
    accepted.push(
      ...(await Promise.all(
        Array.from({ length: Math.min(10, WORMS_VIA_POSTFIX - i) }, (_, k) => i + k).map((j) =>
          send(postfix.port, `127.0.1.${1 + (j % 40)}`, 'home-pc', USERS[j % USERS.length]!, `user${j}@far.example`, worm(USERS[j % USERS.length]!, `user${j}@far.example`, j)),
        ),
      )),
    );
  }
  assert.deepEqual(accepted, Array(WORMS_VIA_POSTFIX).fill(250), 'Postfix accepted the whole wave');
  // 4. Notices and bounces in vendors' styles from four other organisations' servers.
  let seq = 0;
  const thirdParty: Promise<number>[] = [];
  for (const n of NOTICERS) {
    for (const style of [...NOTICE_STYLES, ...DSN_STYLES]) {
      const victim = USERS[seq % USERS.length]!;
      const entry: BackscatterEntry = {
        kind: 'backscatter', seq: ++seq, sourceIp: n.ip, helo: n.name, bouncingDomain: n.org, rcpt: victim, style,
        quoted: { mailFrom: victim, rcpt: `someone${seq}@${n.org}`, subject: 'Re: document', messageId: `<w${seq}@home-pc>`, fromIp: '198.51.100.9' },
      };
      // Antivirus products write from their own address; bounces come from the null sender.
      const from = NOTICE_STYLES.includes(style) ? `antivirus@${n.org}` : '';
      thirdParty.push(send(inbound.port, n.ip, n.name, from, victim, buildRaw(entry)));
    }
  }
  const thirdCodes = await Promise.all(thirdParty);
  assert.ok(thirdCodes.every((c) => c === 550), `every third-party notice and bounce refused: ${thirdCodes.join(',')}`);

  // Postfix's bounces: all of them reach the gateway (refused there) and the legit ones arrive.
  const postfixBounces = async () =>
    Number((await store.db.selectFrom('backscatter_events').select((eb) => eb.fn.countAll<number>().as('n')).where('client_ip', '=', '127.0.0.2').executeTakeFirstOrThrow()).n);
  await waitFor(async () => (await recorder.flush(), (await postfixBounces()) >= WORMS_VIA_POSTFIX && inbound.sink!.envelopes().length >= LEGIT), 120_000).catch(async () => {
    assert.fail(`waiting for Postfix's bounces: ${await postfixBounces()} recorded, ${inbound.sink!.envelopes().length} delivered\n${postfix.log().split('\n').filter((l) => !/not owned|writable/.test(l)).slice(-30).join('\n')}`);
  });
  await new Promise((r) => setTimeout(r, 1500)); // anything late would show now
  await recorder.flush();

  const delivered = inbound.sink!.envelopes();
  const backscatterSent = WORMS_VIA_POSTFIX + NOTICERS.length * (NOTICE_STYLES.length + DSN_STYLES.length);
  const backscatterDelivered = delivered.filter((m) => !/^Subject: Offer \d+/m.test(m.text) && !/Offer \d+/.test(m.text));
  const rate = backscatterDelivered.length / backscatterSent;
  console.log(`# worm wave: ${backscatterSent} backscatter messages (${WORMS_VIA_POSTFIX} real Postfix bounces, ${backscatterSent - WORMS_VIA_POSTFIX} vendor-style), ${backscatterDelivered.length} reached a mailbox (${(rate * 100).toFixed(2)}%); ${delivered.length - backscatterDelivered.length}/${LEGIT} bounces of our users' real mail delivered`);
  assert.ok(rate <= 0.01, `at most 1% of backscatter reaches users: ${backscatterDelivered.length}/${backscatterSent}`);

  // Bounces of mail our users really sent: every one arrives, addressed to the user without the tag, from the real Postfix.
  const legit = delivered.filter((m) => /Offer \d+/.test(m.text));
  assert.equal(legit.length, LEGIT);
  for (const m of legit) {
    assert.equal(m.mailFrom, '');
    assert.equal(m.rcptTo.length, 1);
    assert.ok(USERS.includes(m.rcptTo[0]!), m.rcptTo[0]);
    assert.match(m.text, /^From: Mail Delivery System <MAILER-DAEMON@mx\.far\.example>/m);
    assert.match(m.text, /X-Backstop-Stamp: bs1\./, 'the quoted original carries our stamp');
  }
  const ev = await store.db.selectFrom('backscatter_events').select(['client_ip', 'class', 'verdict', 'action', 'format']).execute();
  assert.equal(ev.filter((e) => e.client_ip === '127.0.0.2' && e.action === 'refuse' && e.format === 'null-sender').length, WORMS_VIA_POSTFIX);
  assert.equal(ev.filter((e) => e.client_ip === '127.0.0.2' && e.verdict === 'ours').length, LEGIT);
  assert.equal(ev.filter((e) => e.class === 'av-notice' && e.action === 'refuse').length, NOTICERS.length * NOTICE_STYLES.length);

  // Complaints: the worker runs the bouncer jobs; one letter per organisation, held for review.
  const config = parseConfig({
    domains: ['example.net'], store: 'pglite-memory:', smtp: { hostname: 'mx.example.net' },
    notify: { relay: `smtp://127.0.0.1:${relay.port}`, from: 'backstop@example.net', postmaster: 'postmaster@example.net' },
    backscatter: { mode: 'enforce', complaints: { mode: 'review' } },
  });
  const stop = new AbortController();
  const worker = runWorker({ db: store.db, worker: 'wave', pollMs: 50, signal: stop.signal, handlers: complaintHandlers({ db: store.db, config, reverse: async (ip) => REVERSE[ip] ?? null }) });
  const pending = async () => (await store.db.selectFrom('jobs').select('id').where('kind', '=', BOUNCER_JOB).where('state', 'in', ['queued', 'running']).execute()).length;
  await waitFor(async () => (await pending()) === 0, 30_000);
  stop.abort();
  await worker;
  const bouncerJobs = await store.db.selectFrom('jobs').select(['state']).where('kind', '=', BOUNCER_JOB).execute();
  assert.equal(bouncerJobs.length, NOTICERS.length, 'one bouncer job per notice-sending address');
  assert.ok(bouncerJobs.every((j) => j.state === 'done'));
  const complaints = await store.db.selectFrom('jobs').select(['state', 'payload']).where('kind', '=', COMPLAINT_JOB).execute();
  const byOrg = complaints.map((c) => (c.payload as { organisation: string; to: string[] }).organisation).sort();
  assert.deepEqual(byOrg, ['far.example', 'notice-a.example', 'notice-b.example', 'notice-c.example']);
  assert.ok(complaints.every((c) => c.state === 'review'));
  for (const c of complaints) {
    const p = c.payload as { organisation: string; to: string[]; headers: string };
    assert.deepEqual(p.to, [`postmaster@${p.organisation}`, `abuse@${p.organisation}`]);
    assert.doesNotMatch(p.headers, /X5O!P%@AP/, 'nothing of the worm');
  }
  assert.equal(relay.envelopes().length, 0, 'in review, nothing is sent');
});
