/*
 * replay/operator — what the ISP's operator and its infected customers do
 * during a replay, through the doors they use in life:
 *
 *   the operator   the `backstop` command against the running node's store
 *                  (customers import, leases import, outbox list/approve,
 *                  incident list, and incident tick --now as the desk's fake
 *                  clock), and GET /desk/restricted.txt with its bearer token;
 *   a customer     SMTP from the customer's own address (MAIL at the
 *                  smarthost), and the portal link from the notice that
 *                  reached the relay: GET for the page, its CSRF cookie and
 *                  field, POST of the attestation.
 *
 * It records what each step answered (scoreboard CustomerSeen); judging is
 * the scoreboard's. Never reaches into the node's memory or its database:
 * what it knows, an operator or a customer could know.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import PostalMime from 'postal-mime';
import type { SinkedMessage } from './processes.ts';
import type { CustomerSeen, SmtpProbe } from './scoreboard.ts';
import type { PlanCustomer } from './traffic.ts';

const BIN = new URL('../../bin/backstop.js', import.meta.url).pathname;

export interface CliResult {
  code: number;
  out: string;
  err: string;
}

/** `backstop ARGS --config FILE` as a child process, as an operator runs it beside the node. */
export function backstopCli(configFile: string, args: string[], timeoutMs = 120_000): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args, '--config', configFile], { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 2) : 0;
      resolve({ code, out: stdout, err: stderr });
    });
  });
}

async function mustCli(configFile: string, args: string[]): Promise<string> {
  const r = await backstopCli(configFile, args);
  if (r.code !== 0) throw new Error(`backstop ${args.join(' ')} exited ${r.code}: ${r.err.trim() || r.out.trim()}`);
  return r.out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The ISP's own exports for the desk: the customer file and the static assignments, imported with the CLI. */
export async function importCustomers(configFile: string, dir: string, customers: readonly PlanCustomer[]): Promise<void> {
  const csv = (cells: string[]) => cells.map((c) => (/[",\n]/.test(c) ? `"${c.replace(/"/g, '""')}"` : c)).join(',');
  const customersCsv = join(dir, 'customers.csv');
  const staticCsv = join(dir, 'static-assignments.csv');
  writeFileSync(customersCsv, ['id,name,email,phone,language,time_zone,lines', ...customers.map((c) => csv([c.id, c.name, c.email, '', c.language, c.timeZone, '']))].join('\n') + '\n');
  writeFileSync(staticCsv, ['customer_id,network,valid_from,valid_to', ...customers.map((c) => csv([c.id, c.network, '2025-01-01', '']))].join('\n') + '\n');
  await mustCli(configFile, ['customers', 'import', customersCsv]);
  await mustCli(configFile, ['leases', 'import', '--format', 'static-csv', staticCsv]);
}

interface OutboxRow {
  id: string;
  kind: string;
  state: string;
}

async function outbox(configFile: string, args: string[]): Promise<OutboxRow[]> {
  const out = await mustCli(configFile, ['outbox', 'list', '--limit', '10000', ...args]);
  return out
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [id, kind, state] = l.split('\t');
      return { id: id!, kind: kind!, state: state! };
    });
}

/** Polls `check` every pollMs until it returns true or timeoutMs has passed; returns its last answer. */
async function until(check: () => Promise<boolean>, timeoutMs: number, pollMs = 1000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await sleep(pollMs);
  }
}

/**
 * The operator's review of complaints to bouncing MTAs: waits until the
 * bouncer jobs have decided (each found the organisation and held its
 * letter for review), then approves every held complaint with one `backstop
 * outbox approve ID…`, and waits until the node's worker has handed them to
 * the relay (`sent` counts the complaints there).
 * Returns how many it approved.
 */
export async function approveHeldComplaints(configFile: string, sent: () => number, log: (line: string) => void, timeoutMs = 120_000): Promise<number> {
  const pending = (rows: OutboxRow[]) => rows.filter((r) => r.kind === 'backscatter-bouncer' && (r.state === 'queued' || r.state === 'running')).length;
  // By kind (a large run's outbox holds more jobs than one listing shows), both kinds in one listing (one process):
  // once no bouncer job is pending, the same listing shows every complaint held.
  let rows: OutboxRow[] = [];
  const settled = async () => {
    rows = await outbox(configFile, ['--kind', 'backscatter-bouncer', '--kind', 'backscatter-complaint']);
    return pending(rows) === 0;
  };
  if (!(await until(settled, timeoutMs, 2000))) {
    log('  complaints: bouncer jobs still pending at the deadline');
  }
  const held = rows.filter((r) => r.kind === 'backscatter-complaint' && r.state === 'review').map((r) => r.id);
  log(`  complaints: ${held.length} held for review, approving them with one backstop outbox approve`);
  // Counted before the first approval: the worker may send one before the last is approved.
  const before = sent();
  // All in one process (`outbox approve ID…`): a process start costs seconds on a loaded 2-core machine; 1,000 ids a call keeps argv modest.
  for (let i = 0; i < held.length; i += 1000) await mustCli(configFile, ['outbox', 'approve', ...held.slice(i, i + 1000)]);
  // Sent means: at the relay (where the bouncing MTAs' mailboxes are, in this world).
  if (!(await until(async () => sent() >= before + held.length, timeoutMs, 500))) log('  complaints: approved complaints still not at the relay at the deadline');
  return held.length;
}

/** MAIL FROM from `localAddress` at the smarthost: the reply to MAIL, then QUIT. A raw client, as the customer's PC would speak. */
export function probeMail(host: string, port: number, localAddress: string, helo: string, mailFrom: string, timeoutMs = 15_000): Promise<SmtpProbe> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, localAddress });
    let buffer = '';
    let step = 0;
    const done = (probe: SmtpProbe) => {
      clearTimeout(timer);
      socket.end();
      socket.destroy();
      resolve(probe);
    };
    const timer = setTimeout(() => done({ code: 0, text: `no reply within ${timeoutMs} ms` }), timeoutMs);
    socket.on('error', (err) => done({ code: 0, text: err.message }));
    socket.on('data', (chunk) => {
      buffer += chunk.toString('latin1');
      // A reply ends with a line "NNN text" (no hyphen after the code, RFC 5321 4.2.1).
      const m = /(?:^|\r\n)(\d{3}) ([^\r\n]*)\r\n$/.exec(buffer);
      if (!m) return;
      const reply = { code: Number(m[1]), text: buffer.trim().split('\r\n').pop()! };
      buffer = '';
      // Greeting, EHLO, MAIL: the first refusal is the answer; MAIL's reply is the answer anyway.
      if (reply.code >= 400 || step === 2) {
        socket.write('QUIT\r\n');
        return done(reply);
      }
      socket.write(step === 0 ? `EHLO ${helo}\r\n` : `MAIL FROM:<${mailFrom}>\r\n`);
      step += 1;
    });
  });
}

/** GET /desk/restricted.txt with the bearer token: the networks listed (the enforcement list firewalls and RADIUS read). */
async function restrictedList(webUrl: string, token: string): Promise<Set<string>> {
  const res = await fetch(`${webUrl}/desk/restricted.txt`, { headers: { authorization: `Bearer ${token}` } });
  if (res.status !== 200) throw new Error(`GET /desk/restricted.txt answered ${res.status}`);
  return new Set((await res.text()).split('\n').filter(Boolean));
}

/** The portal link in the customer's latest notice at the relay (the latest by its Date: the restriction notice carries the fake clock's time). */
async function latestPortalLink(notices: readonly SinkedMessage[]): Promise<string | null> {
  let best: { at: number; link: string } | null = null;
  for (const n of notices) {
    const start = n.text.search(/^Received: /m);
    const mail = await PostalMime.parse(Buffer.from(start === -1 ? n.text : n.text.slice(start), 'latin1'));
    const link = /https?:\/\/\S+\/portal\/[A-Za-z0-9_-]{43}/.exec(mail.text ?? '')?.[0];
    const at = Date.parse(mail.date ?? '');
    if (link && (!best || at >= best.at)) best = { at, link };
  }
  return best?.link ?? null;
}

/** The customer attests on the portal: the page (cookie and CSRF field), then the form's POST. Returns the POST's status. */
async function attest(link: string): Promise<number> {
  const page = await fetch(link);
  const body = await page.text();
  const cookie = /bs_portal_csrf=([^;]+)/.exec(page.headers.get('set-cookie') ?? '')?.[1];
  const csrf = /name="csrf" value="([^"]+)"/.exec(body)?.[1];
  if (page.status !== 200 || !cookie || !csrf) return page.status === 200 ? 0 : page.status;
  const res = await fetch(`${link}/attest`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: `bs_portal_csrf=${cookie}` },
    body: new URLSearchParams({ csrf, confirm: 'yes' }).toString(),
  });
  await res.arrayBuffer();
  return res.status;
}

export interface CustomerRunOptions {
  configFile: string;
  smtp: { host: string; port: number };
  webUrl: string;
  listToken: string;
  graceHours: number;
  /** Everything the relay has received so far (read again at each step). */
  relayed: () => SinkedMessage[];
  deskFrom: string;
  log: (line: string) => void;
}

/**
 * Each infected customer's way through the desk after the outbreak: the
 * opening notice arrives; MAIL still works during the grace period; the
 * operator's fake clock ends the grace period (`incident tick --now`); MAIL is
 * refused and the line is on the restricted list; the customer follows the
 * link in the latest notice and attests; MAIL works again and the line is off
 * the list. What each step answered, per customer.
 */
export async function exerciseCustomers(customers: readonly PlanCustomer[], o: CustomerRunOptions): Promise<CustomerSeen[]> {
  // The relay's mail, read once per look (a large run leaves thousands of files there).
  const deskMail = () => o.relayed().filter((m) => m.mailFrom.toLowerCase() === o.deskFrom.toLowerCase() && m.rcptTo.length === 1);
  const noticesTo = (c: PlanCustomer, mail: SinkedMessage[]) => mail.filter((m) => m.rcptTo[0]!.toLowerCase() === c.email.toLowerCase());
  const probe = (c: PlanCustomer) => probeMail(o.smtp.host, o.smtp.port, c.sourceIp, `pc.${c.id}.customers.example.org`, `${c.id}@customers.example.org`);
  const seen = new Map<string, CustomerSeen>(
    customers.map((c) => [c.id, { id: c.id, incidentState: null, duringGrace: { code: 0, text: 'not probed' }, restricted: { code: 0, text: 'not probed' }, listedWhileRestricted: false, attestStatus: 0, released: { code: 0, text: 'not probed' }, listedAfterRelease: true }]),
  );

  // 1. The opening notices: the node's desk worker sends them on its own clock.
  if (!(await until(async () => ((mail) => customers.every((c) => noticesTo(c, mail).length >= 1))(deskMail()), 60_000))) o.log('  customers: some opening notices missing at the deadline');
  for (const c of customers) seen.get(c.id)!.duringGrace = await probe(c);

  // 2. The desk's fake clock: one hour past the grace period.
  const at = new Date(Date.now() + (o.graceHours + 1) * 3_600_000).toISOString();
  const tick = await backstopCli(o.configFile, ['incident', 'tick', '--now', at]);
  o.log(`  customers: backstop incident tick --now ${at}: ${tick.out.trim()}${tick.code ? ` (exit ${tick.code}: ${tick.err.trim()})` : ''}`);

  // 3. Restricted: MAIL refused (each node re-reads the published set every few seconds), and listed.
  for (const c of customers) {
    const s = seen.get(c.id)!;
    await until(async () => ((s.restricted = await probe(c)), s.restricted.code >= 500), 15_000, 500);
  }
  const listed = await restrictedList(o.webUrl, o.listToken);
  for (const c of customers) seen.get(c.id)!.listedWhileRestricted = listed.has(c.network);

  // 4. Each customer attests through the link in its latest notice.
  const notices = deskMail();
  for (const c of customers) {
    const link = await latestPortalLink(noticesTo(c, notices));
    seen.get(c.id)!.attestStatus = link ? await attest(link) : 0;
  }

  // 5. Released: MAIL accepted again, and off the list.
  for (const c of customers) {
    const s = seen.get(c.id)!;
    await until(async () => ((s.released = await probe(c)), s.released.code === 250), 15_000, 500);
  }
  const after = await restrictedList(o.webUrl, o.listToken);
  for (const c of customers) seen.get(c.id)!.listedAfterRelease = after.has(c.network);

  // 6. The incidents as the desk lists them.
  // Newest first: a customer's open incident is the first line that names it.
  const states = new Map<string, string>();
  for (const line of (await mustCli(o.configFile, ['incident', 'list', '--limit', '10000'])).split('\n').filter(Boolean)) {
    const [, customer, state] = line.split('\t');
    if (customer && state && !states.has(customer)) states.set(customer, state);
  }
  for (const c of customers) seen.get(c.id)!.incidentState = states.get(c.id) ?? null;
  return customers.map((c) => seen.get(c.id)!);
}
