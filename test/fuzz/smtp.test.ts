/*
 * Fuzzing the SMTP command handling of a real gateway (src/edge/gateway.ts
 * on smtp-server, in front of Postfix's smtp-sink) over a TCP socket, with
 * fast-check: sessions of generated command lines — the verbs with hostile
 * arguments, random bytes, over-long lines, bare LF, NUL — and DATA bodies,
 * some of them EICAR.
 *
 * Properties: every line the client sends is answered, within its time
 * limit, with a well-formed reply (every line "DDD-" or "DDD ", one code,
 * 2xx to 5xx: nothing a client wrote can start a reply line of its own); an
 * EICAR message is never answered 2xx, whatever came before it in the
 * session; after each session the node greets a new client, and after all of
 * them it still delivers a clean message.
 */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { EICAR, startTestGateway, swaks, type TestGateway } from '../helpers/gateway.ts';
import { check, Clock, params } from './fuzz.ts';

let gw: TestGateway;
before(async () => {
  gw = await startTestGateway({ smtp: { maxMessageBytes: 65_536, maxRecipients: 5, maxLineBytes: 1024, idleTimeoutMs: 10_000 } });
});
after(() => gw.close());

const REPLY_MS = 5000;

/** One SMTP connection read reply by reply. */
class Session {
  private buffer = '';
  private waiting: (() => void) | null = null;
  closed = false;
  private constructor(readonly socket: Socket) {
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.buffer += d;
      this.waiting?.();
    });
    const end = () => {
      this.closed = true;
      this.waiting?.();
    };
    socket.on('close', end);
    socket.on('error', end);
  }

  static open(port: number): Promise<Session> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => resolve(new Session(socket)));
      socket.once('error', reject);
    });
  }

  /** The next complete reply (its lines), or null when the server closed without one. */
  async reply(): Promise<string[] | null> {
    const deadline = Date.now() + REPLY_MS;
    for (;;) {
      // Complete lines only; a reply ends at its first line that is not a "DDD-" continuation (well-formed or not).
      const lines = this.buffer.split('\r\n');
      const partial = lines.pop()!;
      const end = lines.findIndex((l) => !/^\d{3}-/.test(l));
      if (end >= 0) {
        this.buffer = [...lines.slice(end + 1), partial].join('\r\n');
        return lines.slice(0, end + 1);
      }
      if (this.closed) return null;
      if (Date.now() > deadline) throw new Error(`no reply within ${REPLY_MS} ms (buffer: ${JSON.stringify(this.buffer.slice(0, 200))})`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 50);
        this.waiting = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiting = null;
    }
  }

  write(bytes: string | Buffer): void {
    if (!this.closed) this.socket.write(bytes);
  }

  close(): void {
    this.socket.destroy();
  }
}

function assertWellFormed(reply: string[], after: string): number {
  assert.ok(reply.length > 0);
  const code = reply[0]!.slice(0, 3);
  reply.forEach((line, i) => {
    assert.match(line, /^[2-5]\d\d[ -]/, `reply line after ${JSON.stringify(after.slice(0, 80))}: ${JSON.stringify(line.slice(0, 200))}`);
    assert.equal(line.slice(0, 3), code, `one code per reply: ${JSON.stringify(reply)}`);
    assert.equal(line[3], i === reply.length - 1 ? ' ' : '-', `continuation marks: ${JSON.stringify(reply)}`);
  });
  return Number(code);
}

const hostileArg = fc.oneof(
  fc.constantFrom('<a@example.net>', '<victim@example.net>', '<>', '<@route:a@example.net>', '<a@[192.0.2.1]>', '<"quoted local"@example.net>', 'a@example.net', '<a@example.net> SIZE=999999999', '<a@example.net> BODY=8BITMIME SMTPUTF8', '<a@example.net> AUTH=<>', '<\u00e4@example.net>', '<a@example.net\r\nRCPT TO:<b@example.net>>', '<a\u0000@example.net>', 'mx.example.org', '[192.0.2.1]', '', ' '),
  fc.string({ maxLength: 60 }),
  fc.string({ maxLength: 40, unit: 'binary' }),
  fc.string({ minLength: 1000, maxLength: 3000 }),
);
const verb = fc.constantFrom('HELO', 'EHLO', 'MAIL FROM:', 'RCPT TO:', 'RSET', 'NOOP', 'VRFY', 'EXPN', 'HELP', 'AUTH PLAIN', 'AUTH LOGIN', 'BDAT 10', 'ETRN', 'XCLIENT ADDR=', 'XFORWARD', 'mail from:', 'rcpt to:', 'EHLO', 'MAIL FROM:', 'RCPT TO:');
const commandLine = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(verb, hostileArg).map(([v, a]) => `${v}${v.endsWith(':') ? '' : ' '}${a}`) },
  { weight: 1, arbitrary: fc.string({ maxLength: 100, unit: 'binary' }) },
  { weight: 1, arbitrary: fc.constantFrom('DATA', '', '.', 'QUIT', 'STARTTLS', '\u0000\u0000', 'GET / HTTP/1.1', 'EHLO x\nMAIL FROM:<a@b>') },
);
const body = fc.oneof(
  { weight: 3, arbitrary: fc.array(fc.oneof(fc.string({ maxLength: 100 }), fc.constantFrom('', '..', '. ', 'From: a@b', 'Subject: hi', 'Content-Type: multipart/mixed; boundary=x', '--x')), { maxLength: 30 }).map((lines) => ({ eicar: false, text: lines.map((l) => (l === '.' ? '..' : l)).join('\r\n') })) },
  { weight: 1, arbitrary: fc.constant({ eicar: true, text: `From: a@example.org\r\nSubject: test\r\n\r\n${EICAR}` }) },
);

/** What the sessions reached, so the test can show the deep states were tried. */
const reached = { replies: 0, data: 0, eicar: 0, closedEarly: 0 };

/** A session: commands, and wherever the server says 354, a body. Ends at QUIT, STARTTLS accepted, or a close. */
async function runSession(port: number, commands: string[], bodies: { eicar: boolean; text: string }[], clock: Clock): Promise<void> {
  const s = await Session.open(port);
  try {
    const greeting = await clock.async('greeting', () => s.reply());
    assert.ok(greeting, 'a greeting');
    assertWellFormed(greeting, '(connect)');
    let b = 0;
    for (const line of commands) {
      s.write(`${line}\r\n`);
      const reply = await clock.async('reply', () => s.reply());
      if (reply === null) {
        reached.closedEarly++;
        return; // the server closed (QUIT, 421, too many errors): allowed
      }
      reached.replies++;
      const code = assertWellFormed(reply, line);
      if (code === 354) {
        const m = bodies[b++ % bodies.length]!;
        reached.data++;
        if (m.eicar) reached.eicar++;
        s.write(`${m.text}\r\n.\r\n`);
        const final = await clock.async('end of DATA', () => s.reply());
        if (final === null) return;
        const finalCode = assertWellFormed(final, '(end of DATA)');
        if (m.eicar) assert.ok(finalCode >= 400, `EICAR answered ${final.join(' | ')}`);
      }
      if (code === 221 || code === 421) return;
      if (/^STARTTLS/i.test(line) && code === 220) return; // a TLS handshake would come next
    }
  } finally {
    s.close();
  }
}

test('SMTP: any session of generated commands is answered line by line with well-formed replies, in time; EICAR is never 2xx; the node keeps serving', async (t) => {
  const clock = new Clock(REPLY_MS);
  // Sessions start like a real client more often than not, so the later commands reach the deeper states.
  const opening = fc.constantFrom([], ['EHLO client.example'], ['EHLO client.example', 'MAIL FROM:<a@example.org>', 'RCPT TO:<user@example.net>'], ['HELO x', 'MAIL FROM:<>', 'RCPT TO:<user@example.net>', 'DATA']);
  await check(
    t,
    fc.asyncProperty(opening, fc.array(commandLine, { maxLength: 12 }), fc.array(body, { minLength: 1, maxLength: 3 }), async (start, commands, bodies) => {
      await runSession(gw.port, [...start, ...commands, 'DATA', 'RCPT TO:<user@example.net>', 'DATA', 'QUIT'], bodies, clock);
      // The node still greets the next client.
      const next = await Session.open(gw.port);
      try {
        const greeting = await next.reply();
        assert.ok(greeting && /^220 /.test(greeting[0]!), `greeting after the session: ${JSON.stringify(greeting)}`);
      } finally {
        next.close();
      }
    }),
    params(60, 0.05),
    clock,
  );
  t.diagnostic(`reached: ${JSON.stringify(reached)}`);
  assert.ok(reached.data > 0 && reached.eicar > 0, `DATA and EICAR were reached: ${JSON.stringify(reached)}`);
  const clean = await swaks(gw.port, ['--from', 'a@example.org', '--to', 'user@example.net', '--body', 'still delivering after the fuzz']);
  assert.match(clean.last, /^250 /, clean.transcript);
});
