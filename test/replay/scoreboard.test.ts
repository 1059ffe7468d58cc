import assert from 'node:assert/strict';
import { test } from 'node:test';
import MimeNode from 'nodemailer/lib/mime-node';
import { composeComplaint } from '../../src/backscatter/complaint.ts';
import { computeScoreboard, readComplaints, scoreLines, type CustomerSeen, type Delivered } from '../../src/replay/scoreboard.ts';
import type { SinkedMessage } from '../../src/replay/processes.ts';
import type { SendResult } from '../../src/replay/send.ts';
import { makeKeyring, signPrvs } from '../../src/backscatter/batv.ts';
import { messageIdStamp } from '../../src/backscatter/verdict.ts';
import { bindOriginals, buildRaw, EICAR, planReplay, quotedWormText, type BackscatterEntry, type OutboundEntry, type PlanEntry, type RealBounceEntry, type ReplaySizes } from '../../src/replay/traffic.ts';

const tiny: ReplaySizes = { wormSources: 3, wormMessages: 10, customerSources: 2, customerWormMessages: 4, legitMessages: 5, backscatterMessages: 30, bouncingDomains: 10, outboundMessages: 4, realBounces: 2 };
const plan = planReplay(tiny, 1);
const ok = (seq: number): SendResult => ({ seq, code: 250, response: '250 ok', latencyMs: seq, retried: false });
const refused = (seq: number): SendResult => ({ seq, code: 550, response: '550 no', latencyMs: 1, retried: false });
const LEGIT_KINDS = new Set<PlanEntry['kind']>(['legit', 'outbound', 'real-bounce']);

/** A next-hop dump as smtp-sink writes it: envelope lines, its Received line, then the message. */
const sinkDump = (mailFrom: string, rcpt: string, message: string) => `X-Mail-Args: <${mailFrom}>\r\nX-Rcpt-Args: <${rcpt}>\r\nReceived: from mx.example.net\r\n\tby smtp-sink (x)\r\n${message}`;
const ring = makeKeyring({ num: 0, secret: 'k'.repeat(32) });
const stampKey = Buffer.from('s'.repeat(32));
/** Our user's mail as the node relays it: the sender signed, the stamp on top. `over` breaks one of them. */
const leftSigned = (e: OutboundEntry, over: { unsigned?: boolean; unstamped?: boolean } = {}) =>
  sinkDump(over.unsigned ? e.mailFrom : signPrvs(e.mailFrom, ring, Date.now()), e.rcpt, `${over.unstamped ? '' : `X-Backstop-Stamp: ${messageIdStamp(`<replay-${e.seq}@example.net>`, stampKey)}\r\n`}${buildRaw(e).toString('latin1')}`);
/** A real bounce as the node hands it on: null sender, to the user's own address (`to` breaks that). */
const bounceArrived = (e: RealBounceEntry, to = e.rcpt) => sinkDump('', to, buildRaw(e).toString('latin1'));

function perfectRun() {
  const outbound = plan.entries.filter((e): e is OutboundEntry => e.kind === 'outbound');
  const captured = outbound.map((e) => leftSigned(e)).map((text) => ({ mailFrom: /^X-Mail-Args: <([^>]*)>/m.exec(text)![1]!, text }));
  const bound = bindOriginals(plan.entries, captured).filter((e): e is RealBounceEntry => e.kind === 'real-bounce');
  const results = plan.entries.map((e) => (LEGIT_KINDS.has(e.kind) ? ok(e.seq) : refused(e.seq)));
  const nextHop = [
    ...plan.entries.filter((e) => e.kind === 'legit').map((e) => buildRaw(e).toString('latin1')),
    ...captured.map((m) => m.text),
    ...bound.map((e) => bounceArrived(e)),
  ];
  return { results, nextHop, bound, outbound };
}

/** An ARF report as the relay captured it, about `source`, to `desk`. */
function arf(source: string, desk: string): SinkedMessage {
  return {
    mailFrom: 'backstop@example.net',
    rcptTo: [desk],
    text: [
      `To: ${desk}`,
      'Content-Type: multipart/report; report-type=feedback-report;',
      ' boundary="b"',
      '',
      '--b',
      'Content-Type: message/feedback-report',
      '',
      'Feedback-Type: virus',
      `Source-IP: ${source}`,
      '--b--',
    ].join('\n'),
  };
}

const wormSources = [...new Set(plan.entries.filter((e) => e.kind === 'worm').map((e) => e.sourceIp))];
const rightReports = () => wormSources.filter((ip) => plan.abuseContactOf[ip]).map((ip) => arf(ip, plan.abuseContactOf[ip]!));

test('the plan knows the desk of each worm source: /29 networks, an opted-out one, a /32 inside a network that wins', () => {
  const big = planReplay({ ...tiny, wormSources: 40 }, 1);
  assert.equal(big.abuseContactOf['127.10.0.1'], 'abuse@net1.example.com');
  assert.equal(big.abuseContactOf['127.10.0.2'], 'abuse@reseller.example.org', 'the /32 override');
  assert.equal(big.abuseContactOf['127.10.0.3'], 'abuse@net1.example.com');
  assert.equal(big.abuseContactOf['127.10.0.8'], 'abuse@net2.example.com');
  assert.equal(big.abuseContactOf['127.10.0.24'], null, 'the fourth network opted out');
  assert.ok(big.abuseOverrides.some((o) => o.cidr === '127.10.0.24/29' && o.contact === 'never'));
  assert.ok(big.abuseOverrides.some((o) => o.cidr === '127.10.0.2/32'));
});

const COMPLAINT_FROM = 'backscatter@example.net';
const DESK_FROM = 'abuse-desk@example.net';
const sinkText = (raw: Buffer | string) => `X-Mail-Args: <x>\r\nReceived: from mx.example.net\r\n\tby smtp-sink (x)\r\n${raw.toString()}`;
/** The first backscatter entry of a bouncing domain, and the header block the gateway received of it. */
const bounceOf = (domain: string) => plan.entries.find((e): e is BackscatterEntry => e.kind === 'backscatter' && e.bouncingDomain === domain)!;
const headerBlockOf = (e: BackscatterEntry) => {
  const t = buildRaw(e).toString('latin1');
  return t.slice(0, t.indexOf('\r\n\r\n') + 4);
};

/** A complaint as Backstop composes it (backscatter/complaint.ts), about the domain's bounce, to `to`. */
async function complaint(domain: string, opts: { to?: string[]; headers?: string; extra?: (root: MimeNode) => void } = {}): Promise<SinkedMessage> {
  const b = plan.bouncers.find((x) => x.domain === domain)!;
  const facts = { organisation: `ip:${b.ip}`, basis: 'test', to: opts.to ?? [b.contact], clientIp: b.ip, reverseName: null, helo: `mx.${domain}`, reportingMta: null, virusName: 'W32/Mydoom@MM', count: 3, firstSeen: '2004-01-26T13:00:00Z', headers: opts.headers ?? headerBlockOf(bounceOf(domain)) };
  let raw = await composeComplaint({ ...facts, from: COMPLAINT_FROM, hostname: 'mx.example.net', languages: ['en', 'de'], texts: {}, letterId: domain, now: new Date('2004-01-27T00:00:00Z') });
  if (opts.extra) {
    // A broken complaint: the same letter with something more in it.
    const root = new MimeNode('multipart/mixed');
    root.setHeader({ From: COMPLAINT_FROM, To: facts.to.join(', '), Subject: 'complaint' });
    root.createChild('text/plain; charset=utf-8').setContent('Dear postmaster');
    root.createChild('text/rfc822-headers').setContent(facts.headers);
    opts.extra(root);
    raw = await root.build();
  }
  return { mailFrom: COMPLAINT_FROM, rcptTo: facts.to, text: sinkText(raw) };
}

/** What a customer that went through every step looks like to the operator. */
const wellSeen = (id: string): CustomerSeen => ({
  id,
  incidentState: 'probation',
  duringGrace: { code: 250, text: '250 2.1.0 Ok' },
  restricted: { code: 550, text: '550 5.7.1 Mail from this connection is restricted' },
  listedWhileRestricted: true,
  attestStatus: 200,
  released: { code: 250, text: '250 2.1.0 Ok' },
  listedAfterRelease: false,
});
const deskNotice = (email: string, n: number): SinkedMessage => ({ mailFrom: DESK_FROM, rcptTo: [email], text: sinkText(`From: Abuse desk <${DESK_FROM}>\r\nTo: ${email}\r\nSubject: notice ${n}\r\n\r\nhttp://127.0.0.1:1/portal/x\r\n`) });

/** A run where everything went right: reports, complaints, customer notices, customers through every step. */
async function perfectDelivered(over: { complaints?: SinkedMessage[]; customers?: CustomerSeen[]; outgoing?: SinkedMessage[] } = {}): Promise<Delivered> {
  const { nextHop } = perfectRun();
  const complaints = over.complaints ?? (await Promise.all(plan.complaintDomains.map((d) => complaint(d))));
  const notices = plan.customers.flatMap((c) => [deskNotice(c.email, 1), deskNotice(c.email, 2)]);
  const outgoing = over.outgoing ?? [...rightReports(), ...complaints, ...notices];
  return {
    nextHop,
    outgoing,
    outgoingRecipients: outgoing.flatMap((m) => m.rcptTo),
    complaintFrom: COMPLAINT_FROM,
    complaints: await readComplaints(complaints),
    deskFrom: DESK_FROM,
    customers: over.customers ?? plan.customers.map((c) => wellSeen(c.id)),
  };
}

test('the plan: vendor notices come from a sender and are the domains to complain to; customers sit in our space with outside recipients', () => {
  assert.ok(plan.complaintDomains.length >= 3, `${plan.complaintDomains.length} domains to complain to`);
  for (const d of plan.complaintDomains) assert.ok(bounceOf(d).mailFrom, `${d} sends its notices from an address`);
  const dsn = plan.entries.find((e) => e.kind === 'backscatter' && e.style === 'postfix-dsn') as BackscatterEntry;
  assert.equal(dsn.mailFrom, '', 'an MTA bounce comes from the null sender');
  assert.ok(!plan.complaintDomains.includes(dsn.bouncingDomain));
  assert.equal(plan.customers.length, 2);
  assert.deepEqual(plan.customers.map((c) => c.network), ['127.40.0.0/30', '127.40.0.6/32']);
  for (const e of plan.entries) if (e.kind === 'worm' && e.customerId) assert.ok(!e.rcpt.endsWith(`@${plan.ourDomain}`), 'customers send out, not to our users');
  assert.ok(plan.abuseOverrides.some((o) => o.cidr === `${plan.bouncers[0]!.ip}/32` && o.contact === 'abuse@bouncer1.example.com'));
});

test('a perfect run holds every line', async () => {
  const { results } = perfectRun();
  const s = computeScoreboard(plan, results, await perfectDelivered(), 2, 'tiny');
  assert.equal(s.abuseReports, s.abuseReportsExpected);
  assert.ok(s.abuseReports > 0);
  assert.equal(s.infectedDelivered, 0);
  assert.equal(s.legitDelivered, 5);
  assert.equal(s.outboundDelivered, 4);
  assert.equal(s.realBouncesDelivered, 2);
  assert.equal(s.realBouncesRefused, 0);
  assert.equal(s.legitLostOrDelayed, 0);
  assert.equal(s.messagesPerSecond, plan.entries.length / 2);
  assert.equal(s.complaints, plan.complaintDomains.length);
  assert.equal(s.complaintsWithoutHeaders, 0);
  assert.equal(s.complaintsCarryingWorm, 0);
  assert.equal(s.customersInfected, 2);
  assert.equal(s.customersReleased, 2);
  assert.equal(s.customerNotices, 4);
  assert.equal(s.noticesElsewhere, 0);
  assert.deepEqual(scoreLines(s).filter((l) => !l.holds).map((l) => l.name), []);
});

test('the plan: our users write out from the office network; each real bounce answers one of those, bound to what left', () => {
  const { outbound, bound } = perfectRun();
  assert.equal(outbound.length, 4);
  assert.equal(bound.length, 2);
  assert.equal(plan.officeNetwork, '127.50.0.0/24');
  for (const e of outbound) assert.ok(e.sourceIp.startsWith('127.50.0.') && plan.ourUsers.includes(e.mailFrom) && !e.rcpt.endsWith(`@${plan.ourDomain}`));
  for (const b of bound) {
    const original = outbound.find((o) => o.seq === b.bounces)!;
    assert.equal(b.rcpt, original.mailFrom);
    assert.equal(b.failedRcpt, original.rcpt);
    assert.match(b.original!.envelopeFrom, new RegExp(`^prvs=0\\d{3}[0-9a-f]{6}=${original.mailFrom}$`));
    const raw = buildRaw(b).toString('latin1');
    // The DSN quotes the headers the original left with: its Message-ID and the node's stamp.
    assert.match(raw, new RegExp(`^Message-ID: <replay-${original.seq}@example\\.net>\r$`, 'm'));
    assert.match(raw, /^X-Backstop-Stamp: bs1\.[0-9a-f]{20}\r$/m);
    assert.match(raw, /^Content-Type: multipart\/report; boundary="[^"]+"; report-type=delivery-status/m);
  }
  const unbound = plan.entries.find((e) => e.kind === 'real-bounce')!;
  assert.throws(() => buildRaw(unbound), /never captured/, 'no original, nothing to bounce');
});

// Each way legitimate mail of ours can go wrong fails the legit line.
const legitCases: { name: string; run: (r: ReturnType<typeof perfectRun>) => { results: SendResult[]; nextHop: string[] }; field: 'realBouncesRefused' | 'realBouncesDelivered' | 'outboundDelivered'; want: number }[] = [
  {
    name: 'a real bounce refused by the shield',
    field: 'realBouncesRefused',
    want: 1,
    run: (r) => ({ results: r.results.map((x) => (x.seq === r.bound[0]!.seq ? refused(x.seq) : x)), nextHop: r.nextHop.filter((t) => !t.includes(`<replay-${r.bound[0]!.seq}@mx.`)) }),
  },
  { name: 'a real bounce that never reached the mailbox', field: 'realBouncesDelivered', want: 1, run: (r) => ({ results: r.results, nextHop: r.nextHop.filter((t) => !t.includes(`<replay-${r.bound[0]!.seq}@mx.`)) }) },
  {
    name: 'a real bounce handed on to the tagged address (the tag not removed)',
    field: 'realBouncesDelivered',
    want: 1,
    run: (r) => ({ results: r.results, nextHop: [...r.nextHop.filter((t) => !t.includes(`<replay-${r.bound[0]!.seq}@mx.`)), bounceArrived(r.bound[0]!, r.bound[0]!.original!.envelopeFrom)] }),
  },
  {
    name: 'our mail out left with its sender unsigned',
    field: 'outboundDelivered',
    want: 3,
    run: (r) => ({ results: r.results, nextHop: [...r.nextHop.filter((t) => !t.includes('X-Replay-Kind: outbound') || !t.includes(`<replay-${r.outbound[0]!.seq}@example.net>`) || t.includes('report-type')), leftSigned(r.outbound[0]!, { unsigned: true })] }),
  },
  {
    name: 'our mail out left without the stamp',
    field: 'outboundDelivered',
    want: 3,
    run: (r) => ({ results: r.results, nextHop: [...r.nextHop.filter((t) => !t.includes('X-Replay-Kind: outbound') || !t.includes(`<replay-${r.outbound[0]!.seq}@example.net>`) || t.includes('report-type')), leftSigned(r.outbound[0]!, { unstamped: true })] }),
  },
];

for (const c of legitCases) {
  test(`legit line fails: ${c.name}`, () => {
    const r = perfectRun();
    const { results, nextHop } = c.run(r);
    const s = computeScoreboard(plan, results, { nextHop, outgoingRecipients: [] }, 1, 'tiny');
    assert.equal(s[c.field], c.want);
    assert.ok(s.legitLostOrDelayed >= 1);
    const line = scoreLines(s).find((l) => l.name.startsWith('legitimate'))!;
    assert.equal(line.holds, false);
  });
}

test('one worm message at the next hop fails the infected line', () => {
  const { results, nextHop } = perfectRun();
  const worm = plan.entries.find((e) => e.kind === 'worm')!;
  const s = computeScoreboard(plan, results, { nextHop: [...nextHop, buildRaw(worm).toString('latin1')], outgoingRecipients: [] }, 1, 'tiny');
  assert.equal(s.infectedDelivered, 1);
  assert.equal(scoreLines(s).find((l) => l.name.startsWith('infected'))!.holds, false);
});

test('a legitimate message that never arrived fails the legit line', () => {
  const { results, nextHop } = perfectRun();
  const s = computeScoreboard(plan, results, { nextHop: nextHop.slice(1), outgoingRecipients: [] }, 1, 'tiny');
  assert.equal(s.legitLostOrDelayed, 1);
  assert.equal(scoreLines(s).find((l) => l.name.startsWith('legitimate'))!.holds, false);
});

test('a notice to a forged worm sender fails the sender line, whatever its case', () => {
  const { results, nextHop } = perfectRun();
  const worm = plan.entries.find((e) => e.kind === 'worm')!;
  const victim = worm.kind === 'worm' ? worm.mailFrom.toUpperCase() : '';
  const s = computeScoreboard(plan, results, { nextHop, outgoingRecipients: [victim] }, 1, 'tiny');
  assert.equal(s.sentToWormSenders, 1);
  assert.equal(scoreLines(s).find((l) => l.name.startsWith('messages sent'))!.holds, false);
});

test('backscatter above 1% fails its line', () => {
  const { results, nextHop } = perfectRun();
  const bs = plan.entries.find((e) => e.kind === 'backscatter')!;
  const s = computeScoreboard(plan, results, { nextHop: [...nextHop, buildRaw(bs).toString('latin1')], outgoingRecipients: [] }, 1, 'tiny');
  assert.equal(s.backscatterDeliveredToUsers, 1);
  assert.equal(s.backscatterDeliveredPercent, 100 / 30);
  assert.equal(scoreLines(s).find((l) => l.name.startsWith('backscatter'))!.holds, false);
});

test('an abuse report to the wrong desk, a repeat, or a missing one fails the abuse line', () => {
  const { results, nextHop } = perfectRun();
  const line = (outgoing: SinkedMessage[]) => {
    const s = computeScoreboard(plan, results, { nextHop, outgoingRecipients: outgoing.flatMap((m) => m.rcptTo), outgoing }, 1, 'tiny');
    return { s, holds: scoreLines(s).find((l) => l.name.startsWith('abuse reports'))!.holds };
  };
  const right = rightReports();
  assert.equal(line(right).holds, true);
  const wrong = line([arf(wormSources[0]!, 'abuse@somebody-else.example'), ...right.slice(1)]);
  assert.equal(wrong.s.abuseReportsWrongContact, 1);
  assert.equal(wrong.holds, false);
  const repeated = line([...right, right[0]!]);
  assert.equal(repeated.s.abuseReportsDuplicate, 1);
  assert.equal(repeated.holds, false);
  const missing = line(right.slice(1));
  assert.equal(missing.s.abuseReportsMissing, 1);
  assert.equal(missing.holds, false);
  assert.equal(line([...right, arf('127.99.0.1', 'abuse@net1.example.com')]).s.abuseReportsWrongContact, 1, 'a report about a source that sent no worm');
});

test('an ARF report about one of our customers fails the abuse line (their space goes to the desk)', async () => {
  const { results } = perfectRun();
  const d = await perfectDelivered();
  const extra = arf(plan.customers[0]!.sourceIp, 'abuse@net1.example.com');
  const s = computeScoreboard(plan, results, { ...d, outgoing: [...d.outgoing!, extra], outgoingRecipients: [...d.outgoingRecipients, ...extra.rcptTo] }, 1, 'tiny');
  assert.equal(s.abuseReportsAboutCustomers, 1);
  assert.equal(scoreLines(s).find((l) => l.name.startsWith('abuse reports'))!.holds, false);
});

// Each broken complaint outcome, and the count that must show it.
const domains = () => plan.complaintDomains;
const complaintCases: { name: string; complaints: () => Promise<SinkedMessage[]>; field: 'complaintsDuplicate' | 'complaintsMissing' | 'complaintsWrongContact' | 'complaintsWithoutHeaders' | 'complaintsCarryingWorm' }[] = [
  { name: 'two complaints to one bouncing domain', field: 'complaintsDuplicate', complaints: async () => [...(await Promise.all(domains().map((d) => complaint(d)))), await complaint(domains()[0]!)] },
  { name: 'a bouncing domain never complained to', field: 'complaintsMissing', complaints: () => Promise.all(domains().slice(1).map((d) => complaint(d))) },
  { name: 'a complaint to someone other than the bouncing organisation', field: 'complaintsWrongContact', complaints: async () => [await complaint(domains()[0]!, { to: ['abuse@net1.example.com'] }), ...(await Promise.all(domains().slice(1).map((d) => complaint(d))))] },
  {
    name: 'a complaint quoting only part of the bounce\'s headers',
    field: 'complaintsWithoutHeaders',
    complaints: async () => {
      const cut = headerBlockOf(bounceOf(domains()[0]!)).split('\r\n').filter((l) => !l.startsWith('Subject:')).join('\r\n');
      return [await complaint(domains()[0]!, { headers: cut }), ...(await Promise.all(domains().slice(1).map((d) => complaint(d))))];
    },
  },
  {
    name: 'a complaint with the worm attached (base64)',
    field: 'complaintsCarryingWorm',
    complaints: async () => [await complaint(domains()[0]!, { extra: (root) => root.createChild('application/octet-stream', { filename: 'document.pif' }).setContent(Buffer.from(EICAR)) }), ...(await Promise.all(domains().slice(1).map((d) => complaint(d))))],
  },
  {
    name: 'a complaint quoting the worm\'s own text below the headers',
    field: 'complaintsCarryingWorm',
    complaints: async () => [await complaint(domains()[0]!, { extra: (root) => root.createChild('text/plain').setContent(quotedWormText({ seq: 0 })) }), ...(await Promise.all(domains().slice(1).map((d) => complaint(d))))],
  },
  {
    name: 'a complaint carrying the ClamAV test file inside its header part',
    field: 'complaintsCarryingWorm',
    complaints: async () => {
      const { readFileSync } = await import('node:fs');
      const b64 = readFileSync('/usr/share/clamav-testfiles/clam.exe').toString('base64').slice(0, 76);
      return [await complaint(domains()[0]!, { extra: (root) => root.createChild('text/rfc822-headers').setContent(`X-Leak: ${b64}\r\n`) }), ...(await Promise.all(domains().slice(1).map((d) => complaint(d))))];
    },
  },
];

for (const c of complaintCases) {
  test(`complaints line fails: ${c.name}`, async () => {
    const { results } = perfectRun();
    const s = computeScoreboard(plan, results, await perfectDelivered({ complaints: await c.complaints() }), 1, 'tiny');
    assert.ok(s[c.field] >= 1, `${c.field} = ${s[c.field]}`);
    assert.equal(scoreLines(s).find((l) => l.name.startsWith('complaints'))!.holds, false);
  });
}

// Each broken customer outcome fails the customers line.
const customerCases: { name: string; seen: (c: CustomerSeen) => CustomerSeen; field: 'customersWithIncident' | 'customersRestricted' | 'customersReleased' }[] = [
  { name: 'no incident', field: 'customersWithIncident', seen: (c) => ({ ...c, incidentState: null }) },
  { name: 'restricted before the grace period ended', field: 'customersRestricted', seen: (c) => ({ ...c, duringGrace: { code: 550, text: '550 5.7.1 restricted' } }) },
  { name: 'still sending after the grace period', field: 'customersRestricted', seen: (c) => ({ ...c, restricted: { code: 250, text: '250 ok' } }) },
  { name: 'refused for another reason than the restriction', field: 'customersRestricted', seen: (c) => ({ ...c, restricted: { code: 550, text: '550 5.1.0 no' } }) },
  { name: 'missing from the enforcement list while restricted', field: 'customersRestricted', seen: (c) => ({ ...c, listedWhileRestricted: false }) },
  { name: 'the portal refused the attestation', field: 'customersReleased', seen: (c) => ({ ...c, attestStatus: 403 }) },
  { name: 'still refused after attesting', field: 'customersReleased', seen: (c) => ({ ...c, released: { code: 550, text: '550 5.7.1 restricted' } }) },
  { name: 'still listed after attesting', field: 'customersReleased', seen: (c) => ({ ...c, listedAfterRelease: true }) },
  { name: 'the incident not in probation after attesting', field: 'customersReleased', seen: (c) => ({ ...c, incidentState: 'restricted' }) },
];

for (const c of customerCases) {
  test(`customers line fails: ${c.name}`, async () => {
    const { results } = perfectRun();
    const customers = plan.customers.map((x, i) => (i === 0 ? c.seen(wellSeen(x.id)) : wellSeen(x.id)));
    const s = computeScoreboard(plan, results, await perfectDelivered({ customers }), 1, 'tiny');
    assert.equal(s[c.field], 1);
    assert.equal(scoreLines(s).find((l) => l.name.startsWith('our infected customers'))!.holds, false);
  });
}

test('customers line fails: a customer never notified, or never seen by the operator', async () => {
  const { results } = perfectRun();
  const d = await perfectDelivered();
  const first = plan.customers[0]!.email;
  const unnotified = d.outgoing!.filter((m) => m.rcptTo[0] !== first);
  let s = computeScoreboard(plan, results, { ...d, outgoing: unnotified, outgoingRecipients: unnotified.flatMap((m) => m.rcptTo) }, 1, 'tiny');
  assert.equal(s.customersNotified, 1);
  assert.equal(scoreLines(s).find((l) => l.name.startsWith('our infected customers'))!.holds, false);
  s = computeScoreboard(plan, results, { ...d, customers: d.customers!.slice(1) }, 1, 'tiny');
  assert.equal(s.customersWithIncident, 1);
  assert.equal(scoreLines(s).find((l) => l.name.startsWith('our infected customers'))!.holds, false);
});
