/*
 * replay/postfix — a private, real Postfix instance (for a test, the bench, a replay): its own
 * config_directory, queue_directory and data_directory under a temp dir,
 * started with `postfix -c DIR start` and stopped with `postfix -c DIR stop`.
 * The system's Postfix (/etc/postfix) is never touched.
 *
 * smtpd listens on a free loopback port; everything it takes goes to a
 * relayhost (a capturing smtp-sink, or whatever the test names). Its log is
 * a plain file (maillog_file via postlogd) the test can read.
 */
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, waitForPort } from './processes.ts';

const run = promisify(execFile);

export interface PostfixInstance {
  dir: string;
  port: number;
  /** The instance's log so far (maillog_file). */
  log(): string;
  /** Postfix's own queue: the `postqueue -p` listing. */
  queue(): Promise<string>;
  /** Resolves once Postfix's queue is empty (everything delivered or bounced), or after timeoutMs; true when it emptied. */
  drained(timeoutMs?: number): Promise<boolean>;
  stop(): Promise<void>;
}

/**
 * The Debian master.cf with every service unchrooted (a chroot would need copies
 * of /etc files inside the temp dir) and the smtpd service on 127.0.0.1:port.
 */
function masterCf(port: number, smtpdArgs: Record<string, string>, services: readonly string[]): string {
  const lines = readFileSync('/etc/postfix/master.cf', 'utf8').split('\n');
  const out: string[] = [];
  for (const line of lines) {
    if (/^\s|^#|^$/.test(line)) {
      out.push(line);
      continue;
    }
    const cols = line.split(/\s+/);
    const isSmtpd = cols[0] === 'smtp' && cols[1] === 'inet';
    if (isSmtpd) cols[0] = `127.0.0.1:${port}`;
    if (cols.length >= 8) cols[4] = 'n';
    out.push(cols.join(' '));
    if (isSmtpd) for (const [k, v] of Object.entries(smtpdArgs)) out.push(`  -o ${k}=${v}`);
  }
  return [...out, ...services].join('\n') + '\n';
}

/**
 * The re-injection smtpd of SMTPD_PROXY_README, as the README's "Postfix
 * before-queue content filter" gives it (port filled in): where Backstop, as
 * Postfix's smtpd_proxy_filter, hands clean mail back (with XFORWARD).
 */
export function reinjectionService(port: number): string {
  return [
    `127.0.0.1:${port} inet n - n - - smtpd`,
    '  -o smtpd_authorized_xforward_hosts=127.0.0.0/8',
    '  -o smtpd_client_restrictions=',
    '  -o smtpd_helo_restrictions=',
    '  -o smtpd_sender_restrictions=',
    '  -o smtpd_relay_restrictions=',
    '  -o smtpd_recipient_restrictions=permit_mynetworks,reject',
    '  -o smtpd_data_restrictions=',
    '  -o mynetworks=127.0.0.0/8',
    '  -o receive_override_options=no_unknown_recipient_checks',
  ].join('\n');
}

export interface PostfixOptions {
  /** `-o name=value` lines for the public smtpd (e.g. smtpd_proxy_filter). */
  smtpdArgs?: Record<string, string>;
  /** Whole master.cf service entries added at the end (e.g. a re-injection smtpd), continuation lines included. */
  services?: readonly string[];
}

export async function startPostfix(mainCf: Record<string, string>, options: PostfixOptions = {}): Promise<PostfixInstance> {
  const dir = mkdtempSync(join(tmpdir(), 'bs-postfix-'));
  // Postfix's daemons run as user postfix: they must be able to walk into the instance's directories.
  chmodSync(dir, 0o755);
  const port = await freePort();
  const conf = join(dir, 'etc');
  mkdirSync(conf);
  const settings: Record<string, string> = {
    compatibility_level: '3.6',
    queue_directory: join(dir, 'queue'),
    data_directory: join(dir, 'data'),
    mail_owner: 'postfix',
    setgid_group: 'postdrop',
    myhostname: 'postfix.test.invalid',
    mydomain: 'test.invalid',
    myorigin: '$myhostname',
    mydestination: '',
    inet_interfaces: '127.0.0.1',
    inet_protocols: 'ipv4',
    mynetworks: '127.0.0.0/8',
    smtpd_relay_restrictions: 'permit_mynetworks, reject_unauth_destination',
    smtp_dns_support_level: 'disabled',
    smtpd_peername_lookup: 'no',
    maillog_file: join(dir, 'maillog'),
    maillog_file_prefixes: dir,
    syslog_name: `postfix-test-${port}`,
    alias_maps: '',
    alias_database: '',
    local_recipient_maps: '',
    biff: 'no',
    smtputf8_enable: 'no',
    // Retries are the test's business: a deferred message stays put.
    queue_run_delay: '1h',
    ...mainCf,
  };
  writeFileSync(join(conf, 'main.cf'), Object.entries(settings).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n');
  writeFileSync(join(conf, 'master.cf'), masterCf(port, options.smtpdArgs ?? {}, options.services ?? []));
  // The queue directory must exist for postfix to chdir into; `postfix check` makes its subdirectories and owners.
  mkdirSync(join(dir, 'queue'));
  mkdirSync(join(dir, 'data'));
  await run('chown', ['postfix', join(dir, 'data')]);
  await run('/usr/sbin/postfix', ['-c', conf, 'check']);
  await run('/usr/sbin/postfix', ['-c', conf, 'start']);
  await waitForPort(port);
  const logFile = join(dir, 'maillog');
  const queue = async () => (await run('/usr/sbin/postqueue', ['-c', conf, '-p'])).stdout;
  return {
    dir,
    port,
    log: () => {
      try {
        return readFileSync(logFile, 'utf8');
      } catch {
        return '';
      }
    },
    queue,
    async drained(timeoutMs = 30_000) {
      for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await new Promise((r) => setTimeout(r, 200))) {
        if (/Mail queue is empty/.test(await queue())) return true;
      }
      return false;
    },
    async stop() {
      await run('/usr/sbin/postfix', ['-c', conf, 'stop']).catch(() => {});
    },
  };
}
