/*
 * Exim routing through Backstop: Debian's Exim 4 (unpacked, see
 * test/backscatter/exim.ts) takes mail from a "client" at 127.8.8.8 (an SMTP
 * session over a pipe, -bs with -oMa), queues it, and its queue run delivers
 * through a manualroute router and an smtp transport to a Backstop gateway in
 * front of smtp-sink. Clean mail arrives with Exim's and Backstop's trace
 * lines; infected mail is refused by Backstop at the end of DATA, and Exim
 * records Backstop's reply (an Exim that queued first must then bounce: the
 * reason to put Backstop in front of Exim, or Exim's own smtp in front of
 * Backstop only for mail it may bounce, such as its own users').
 *
 * The router and transport are the README's "Exim" lines.
 */
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { eximInstall } from '../backscatter/exim.ts';
import { EICAR, startTestGateway, swaks, waitFor, type TestGateway } from '../helpers/gateway.ts';

/** The router and transport as the README gives them; PORT is Backstop's. */
export const eximRouting = (port: number) => `begin routers
through_backstop:
  driver = manualroute
  domains = ! +local_domains
  route_list = * 127.0.0.1::${port}
  transport = backstop_smtp
  self = send

begin transports
backstop_smtp:
  driver = smtp
  hosts_avoid_tls = *
`;

let g: TestGateway;
let dir: string;
let conf: string;
const { exim, env } = eximInstall();
const run = promisify(execFile);

before(async () => {
  g = await startTestGateway();
  dir = mkdtempSync(join(tmpdir(), 'bs-exim-'));
  chmodSync(dir, 0o755);
  mkdirSync(join(dir, 'spool'));
  // Exim's delivery processes run as Debian-exim (nss_wrapper's uid): the spool must be theirs too.
  chmodSync(join(dir, 'spool'), 0o777);
  conf = join(dir, 'exim.conf');
  writeFileSync(
    conf,
    `primary_hostname = exim.test.invalid
domainlist local_domains = exim.test.invalid
spool_directory = ${dir}/spool
log_file_path = ${dir}/spool/%slog
exim_user = Debian-exim
exim_group = Debian-exim
never_users =
trusted_users = root
keep_environment =
acl_smtp_rcpt = acl_rcpt
begin acl
acl_rcpt:
  accept
${eximRouting(g.port)}
begin retry
* * F,1h,10m
`,
  );
});
after(() => g.close());

/** A client session into Exim (queued only), then one queue run: the delivery to Backstop happens in the foreground. */
async function throughExim(subject: string, attach?: string) {
  const args = ['--pipe', `${exim} -C ${conf} -bs -odq -oMa 127.8.8.8`, '--ehlo', 'pc8.example', '--from', 'a@example.org', '--to', 'user@example.net', '--header', `Subject: ${subject}`];
  if (attach) args.push('--attach-type', 'text/plain', '--attach-name', 'eicar.com', '--attach', '-');
  const spawned = spawnSync('swaks', ['--hide-informational', ...args], { env: { ...process.env, ...env }, input: attach ?? '', encoding: 'utf8', timeout: 30_000 });
  assert.match(spawned.stdout, /<- {1,2}250 OK id=/, spawned.stdout + spawned.stderr);
  // Asynchronously: the gateway answering Exim runs in this process.
  const q = await run(exim, ['-C', conf, '-v', '-qff'], { env, timeout: 30_000 });
  if (process.env.BACKSTOP_TEST_LOG) console.log(q.stdout, q.stderr);
  return readFileSync(join(dir, 'spool', 'mainlog'), 'utf8');
}

// Exim pipelines QUIT after the last message's final dot and shuts its side of the socket at once (its -v
// transcript: "SMTP>> .", "SMTP+> QUIT", "SMTP(shutdown)>>"). Backstop lost its reply to the dot that way, after
// it may already have relayed the message: Exim deferred, and its retry delivered a second copy.
test('Exim\'s pipelined QUIT and half-close after the last dot: Backstop\'s reply arrives and the message is delivered once', async () => {
  const before = g.sink!.messages().filter((m) => /Subject: via exim pipelined/.test(m)).length;
  const log = await throughExim('via exim pipelined');
  assert.doesNotMatch(log, /Remote host closed connection in response to end of data/);
  assert.match(log, /=> user@example\.net R=through_backstop T=backstop_smtp H=127\.0\.0\.1 \[127\.0\.0\.1\]\S* C="250 2\.0\.0 /);
  assert.equal(g.sink!.messages().filter((m) => /Subject: via exim pipelined/.test(m)).length, before + 1);
  assert.equal((await run(exim, ['-C', conf, '-bpc'], { env })).stdout.trim(), '0', 'nothing left in Exim\'s queue');
});

test('clean mail: Exim delivers through Backstop to the next hop, with Exim\'s and Backstop\'s Received lines', async () => {
  const log = await throughExim('via exim clean');
  assert.match(log, /=> user@example\.net R=through_backstop T=backstop_smtp H=127\.0\.0\.1 \[127\.0\.0\.1\]\S* C="250 2\.0\.0 /);
  await waitFor(() => g.sink!.messages().some((m) => /Subject: via exim clean/.test(m)), 10_000);
  const msg = g.sink!.messages().find((m) => /Subject: via exim clean/.test(m))!;
  assert.match(msg, /^Received: from exim\.test\.invalid \(\[127\.0\.0\.1\]\)\r?\n\tby mx\.example\.net \(Backstop\)/m);
  assert.match(msg, /^Received: from \[127\.8\.8\.8\] \(helo=pc8\.example ident=root\)\r?\n\tby exim\.test\.invalid with esmtp \(Exim 4\.\d+\)/m);
});

test('infected mail: Backstop refuses it at the end of DATA and Exim logs Backstop\'s reply; nothing reaches the next hop', async () => {
  const before = g.sink!.messages().length;
  const log = await throughExim('via exim eicar', EICAR);
  assert.match(log, /\*\* user@example\.net R=through_backstop T=backstop_smtp H=127\.0\.0\.1 \[127\.0\.0\.1\]\S*: SMTP error from remote mail server after end of data: 550 5\.7\.1 Message refused, virus found/);
  assert.equal(g.sink!.messages().length, before);
});
