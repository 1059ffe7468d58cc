import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { startClamd, TEST_SIGNATURE_NAME, type RunningClamd } from '../../src/replay/clamd.ts';
import { getQuarantined } from '../../src/store/quarantine.ts';
import { openStore } from '../../src/store/store.ts';
import { EICAR, messageRecords, startTestGateway, swaks, waitFor, type TestGateway } from '../helpers/gateway.ts';
import { readFileSync } from 'node:fs';

const to = (...r: string[]) => ['--to', r.join(','), '--from', 'sender@example.org'];
const bodyArgs = (subject: string) => ['--header', `Subject: ${subject}`, '--header', `Message-Id: <${subject.replace(/\W/g, '')}@example.org>`];

const records = messageRecords;

describe('gateway with the built-in policy, smtp-sink as next hop', () => {
  let g: TestGateway;
  before(async () => {
    g = await startTestGateway();
  });
  after(() => g.close());

  test('clean mail arrives at the next hop whole, with our Received line on top, and only after its 250', async () => {
    const r = await swaks(g.port, [...to('user@example.net'), ...bodyArgs('clean one'), '--body', 'Line one\nLine two\n.leading dot\n']);
    assert.match(r.last, /^250 2\.0\.0 /);
    const [msg] = g.sink!.messages();
    assert.ok(msg, 'message at the sink');
    assert.match(msg, /^Received: from \S+ \(\[127\.0\.0\.1\]\)\r?\n\tby mx\.example\.net \(Backstop\) with ESMTP id \w+\r?\n\tfor <user@example\.net>;/m);
    assert.match(msg, /^Subject: clean one$/m);
    assert.match(msg, /^\.leading dot$/m, 'dot-stuffing undone by the next hop: the line is intact');
    const [rec] = await records(g);
    assert.equal(rec!.verdict, 'clean');
    assert.equal(rec!.action, 'deliver');
    assert.equal(rec!.message_id, '<cleanone@example.org>');
    assert.deepEqual(rec!.rcpt_to, ['user@example.net']);
  });

  test('EICAR is refused in the session with 550 5.7.1 and nothing reaches the next hop', async () => {
    const before = g.sink!.messages().length;
    const r = await swaks(g.port, [...to('user@example.net'), ...bodyArgs('eicar'), '--attach-type', 'application/octet-stream', '--attach-name', 'eicar.com', '--attach', '-'], EICAR);
    assert.equal(r.last, '550 5.7.1 Message refused, virus found: Eicar-Test-Signature');
    assert.equal(g.sink!.messages().length, before);
  });

  test('a forbidden file type is refused with the test named', async () => {
    const r = await swaks(g.port, [...to('user@example.net'), ...bodyArgs('pif'), '--attach-name', 'document.pif', '--attach', '-'], 'not really a program');
    assert.equal(r.last, '550 5.7.1 Message refused, forbidden content: forbidden file type (.pif)');
  });

  test('relay to a foreign domain is denied; our domain is accepted', async () => {
    const r = await swaks(g.port, to('someone@example.org'));
    assert.equal(r.last, '550 5.7.1 Relay access denied');
  });

  test('too many recipients: 452', async () => {
    const many = Array.from({ length: 101 }, (_, i) => `u${i}@example.net`);
    const r = await swaks(g.port, to(...many));
    assert.ok(r.replies.some((l) => l.startsWith('452 ')), r.replies.slice(-3).join(' | '));
  });

  test('a message over SIZE is refused with 552 while it streams, and nothing is kept', async () => {
    const small = await startTestGateway({ smtp: { maxMessageBytes: 10_000 } });
    try {
      const r = await swaks(small.port, [...to('user@example.net'), '--body', 'x'.repeat(20_000)]);
      assert.match(r.last, /^552 5\.3\.4 /);
      assert.equal(small.sink!.messages().length, 0);
    } finally {
      await small.close();
    }
  });

  test('STARTTLS is offered with the generated certificate and mail flows over it', async () => {
    const r = await swaks(g.port, [...to('user@example.net'), '-tls', ...bodyArgs('over tls')]);
    assert.match(r.transcript, /^ -> STARTTLS$/m);
    assert.match(r.transcript, /^ ~> MAIL FROM:/m, 'the transaction ran inside TLS');
    assert.match(r.last, /^250 /);
    assert.ok(g.sink!.messages().some((m) => /with ESMTPS id/.test(m) && /Subject: over tls/.test(m)));
  });

  test('crlf-in-helo: a hostile HELO cannot forge a header line in our Received', async () => {
    const r = await swaks(g.port, [...to('user@example.net'), '--helo', 'evil\rX-Injected: yes', ...bodyArgs('helo inject')]);
    assert.match(r.last, /^(250|501)/);
    for (const m of g.sink!.messages()) assert.doesNotMatch(m, /^X-Injected:/m);
  });

  test('header-injection-in-rcpt: an address with CRLF never reaches the next hop as two commands', async () => {
    const r = await swaks(g.port, ['--to', 'user@example.net>\r\nRCPT TO:<victim@example.net', '--from', 'a@example.org']);
    assert.doesNotMatch(r.last, /^250 2\.0\.0 Ok/);
    for (const m of g.sink!.messages()) assert.doesNotMatch(m, /victim@example\.net/);
  });
});

describe('actions: discard and quarantine keep the promise', () => {
  test('discard answers 250, delivers nothing and logs the decision', async () => {
    const g = await startTestGateway({ actions: { infected: 'discard' } });
    try {
      const r = await swaks(g.port, [...to('user@example.net'), '--attach', '-'], EICAR);
      assert.match(r.last, /^250 2\.0\.0 Ok$/);
      assert.equal(g.sink!.messages().length, 0);
      const [rec] = await records(g);
      assert.equal(rec!.action, 'discard');
      assert.equal(rec!.verdict_detail, 'Eicar-Test-Signature');
    } finally {
      await g.close();
    }
  });

  test('quarantine keeps the whole raw message before answering 250', async () => {
    const g = await startTestGateway({ actions: { banned: 'quarantine' } });
    try {
      const r = await swaks(g.port, [...to('user@example.net', 'other@example.net'), ...bodyArgs('held'), '--attach-name', 'x.scr', '--attach', '-'], 'payload');
      assert.match(r.last, /^250 /);
      assert.equal(g.sink!.messages().length, 0);
      const [rec] = await records(g);
      assert.equal(rec!.action, 'quarantine');
      const q = await getQuarantined(g.store.db, rec!.quarantine_id!);
      assert.ok(q);
      assert.deepEqual(q.rcpt_to, ['user@example.net', 'other@example.net']);
      assert.match(q.raw.toString(), /Subject: held/);
      assert.match(q.raw.toString(), /x\.scr/);
    } finally {
      await g.close();
    }
  });

  test('a store that fails during quarantine makes it a 451, never a 250', async () => {
    const broken = await openStore('pglite-memory:');
    const g = await startTestGateway({ actions: { infected: 'quarantine' } }, { store: broken });
    try {
      await sql`drop table quarantine`.execute(broken.db);
      const r = await swaks(g.port, [...to('user@example.net'), '--attach', '-'], EICAR);
      assert.match(r.last, /^451 4\.3\.0 /);
      assert.equal(g.sink!.messages().length, 0);
    } finally {
      await g.close();
      await broken.close();
    }
  });
});

describe('the next hop decides, in the session', () => {
  test('a recipient the next hop refuses (5xx) is refused to the sender in the session', async () => {
    const g = await startTestGateway({}, { sinkArgs: ['-f', 'RCPT'] });
    try {
      const r = await swaks(g.port, to('nobody@example.net'));
      assert.match(r.last, /^5\d\d 5\.\d+\.\d+ /);
      assert.deepEqual(g.sink!.messages(), []);
    } finally {
      await g.close();
    }
  });

  test('a next hop that defers a recipient (4xx) makes the sender retry', async () => {
    const g = await startTestGateway({}, { sinkArgs: ['-r', 'RCPT'] });
    try {
      const r = await swaks(g.port, to('user@example.net'));
      assert.match(r.last, /^4\d\d 4\.\d+\.\d+ /);
    } finally {
      await g.close();
    }
  });

  test('next hop down: 451 4.4.1 at RCPT, nothing accepted', async () => {
    const g = await startTestGateway({}, { noSink: true });
    try {
      const r = await swaks(g.port, to('user@example.net'));
      assert.equal(r.last, '451 4.4.1 Next hop not reachable, try again later');
    } finally {
      await g.close();
    }
  });

  test('next hop that drops the connection at end of DATA: 451, never 250', async () => {
    const g = await startTestGateway({}, { sinkArgs: ['-q', '.'] });
    try {
      const r = await swaks(g.port, [...to('user@example.net'), ...bodyArgs('dropped')]);
      assert.equal(r.last, '451 4.4.2 Connection to the next hop lost, try again later');
      const [rec] = await records(g);
      assert.equal(rec!.action, 'next-hop-failed');
    } finally {
      await g.close();
    }
  });

  test('a next hop that refuses the message after DATA: its code is mirrored', async () => {
    const g = await startTestGateway({}, { sinkArgs: ['-f', '.'] });
    try {
      const r = await swaks(g.port, [...to('user@example.net'), ...bodyArgs('refused at dot')]);
      assert.match(r.last, /^5\d\d 5\.\d+\.\d+ /);
    } finally {
      await g.close();
    }
  });
});

describe('the next hop is pipelined where it offers PIPELINING', () => {
  /** One client session: EICAR (refused, so the next hop owes a RSET), then clean mail, then clean mail again. */
  async function refusedThenClean(g: TestGateway) {
    const { SmtpClient } = await import('../../src/edge/smtp-client.ts');
    const c = await SmtpClient.open({ host: '127.0.0.1', port: g.port, heloName: 'client.example.org' });
    const codes: number[] = [];
    for (const body of [EICAR, 'first clean', 'second clean']) {
      // The client pipelines too: its MAIL, RCPT and DATA in one write.
      const [mail, rcpt] = await c.commands(['MAIL FROM:<a@example.org>', 'RCPT TO:<user@example.net>']);
      assert.equal(mail!.code, 250);
      assert.equal(rcpt!.code, 250);
      codes.push((await c.data([Buffer.from(`Subject: ${body === EICAR ? 'eicar' : body}\r\n\r\n${body}\r\n`)])).code);
    }
    c.close();
    await waitFor(() => g.sink!.messages().length === 2);
    const subjects = g.sink!.messages().map((m) => /^Subject: (.*)$/m.exec(m)?.[1]?.trim()).sort();
    return { codes, subjects };
  }

  test("a refused message's RSET rides with the next MAIL: the clean ones after it are delivered, whole and once", async () => {
    const g = await startTestGateway();
    try {
      assert.deepEqual(await refusedThenClean(g), { codes: [550, 250, 250], subjects: ['first clean', 'second clean'] });
    } finally {
      await g.close();
    }
  });

  test('a next hop that refuses the owed RSET: the connection is dropped and the mail goes on a fresh one', async () => {
    const g = await startTestGateway({}, { sinkArgs: ['-f', 'RSET'] });
    try {
      assert.deepEqual(await refusedThenClean(g), { codes: [550, 250, 250], subjects: ['first clean', 'second clean'] });
    } finally {
      await g.close();
    }
  });

  test('a next hop without PIPELINING (no ESMTP) gets one command at a time and the same outcome', async () => {
    const g = await startTestGateway({}, { sinkArgs: ['-e'] });
    try {
      assert.deepEqual(await refusedThenClean(g), { codes: [550, 250, 250], subjects: ['first clean', 'second clean'] });
    } finally {
      await g.close();
    }
  });
});

describe('with a real clamd', () => {
  let clamd: RunningClamd;
  before(async () => {
    clamd = await startClamd();
  });
  after(() => clamd.stop());

  test('a packed ClamAV test file under a harmless name is refused with clamd\'s name for it', async () => {
    const g = await startTestGateway({ clamd: clamd.url });
    try {
      const r = await swaks(g.port, [...to('user@example.net'), '--attach-name', 'report.cab', '--attach', '/usr/share/clamav-testfiles/clam.cab']);
      assert.equal(r.last, `550 5.7.1 Message refused, virus found: ${TEST_SIGNATURE_NAME}`);
      assert.equal(g.sink!.messages().length, 0);
      assert.ok(readFileSync('/usr/share/clamav-testfiles/clam.cab').length > 0);
    } finally {
      await g.close();
    }
  });

  test('clamd stopped: 451 4.3.0 and nothing delivered', async () => {
    const g = await startTestGateway({ clamd: 'tcp://127.0.0.1:1' });
    try {
      const r = await swaks(g.port, [...to('user@example.net'), ...bodyArgs('no clamd')]);
      assert.equal(r.last, '451 4.3.0 Message could not be scanned now, please try again later');
      assert.equal(g.sink!.messages().length, 0);
      const [rec] = await records(g);
      assert.equal(rec!.verdict, 'unscannable');
    } finally {
      await g.close();
    }
  });

  test('clamd hung: 451 after the scan timeout and nothing delivered', async () => {
    const g = await startTestGateway({ clamd: clamd.url, scan: { clamdTimeoutMs: 800, timeoutMs: 1500 } });
    clamd.hang();
    try {
      const r = await swaks(g.port, [...to('user@example.net'), ...bodyArgs('hung clamd')]);
      assert.equal(r.last, '451 4.3.0 Message could not be scanned now, please try again later');
      assert.equal(g.sink!.messages().length, 0);
    } finally {
      clamd.resume();
      await g.close();
    }
  });
});

describe('the greeting delay catches early talkers', () => {
  test('with the default 100 ms a client that talks first is refused; with 0 it is greeted at once', async () => {
    const { connect } = await import('node:net');
    const talkFirst = (port: number) =>
      new Promise<string>((resolve) => {
        const s = connect({ port, host: '127.0.0.1' }, () => s.write('EHLO early\r\n'));
        let text = '';
        s.on('data', (d) => {
          text += d;
          if (/^421 /m.test(text)) s.destroy();
        });
        s.on('close', () => resolve(text));
        setTimeout(() => s.destroy(), 1500);
      });
    const delayed = await startTestGateway({ smtp: { greetingDelayMs: 100 } });
    const immediate = await startTestGateway({ smtp: { greetingDelayMs: 0 } });
    try {
      assert.match(await talkFirst(delayed.port), /421 .*You talk too soon/);
      // No pause at all: a client that talks at once is greeted and answered, never told it talks too soon —
      // also when its command is read before the connection is admitted (20 tries make that race likely).
      for (const early of await Promise.all(Array.from({ length: 20 }, () => talkFirst(immediate.port)))) {
        assert.match(early, /^220 mx\.example\.net ESMTP Backstop/);
        assert.match(early, /^250[ -]/m);
        assert.doesNotMatch(early, /421/);
      }
    } finally {
      await delayed.close();
      await immediate.close();
    }
  });
});

test('the message log survives a burst: one record per message', async () => {
  const g = await startTestGateway();
  try {
    await Promise.all(Array.from({ length: 10 }, (_, i) => swaks(g.port, [...to('user@example.net'), ...bodyArgs(`burst ${i}`)])));
    await waitFor(async () => (await records(g)).length === 10);
    assert.equal(g.sink!.messages().length, 10);
  } finally {
    await g.close();
  }
});

describe('plug-in checks', () => {
  test('a data check that refuses leaves the connection usable: the next message on it is delivered', async () => {
    const { startTestGateway: start } = await import('../helpers/gateway.ts');
    const g = await start({}, { hooks: { data: [async (_t, raw) => (Buffer.from(raw).includes('refuse-me') ? { outcome: 'reply', reply: { code: 550, message: '5.7.1 Refused by a check' } } : { outcome: 'continue' })] } });
    try {
      const { SmtpClient } = await import('../../src/edge/smtp-client.ts');
      const c = await SmtpClient.open({ host: '127.0.0.1', port: g.port, heloName: 'client.example.org' });
      for (const [body, expected] of [['refuse-me', 550], ['fine', 250]] as const) {
        assert.equal((await c.command('MAIL FROM:<a@example.org>')).code, 250);
        assert.equal((await c.command('RCPT TO:<user@example.net>')).code, 250);
        assert.equal((await c.data([Buffer.from(`Subject: ${body}\r\n\r\n${body}\r\n`)])).code, expected);
      }
      c.close();
      await waitFor(() => g.sink!.messages().length === 1);
      assert.match(g.sink!.messages()[0]!, /Subject: fine/);
    } finally {
      await g.close();
    }
  });

  test('a check that answers 2xx is a bug, and the sender gets 451, never 250', async () => {
    const g = await startTestGateway({}, { hooks: { data: [async () => ({ outcome: 'reply', reply: { code: 250, message: '2.0.0 swallowed' } })] } });
    try {
      const r = await swaks(g.port, to('user@example.net'));
      assert.match(r.last, /^451 4\.3\.0 /);
      assert.equal(g.sink!.messages().length, 0);
    } finally {
      await g.close();
    }
  });
});

describe('local routes (the abuse desk aliases)', () => {
  test('alias recipients are accepted outside config.domains, scanned, and handed to their own destination; one destination per transaction', async () => {
    const { mkdtempSync, readdirSync, readFileSync: read } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const { MaildirNextHop } = await import('../../src/edge/next-hop.ts');
    const deskDir = mkdtempSync(join(tmpdir(), 'bs-route-'));
    const route = { name: 'desk', accepts: (rcpt: string) => rcpt.toLowerCase().endsWith('@abuse.example.net'), nextHop: new MaildirNextHop(deskDir) };
    const g = await startTestGateway({}, { routes: [route] });
    try {
      const delivered = () => readdirSync(join(deskDir, 'new'));
      const r = await swaks(g.port, [...to('192-0-2-7@abuse.example.net'), ...bodyArgs('report one')]);
      assert.match(r.last, /^250 2\.0\.0 Ok: delivered to maildir/);
      assert.equal(delivered().length, 1);
      assert.match(read(join(deskDir, 'new', delivered()[0]!), 'latin1'), /^Delivered-To: 192-0-2-7@abuse\.example\.net\r?$/m);
      assert.equal(g.sink!.messages().length, 0, 'nothing for the desk reaches the next hop');

      const eicar = await swaks(g.port, [...to('abuse@abuse.example.net'), ...bodyArgs('worm to desk'), '--attach-name', 'x.com', '--attach', '-'], EICAR);
      assert.equal(eicar.last, '550 5.7.1 Message refused, virus found: Eicar-Test-Signature', 'mail to the aliases is scanned like any other');
      assert.equal(delivered().length, 1);

      const mixed = await swaks(g.port, ['--to', 'abuse@abuse.example.net,user@example.net', '--from', 'reporter@example.org', ...bodyArgs('mixed')]);
      assert.ok(mixed.replies.some((l) => l.startsWith('452 4.5.3 ')), mixed.replies.join(' | '));
      assert.match(mixed.last, /^250 /, 'the first destination\'s recipient is delivered');
      assert.equal(delivered().length, 2);
      assert.equal(g.sink!.messages().length, 0, 'the other recipient must come back in its own transaction');

      const plain = await swaks(g.port, [...to('user@example.net'), ...bodyArgs('plain')]);
      assert.match(plain.last, /^250 /);
      await waitFor(() => g.sink!.messages().length === 1);
    } finally {
      await g.close();
    }
  });
});
