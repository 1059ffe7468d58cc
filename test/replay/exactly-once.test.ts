/*
 * The exactly-once counting of `backstop replay --nodes N` and the cluster
 * tests (src/replay/exactly-once.ts): a perfect run holds every line, and
 * each way a guarantee can break fails its own line.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { countExactlyOnce, exactlyOnceLines, firstCopies, outboxDrained, perNodeLines, type ExactlyOnceInput, type StoredMessage } from '../../src/replay/exactly-once.ts';

const dump = (headers: string[], body: string) => `X-Mail-Args: <backstop@example.net>\r\nX-Rcpt-Args: <postmaster@example.net>\r\nReceived: from mx\r\n\tby smtp-sink (x)\r\n${headers.join('\r\n')}\r\n\r\n${body}`;
const notice = (job: string, name: string) => dump([`Message-ID: <postmaster-notice.${job}@mx.example.net>`, `Subject: possible virus found: ${name}`], `virus ${name}`);
// Quoted-printable may break the count's line: the count must read through a soft break.
const digest = (job: string, total: number) => dump([`Message-ID: <digest-${job}@mx.example.net>`, 'Subject: possible virus found: 3 detections of 2 names'], `${total} message(s) in a=\r\nll. Senders are not listed.`);
const arf = (job: string, ip: string, incidents: number) => dump([`Message-ID: <arf-${job}@mx.example.net>`, 'Content-Type: multipart/report; report-type=feedback-report'], `Feedback-Type: virus\r\nSource-IP: ${ip}\r\nIncidents: ${incidents}\r\n`);

const record = (messageId: string, node: string, reply: string, verdict: string, detail: string | null, clientIp: string): StoredMessage => ({ messageId, reply, node, verdict, detail, clientIp });

/** Two sources over two nodes: 5 worms (EICAR 3, banned .pif/.scr 2: one name "forbidden file type"), 2 clean. */
function perfect(): ExactlyOnceInput {
  const records = [
    record('<m1@x>', 'replay-1', '550 5.7.1 virus found: Eicar-Signature', 'infected', 'Eicar-Signature', '127.1.0.1'),
    record('<m2@x>', 'replay-2', '550 5.7.1 virus found: Eicar-Signature', 'infected', 'Eicar-Signature', '127.1.0.1'),
    record('<m3@x>', 'replay-1', '550 5.7.1 forbidden content', 'banned', 'forbidden file type (.pif)', '127.1.0.2'),
    record('<m4@x>', 'replay-2', '550 5.7.1 forbidden content', 'banned', 'forbidden file type (.scr)', '127.1.0.2'),
    record('<m5@x>', 'replay-2', '550 5.7.1 virus found: Eicar-Signature', 'infected', 'Eicar-Signature', '127.1.0.2'),
    record('<m6@x>', 'replay-1', '250 2.0.0 Ok', 'clean', null, '127.1.0.3'),
    // A 4xx leaves a record too; it is no final reply, and the retry's record is the one that counts.
    record('<m7@x>', 'replay-1', '451 4.3.0 try again', 'clean', null, '127.1.0.3'),
    record('<m7@x>', 'replay-2', '250 2.0.0 Ok', 'clean', null, '127.1.0.3'),
  ];
  const replies = records.filter((r) => !r.reply.startsWith('4')).map((r) => ({ messageId: r.messageId!, code: Number(r.reply.slice(0, 3)), node: r.node }));
  return {
    replies,
    records,
    relay: [notice('11', 'Eicar-Signature'), notice('12', 'forbidden file type'), digest('13', 3), arf('14', '127.1.0.1', 2), arf('15', '127.1.0.2', 3)],
    flaggedJobIds: [],
  };
}

const failing = (input: ExactlyOnceInput) => exactlyOnceLines(countExactlyOnce(input)).filter((l) => !l.holds).map((l) => l.name.split(/[:,(]/)[0]!.trim());

test('a perfect run of two nodes: every exactly-once line holds, and the outbox counts as drained', () => {
  const e = countExactlyOnce(perfect());
  assert.deepEqual(failing(perfect()), []);
  assert.equal(e.replies, 7);
  assert.equal(e.detections, 5);
  assert.equal(e.names, 2, 'a banned test is one name whatever the file name');
  assert.equal(e.inNoticeOrDigest, 5, 'the digest total read through a quoted-printable soft break');
  assert.equal(outboxDrained(e), true);
  const workers = perfect();
  workers.records = workers.records.map((r) => ({ ...r, node: `${r.node}/w2` }));
  assert.deepEqual(failing(workers), [], 'a record of worker 2 of the node that answered is that node\'s');
});

const cases: { name: string; breaks: (i: ExactlyOnceInput) => ExactlyOnceInput; fails: string[] }[] = [
  {
    name: 'a 250 whose record never reached the store (a killed node lost it)',
    breaks: (i) => ({ ...i, records: i.records.filter((r) => r.messageId !== '<m6@x>') }),
    fails: ['replies the clients saw'],
  },
  {
    name: 'a reply whose record names another node',
    breaks: (i) => ({ ...i, replies: i.replies.map((r) => (r.messageId === '<m1@x>' ? { ...r, node: 'replay-2' } : r)) }),
    fails: ['replies the clients saw'],
  },
  {
    name: 'a reply whose record names another node of several workers (NAME/wK)',
    breaks: (i) => ({ ...i, records: i.records.map((r) => (r.messageId === '<m1@x>' ? { ...r, node: 'replay-2/w1' } : r)) }),
    fails: ['replies the clients saw'],
  },
  {
    name: 'a reply whose record says another code (250 told, 451 recorded)',
    breaks: (i) => ({ ...i, records: i.records.map((r) => (r.messageId === '<m6@x>' ? { ...r, reply: '451 4.3.0 try again' } : r)) }),
    fails: ['replies the clients saw'],
  },
  {
    name: 'a second immediate notice for a name, from the other node (its own job)',
    breaks: (i) => ({ ...i, relay: [...i.relay, notice('21', 'Eicar-Signature')] }),
    fails: ['immediate postmaster notices', 'detections in exactly one digest or the first notice'],
  },
  {
    name: 'a name without its notice',
    breaks: (i) => ({ ...i, relay: i.relay.filter((m) => !m.includes('postmaster-notice.12')) }),
    fails: ['immediate postmaster notices', 'detections in exactly one digest or the first notice'],
  },
  {
    name: 'a second ARF report for one source',
    breaks: (i) => ({ ...i, relay: [...i.relay, arf('22', '127.1.0.1', 2)] }),
    fails: ['ARF reports'],
  },
  {
    name: 'a source without its report',
    breaks: (i) => ({ ...i, relay: i.relay.filter((m) => !m.includes('arf-15')) }),
    fails: ['ARF reports'],
  },
  {
    name: 'a report that misses a detection the other node recorded',
    breaks: (i) => ({ ...i, relay: i.relay.map((m) => (m.includes('arf-15') ? arf('15', '127.1.0.2', 2) : m)) }),
    fails: ['ARF reports'],
  },
  {
    name: 'a detection counted in two digests',
    breaks: (i) => ({ ...i, relay: [...i.relay, digest('23', 1)] }),
    fails: ['detections in exactly one digest or the first notice'],
  },
  {
    name: 'a detection in no digest',
    breaks: (i) => ({ ...i, relay: i.relay.map((m) => (m.includes('digest-13') ? digest('13', 2) : m)) }),
    fails: ['detections in exactly one digest or the first notice'],
  },
  {
    name: 'a report sent twice under one Message-ID, its job not flagged',
    breaks: (i) => ({ ...i, relay: [...i.relay, arf('14', '127.1.0.1', 2)] }),
    fails: ['mail at the capture relay twice'],
  },
  {
    name: 'no replies at all (nothing was sent: nothing shown)',
    breaks: (i) => ({ ...i, replies: [] }),
    fails: ['replies the clients saw'],
  },
];

for (const c of cases) {
  test(`exactly-once: ${c.name} fails ${c.fails.join(', ')}`, () => {
    assert.deepEqual(failing(c.breaks(perfect())), c.fails);
  });
}

test('a repeat of a flagged job is allowed, counted once by the other lines, and shown as sent twice', () => {
  const input = { ...perfect(), flaggedJobIds: ['14'] };
  input.relay = [...input.relay, arf('14', '127.1.0.1', 2)];
  const e = countExactlyOnce(input);
  assert.deepEqual(failing(input), []);
  assert.deepEqual(e.sentTwice, ['<arf-14@mx.example.net>']);
  assert.equal(e.reports, 2, 'one report per source, the repeat not counted again');
  const kept = firstCopies(input.relay.map((text) => ({ text })), input.flaggedJobIds);
  assert.equal(kept.length, input.relay.length - 1, 'firstCopies drops the flagged repeat');
  // An unflagged repeat stays for the other lines to fail on.
  assert.equal(firstCopies([...perfect().relay, notice('11', 'Eicar-Signature')].map((text) => ({ text })), []).length, 6);
});

test('the outbox is not drained while a report, a notice or a digest is still to come', () => {
  for (const gone of ['arf-15', 'postmaster-notice.12', 'digest-13']) {
    const input = perfect();
    input.relay = input.relay.filter((m) => !m.includes(gone));
    assert.equal(outboxDrained(countExactlyOnce(input)), false, gone);
  }
});

test('reportedSources: only the sources given must be reported (the replay: external sources with a desk)', () => {
  const input = { ...perfect(), reportedSources: ['127.1.0.2'] };
  input.relay = input.relay.filter((m) => !m.includes('arf-14'));
  assert.deepEqual(failing(input), []);
  assert.deepEqual(failing({ ...input, reportedSources: ['127.1.0.2', '127.9.9.9'] }), ['ARF reports']);
});

test('perNodeLines: a node that answered nothing fails; the killed node must have answered and kept every record', () => {
  const lines = (shares: Parameters<typeof perNodeLines>[0]) => perNodeLines(shares, 2).map((l) => [l.value, l.holds]);
  assert.deepEqual(lines([{ node: 'replay-1', answered: 200, p99Ms: 80 }, { node: 'replay-2', answered: 100, p99Ms: 90 }]), [[200, true], [100, true]]);
  assert.match(perNodeLines([{ node: 'replay-1', answered: 200, p99Ms: 80 }], 2)[0]!.name, /^replay-1: messages answered \(100\.0 msg\/s, p99 80\.0 ms\)$/);
  assert.deepEqual(lines([{ node: 'replay-1', answered: 200, p99Ms: 80 }, { node: 'replay-2', answered: 0, p99Ms: 0 }]), [[200, true], [0, false]]);
  assert.deepEqual(lines([{ node: 'replay-2', answered: 50, p99Ms: 9, killed: { answeredBefore: 20, withoutRecord: 0 } }]), [[50, true]]);
  assert.deepEqual(lines([{ node: 'replay-2', answered: 50, p99Ms: 9, killed: { answeredBefore: 20, withoutRecord: 1 } }]), [[50, false]]);
  assert.deepEqual(lines([{ node: 'replay-2', answered: 50, p99Ms: 9, killed: { answeredBefore: 0, withoutRecord: 0 } }]), [[50, false]], 'a kill before the node answered anything shows nothing');
});
