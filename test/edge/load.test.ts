import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { freePort, startBackstop, startSmtpSink } from '../../src/replay/processes.ts';
import { openStore } from '../../src/store/store.ts';
import { startTestGateway, waitFor } from '../helpers/gateway.ts';

const run = promisify(execFile);

/** Writes lines to a raw socket and collects what the server says until it closes. */
function rawSession(port: number, script: string, waitMs = 1500): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    let sent = false;
    const s = connect({ port, host: '127.0.0.1' });
    s.on('data', (d) => {
      text += d;
      if (!sent && text.startsWith('220') && text.includes('\r\n')) {
        sent = true;
        s.write(script);
        setTimeout(() => s.end('QUIT\r\n'), waitMs);
      }
    });
    s.on('error', () => {});
    s.on('close', () => resolve(text));
  });
}

test("Postfix's smtp-source: 200 messages over 10 concurrent sessions all arrive", async () => {
  const g = await startTestGateway();
  try {
    await run('/usr/sbin/smtp-source', ['-c', '-m', '200', '-s', '10', '-l', '2000', '-f', 'load@example.org', '-t', 'user@example.net', `127.0.0.1:${g.port}`]);
    await waitFor(() => g.sink!.messages().length === 200, 10_000);
  } finally {
    await g.close();
  }
});

test('python smtplib: several messages over one connection, each relayed', async () => {
  const g = await startTestGateway();
  try {
    const script = `
import smtplib
from email.message import EmailMessage
s = smtplib.SMTP('127.0.0.1', ${g.port})
s.ehlo('py.example.org')
for i in range(3):
    m = EmailMessage()
    m['From'] = 'py@example.org'; m['To'] = 'user@example.net'; m['Subject'] = f'python {i}'
    m.set_content('hello from smtplib')
    s.send_message(m)
s.quit()
`;
    await run('python3', ['-c', script]);
    await waitFor(() => g.sink!.messages().length === 3);
    assert.deepEqual(g.sink!.messages().map((m) => /^Subject: (.*)$/m.exec(m)?.[1]?.trim()).sort(), ['python 0', 'python 1', 'python 2']);
  } finally {
    await g.close();
  }
});

test('PIPELINING: a pipelined MAIL/RCPT/RCPT/DATA group gets one reply per command, in order', async () => {
  const g = await startTestGateway();
  try {
    const text = await rawSession(
      g.port,
      'EHLO pipe.example.org\r\nMAIL FROM:<p@example.org>\r\nRCPT TO:<a@example.net>\r\nRCPT TO:<x@elsewhere.example>\r\nRCPT TO:<b@example.net>\r\nDATA\r\nSubject: piped\r\n\r\nbody\r\n.\r\n',
    );
    const codes = text.split('\r\n').filter((l) => /^\d{3} /.test(l)).map((l) => l.slice(0, 3));
    assert.deepEqual(codes.slice(0, 8), ['220', '250', '250', '250', '550', '250', '354', '250']);
    await waitFor(() => g.sink!.messages().length === 1);
    assert.match(g.sink!.messages()[0]!, /X-Rcpt-Args: <a@example\.net>[\s\S]*X-Rcpt-Args: <b@example\.net>/);
  } finally {
    await g.close();
  }
});

test('bare-lf-smuggling: "\\n.\\n" inside DATA cannot smuggle a second message to the next hop', async () => {
  const g = await startTestGateway();
  try {
    const smuggle =
      'EHLO s.example.org\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<user@example.net>\r\nDATA\r\n' +
      'Subject: outer\r\n\r\nhello\n.\nMAIL FROM:<admin@example.net>\nRCPT TO:<user@example.net>\nDATA\nSubject: smuggled\n\nowned\n.\n\r\n.\r\n';
    await rawSession(g.port, smuggle);
    await new Promise((r) => setTimeout(r, 300));
    const delivered = g.sink!.envelopes();
    assert.equal(delivered.length, 1, 'exactly the one real message reaches the next hop');
    for (const m of delivered) {
      assert.equal(m.mailFrom, 's@example.org');
      const headers = m.text.split(/\r?\n\r?\n/)[0]!;
      assert.doesNotMatch(headers, /Subject: smuggled/);
    }
  } finally {
    await g.close();
  }
});

test('long-line: a command line over the limit is refused and the session closed', async () => {
  const g = await startTestGateway({ smtp: { maxLineBytes: 1000 } });
  try {
    const text = await rawSession(g.port, `EHLO ${'a'.repeat(5000)}\r\nNOOP\r\n`);
    assert.match(text, /^421 .*too long/m);
    assert.equal(g.sink!.messages().length, 0);
  } finally {
    await g.close();
  }
});

test('SIGKILL mid-load on the embedded store: every message a client saw accepted (250) is at the next hop and has its record', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bs-crash-'));
  const sink = await startSmtpSink(join(dir, 'sink'));
  const port = await freePort();
  const node = await startBackstop(join(dir, 'node'), {
    dataDir: join(dir, 'node', 'data'),
    smtp: { listen: `127.0.0.1:${port}`, hostname: 'mx.example.net', greetingDelayMs: 0 },
    domains: ['example.net'],
    nextHop: `smtp://127.0.0.1:${sink.port}`,
    store: `pglite:${join(dir, 'node', 'db')}`,
    web: { listen: `127.0.0.1:${await freePort()}` },
    log: { level: 'error' },
  });
  const accepted = new Set<string>();
  let killed = false;
  const client = async (n: number) => {
    for (let i = 0; !killed || i === 0; i++) {
      const id = `crash-${n}-${i}@example.org`;
      const c = new SMTPConnection({ host: '127.0.0.1', port, ignoreTLS: true, connectionTimeout: 2000, socketTimeout: 5000 });
      const ok = await new Promise<boolean>((resolve) => {
        c.on('error', () => resolve(false));
        c.connect(() =>
          c.send({ from: 'load@example.org', to: ['user@example.net'] }, `Message-ID: <${id}>\r\nSubject: crash ${n} ${i}\r\n\r\n${'x'.repeat(5000)}\r\n`, (err) => {
            c.quit();
            resolve(!err);
          }),
        );
      });
      if (ok) accepted.add(id);
      if (killed) break;
    }
  };
  const clients = Array.from({ length: 8 }, (_, n) => client(n));
  await waitFor(() => accepted.size >= 40, 20_000);
  node.child.kill('SIGKILL');
  killed = true;
  await Promise.all(clients);
  await sink.stop();
  const atNextHop = new Set(sink.messages().map((m) => /^Message-ID: <([^>]+)>/im.exec(m)?.[1]));
  const lost = [...accepted].filter((id) => !atNextHop.has(id));
  assert.ok(accepted.size >= 40);
  assert.deepEqual(lost, [], `${lost.length} of ${accepted.size} accepted messages are missing at the next hop`);
  // The record was committed before the 250 (issue 15): PGlite's WAL, replayed when the killed node's database opens again.
  const store = await openStore(`pglite:${join(dir, 'node', 'db')}`);
  try {
    const rows = await store.db.selectFrom('messages').select(['message_id', 'action']).execute();
    const recorded = new Map(rows.map((r) => [r.message_id?.replace(/^<|>$/g, ''), r.action]));
    const unrecorded = [...accepted].filter((id) => recorded.get(id) !== 'deliver');
    assert.deepEqual(unrecorded, [], `${unrecorded.length} of ${accepted.size} accepted messages have no "deliver" record`);
  } finally {
    await store.close();
  }
});
