/*
 * The milter server driven over a real socket by a client speaking the codec
 * (as Postfix's milter8 client does), with the gateway's own judge on PGlite:
 * negotiation, the client from macros, the message rebuilt byte for byte,
 * every outcome's reply, the checks' changes, and the hostile inputs
 * (truncated, oversized, out-of-order packets, a message over the limit).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { parseConfig } from '../../src/config/load.ts';
import { CONTINUE, type GatewayHooks } from '../../src/edge/hooks.ts';
import { createJudge } from '../../src/edge/judge.ts';
import { decodeReply, encodeCommand, PacketReader, SMFIF, SMFIP, type MilterCommand, type MilterReply } from '../../src/milter/codec.ts';
import { startMilter, type MilterServer } from '../../src/milter/server.ts';
import { silentLogger } from '../../src/obs/log.ts';
import { createScanner } from '../../src/scan/scanner.ts';
import { messageLogFor } from '../../src/notify/record.ts';
import type { MessageLog } from '../../src/store/message-log.ts';
import { openStore, type Store } from '../../src/store/store.ts';
import { EICAR, messageRecords } from '../helpers/gateway.ts';

/** What Postfix 3.7 offers (milter8.c: all actions, all protocol steps of version 6). */
const POSTFIX_OFFER: MilterCommand = { command: 'optneg', version: 6, actions: 0x1ff, protocol: 0x1fffff };

interface Rig {
  milter: MilterServer;
  store: Store;
  messageLog: MessageLog;
  port: number;
  close(): Promise<void>;
}

async function rig(overrides: Record<string, unknown> = {}, hooks: Partial<GatewayHooks> = {}): Promise<Rig> {
  const config = parseConfig({
    nextHop: 'smtp://127.0.0.1:1',
    store: 'pglite-memory:',
    domains: ['example.net'],
    milter: { listen: 'inet:127.0.0.1:0', ...((overrides.milter as object) ?? {}) },
    ...Object.fromEntries(Object.entries(overrides).filter(([k]) => k !== 'milter')),
  });
  const store = await openStore('pglite-memory:');
  // As `backstop serve` wires it: the milter's replies wait for the same group commit as the gateway's.
  const { messageLog, detect } = messageLogFor(store.db, config);
  const all: GatewayHooks = { mail: [], rcpt: [], data: [], decided: [], ...hooks };
  const judge = createJudge({ config, store, scanner: createScanner(config), logger: silentLogger, messageLog, nodeName: 'test', hooks: all, hookTimeoutMs: 5000, ...(detect ? { detect } : {}) });
  const milter = await startMilter({ config: { ...config, milter: config.milter! }, judge, hooks: all, hookTimeoutMs: 5000, logger: silentLogger });
  return {
    milter,
    store,
    messageLog,
    port: Number(milter.address.slice(milter.address.lastIndexOf(':') + 1)),
    async close() {
      await milter.close();
      await messageLog.flush();
      await store.close();
    },
  };
}

/** A milter client: sends packets, collects replies, notices the server hanging up. */
class Client {
  private socket: Socket;
  private reader = new PacketReader(1 << 20);
  private got: MilterReply[] = [];
  private waiters: (() => void)[] = [];
  closed = false;
  constructor(port: number) {
    this.socket = connect(port, '127.0.0.1');
    this.socket.on('data', (d) => {
      for (const p of this.reader.push(d)) this.got.push(decodeReply(p));
      this.wake();
    });
    this.socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    this.socket.on('error', () => {});
  }
  private wake() {
    for (const w of this.waiters.splice(0)) w();
  }
  send(...commands: MilterCommand[]) {
    for (const c of commands) this.socket.write(encodeCommand(c));
  }
  raw(bytes: Buffer) {
    this.socket.write(bytes);
  }
  /** The next n replies (fails if the server hangs up first). */
  async replies(n: number, timeoutMs = 10_000): Promise<MilterReply[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.got.length < n) {
      if (this.closed) throw new Error(`server closed after ${JSON.stringify(this.got)}`);
      if (Date.now() > deadline) throw new Error(`timed out with ${JSON.stringify(this.got)}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 100);
      });
    }
    return this.got.splice(0, n);
  }
  async hangup(timeoutMs = 5000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    return this.closed;
  }
  pending() {
    return this.got.length;
  }
  end() {
    this.socket.destroy();
  }
}

/** Opens a session the way Postfix does; returns the negotiated reply. */
async function open(c: Client, clientAddr = '192.0.2.9'): Promise<MilterReply> {
  c.send(POSTFIX_OFFER);
  const [neg] = await c.replies(1);
  c.send(
    { command: 'macro', stage: 'C', macros: { j: 'postfix.test', '{client_addr}': clientAddr, '{client_port}': '40001' } },
    { command: 'connect', hostname: 'unknown', family: '4', port: 40001, address: clientAddr },
  );
  assert.deepEqual(await c.replies(1), [{ reply: 'continue' }]);
  c.send({ command: 'helo', helo: 'pc9.example' });
  assert.deepEqual(await c.replies(1), [{ reply: 'continue' }]);
  return neg!;
}

/** Header fields exactly as Postfix sends them with SMFIP_HDR_LEADSPC (the value keeps its leading space). */
const headers: [string, string][] = [
  ['From', ' a@example.org'],
  ['To', ' user@example.net'],
  ['Subject', ' a folded\r\n\tsubject line'],
  ['Message-ID', ' <m1@example.org>'],
];

async function message(c: Client, body: string, opts: { from?: string; rcpt?: string } = {}): Promise<MilterReply[]> {
  c.send({ command: 'mail', args: [`<${opts.from ?? 'a@example.org'}>`, 'SIZE=200'] });
  const mail = await c.replies(1);
  if (mail[0]!.reply !== 'continue') return mail;
  c.send({ command: 'rcpt', args: [`<${opts.rcpt ?? 'user@example.net'}>`] });
  const rcpt = await c.replies(1);
  if (rcpt[0]!.reply !== 'continue') return rcpt;
  for (const [name, value] of headers) c.send({ command: 'header', name, value });
  c.send({ command: 'eoh' });
  // No reply per header (SMFIP_NR_HDR): the next reply is the one for end of headers.
  assert.deepEqual(await c.replies(1), [{ reply: 'continue' }]);
  c.send({ command: 'body', chunk: Buffer.from(body, 'latin1') });
  const b = await c.replies(1);
  if (b[0]!.reply !== 'continue') return b;
  c.send({ command: 'eom', chunk: Buffer.alloc(0) });
  return collectEom(c);
}

/** End-of-message replies: modifications, then one final reply. */
async function collectEom(c: Client): Promise<MilterReply[]> {
  const out: MilterReply[] = [];
  for (;;) {
    const [r] = await c.replies(1, 30_000);
    out.push(r!);
    if (!['addheader', 'chgfrom', 'addrcpt', 'delrcpt', 'progress'].includes(r!.reply)) return out;
  }
}

const WHOLE = (body: string) => headers.map(([n, v]) => `${n}:${v}\r\n`).join('') + '\r\n' + body;

const records = messageRecords;

describe('milter server, default settings (reject)', () => {
  let r: Rig;
  before(async () => {
    r = await rig();
  });
  after(() => r.close());

  test('negotiation: Backstop asks for headers without replies, leading spaces, no DATA/unknown, only the client macros; may add headers, quarantine, change sender and recipients', async () => {
    const c = new Client(r.port);
    const neg = await open(c);
    assert.deepEqual(neg, {
      reply: 'optneg',
      version: 6,
      actions: SMFIF.ADDHDRS | SMFIF.QUARANTINE | SMFIF.CHGFROM | SMFIF.ADDRCPT | SMFIF.DELRCPT | SMFIF.SETSYMLIST,
      protocol: SMFIP.NOUNKNOWN | SMFIP.NODATA | SMFIP.HDR_LEADSPC | SMFIP.NR_HDR,
      // Only the client's address and port, at connect; no macros at any other stage.
      macros: { 0: '{client_addr} {client_port}', 1: '', 2: '', 3: '', 4: '', 5: '', 6: '' },
    });
    c.end();
  });

  test('clean: continue; the record has the client from {client_addr}/{client_port} and the HELO', async () => {
    const c = new Client(r.port);
    await open(c, '198.51.100.23');
    assert.deepEqual(await message(c, 'hello\r\n'), [{ reply: 'continue' }]);
    c.send({ command: 'quit' });
    assert.ok(await c.hangup());
    const rec = (await records(r)).at(-1)!;
    assert.equal(rec.client_ip, '198.51.100.23');
    assert.equal(rec.client_port, 40001);
    assert.equal(rec.helo, 'pc9.example');
    assert.equal(rec.action, 'deliver');
    assert.equal(rec.subject, 'a folded subject line');
  });

  test('EICAR: SMFIR_REPLYCODE with the gateway\'s 550 5.7.1 text; two messages on one connection each judged', async () => {
    const c = new Client(r.port);
    await open(c);
    assert.deepEqual(await message(c, `${EICAR}\r\n`), [{ reply: 'replycode', code: 550, text: '5.7.1 Message refused, virus found: Eicar-Test-Signature' }]);
    assert.deepEqual(await message(c, 'second, clean\r\n'), [{ reply: 'continue' }]);
    c.end();
  });

  test('abort drops the transaction: an end of message after it has no recipients (503)', async () => {
    const c = new Client(r.port);
    await open(c);
    c.send({ command: 'mail', args: ['<a@example.org>'] }, { command: 'rcpt', args: ['<user@example.net>'] });
    await c.replies(2);
    c.send({ command: 'abort' }, { command: 'eom', chunk: Buffer.alloc(0) });
    assert.deepEqual(await c.replies(1), [{ reply: 'replycode', code: 503, text: '5.5.1 Error: no valid recipients' }]);
    c.end();
  });

  test('quit-nc starts a new session on the same connection; unknown and DATA get continue', async () => {
    const c = new Client(r.port);
    await open(c);
    c.send({ command: 'quit-nc' });
    c.send({ command: 'connect', hostname: 'h', family: '4', port: 1, address: '203.0.113.5' }, { command: 'data' }, { command: 'unknown', line: 'XYZZY' });
    assert.deepEqual(await c.replies(3), [{ reply: 'continue' }, { reply: 'continue' }, { reply: 'continue' }]);
    c.end();
  });
});

describe('milter server: hostile framing', () => {
  let r: Rig;
  before(async () => {
    r = await rig({ milter: { maxPacketBytes: 65_536 } });
  });
  after(() => r.close());

  test('an oversized packet (length past milter.maxPacketBytes) drops the connection at once', async () => {
    const c = new Client(r.port);
    await open(c);
    const head = Buffer.alloc(5);
    head.writeUInt32BE(65_538, 0);
    head.write('B', 4);
    c.raw(head);
    assert.ok(await c.hangup(), 'server hung up');
  });

  test('a truncated packet and then end of stream: nothing judged, nothing recorded', async () => {
    const before = (await records(r)).length;
    const c = new Client(r.port);
    await open(c);
    c.send({ command: 'mail', args: ['<a@example.org>'] }, { command: 'rcpt', args: ['<user@example.net>'] });
    await c.replies(2);
    c.raw(encodeCommand({ command: 'eom', chunk: Buffer.from('x') }).subarray(0, 4));
    await new Promise((res) => setTimeout(res, 200));
    assert.equal(c.pending(), 0, 'no reply to half a packet');
    c.end();
    await new Promise((res) => setTimeout(res, 200));
    assert.equal((await records(r)).length, before);
  });

  test('a malformed command (connect cut inside the port) drops the connection', async () => {
    const c = new Client(r.port);
    c.send(POSTFIX_OFFER);
    await c.replies(1);
    c.raw(Buffer.from([0, 0, 0, 5, 0x43, 0x68, 0x00, 0x34, 0x9c]));
    assert.ok(await c.hangup());
  });

  test('a command before option negotiation drops the connection', async () => {
    const c = new Client(r.port);
    c.send({ command: 'helo', helo: 'x' });
    assert.ok(await c.hangup());
  });

  test('an MTA that offers only protocol version 2 is refused (Postfix: milter_protocol = 6)', async () => {
    const c = new Client(r.port);
    c.send({ command: 'optneg', version: 2, actions: 0x3f, protocol: 0x7f });
    assert.ok(await c.hangup());
  });
});

describe('milter server: limits and outcomes', () => {
  test('a message past smtp.maxMessageBytes is refused with 552 at the chunk that crosses it (milter.tooBig reject), or 451 (tempfail)', async () => {
    for (const [tooBig, code] of [['reject', 552], ['tempfail', 451]] as const) {
      const r = await rig({ smtp: { maxMessageBytes: 2000 }, milter: { tooBig } });
      try {
        const c = new Client(r.port);
        await open(c);
        const replies = await message(c, 'x'.repeat(3000));
        assert.equal(replies.length, 1);
        assert.equal(replies[0]!.reply, 'replycode');
        assert.equal((replies[0] as { code: number }).code, code);
        // MAIL FROM's SIZE= already past the limit is refused at MAIL.
        c.send({ command: 'mail', args: ['<a@example.org>', 'SIZE=5000'] });
        assert.equal(((await c.replies(1))[0] as { code: number }).code, code);
        c.end();
      } finally {
        await r.close();
      }
    }
  });

  test('quarantine: the whole message, byte for byte as the MTA had it, in Backstop\'s quarantine, then SMFIR_DISCARD', async () => {
    const r = await rig({ actions: { infected: 'quarantine' } });
    try {
      const c = new Client(r.port);
      await open(c);
      const body = `${EICAR}\r\n`;
      assert.deepEqual(await message(c, body), [{ reply: 'discard' }]);
      const q = await r.store.db.selectFrom('quarantine').selectAll().executeTakeFirstOrThrow();
      assert.equal(Buffer.from(q.raw).toString('latin1'), WHOLE(body));
      assert.equal(q.client_ip, '192.0.2.9');
      c.end();
    } finally {
      await r.close();
    }
  });

  test('quarantine with milter.quarantine postfix-hold: held in Backstop and SMFIR_QUARANTINE for the MTA\'s hold queue', async () => {
    const r = await rig({ actions: { infected: 'quarantine' }, milter: { quarantine: 'postfix-hold' } });
    try {
      const c = new Client(r.port);
      await open(c);
      const [reply] = await message(c, `${EICAR}\r\n`);
      assert.equal(reply!.reply, 'quarantine');
      const q = await r.store.db.selectFrom('quarantine').select('id').executeTakeFirstOrThrow();
      assert.equal((reply as { reason: string }).reason, `Backstop quarantine ${q.id}`);
      c.end();
    } finally {
      await r.close();
    }
  });

  test('discard: SMFIR_DISCARD, recorded', async () => {
    const r = await rig({ actions: { infected: 'discard' } });
    try {
      const c = new Client(r.port);
      await open(c);
      assert.deepEqual(await message(c, `${EICAR}\r\n`), [{ reply: 'discard' }]);
      assert.equal((await records(r))[0]!.action, 'discard');
      c.end();
    } finally {
      await r.close();
    }
  });

  test('clamd unreachable: 451 4.3.0 (unscannable → tempfail), never continue', async () => {
    const r = await rig({ clamd: 'tcp://127.0.0.1:1' });
    try {
      const c = new Client(r.port);
      await open(c);
      assert.deepEqual(await message(c, 'clean text\r\n'), [{ reply: 'replycode', code: 451, text: '4.3.0 Message could not be scanned now, please try again later' }]);
      c.end();
    } finally {
      await r.close();
    }
  });

  test('the checks\' changes reach the MTA: a mail check\'s sender (SMFIR_CHGFROM), a rcpt check\'s recipient (DELRCPT + ADDRCPT), a data check\'s header (ADDHEADER); a refusing rcpt check is its reply', async () => {
    const r = await rig({}, {
      mail: [async (t) => (t.mailFrom === 'a@example.org' ? { outcome: 'continue', mailFrom: 'prvs=0123456789=a@example.org' } : CONTINUE)],
      rcpt: [async (_t, rcpt) => (rcpt === 'nobody@example.net' ? { outcome: 'reply', reply: { code: 550, message: '5.1.1 no such user' } } : rcpt.startsWith('prvs=') ? { outcome: 'continue', rcpt: 'user@example.net' } : CONTINUE)],
      data: [async () => ({ outcome: 'continue', headers: 'X-Backstop-Stamp: yes\r\n' })],
    });
    try {
      const c = new Client(r.port);
      await open(c);
      assert.deepEqual(await message(c, 'hi\r\n', { rcpt: 'prvs=1=user@example.net' }), [
        { reply: 'addheader', name: 'X-Backstop-Stamp', value: ' yes' },
        { reply: 'chgfrom', address: '<prvs=0123456789=a@example.org>' },
        { reply: 'delrcpt', address: '<prvs=1=user@example.net>' },
        { reply: 'addrcpt', address: '<user@example.net>' },
        { reply: 'continue' },
      ]);
      assert.deepEqual(await message(c, 'hi\r\n', { rcpt: 'nobody@example.net' }), [{ reply: 'replycode', code: 550, text: '5.1.1 no such user' }]);
      c.end();
    } finally {
      await r.close();
    }
  });

  test('unix: listen works, and a stale socket file from a killed run is replaced', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'bs-milter-sock-')), 'milter.sock');
    // A socket file nobody listens on: what a killed process leaves behind.
    execFileSync('python3', ['-c', 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', path]);
    const r = await rig({ milter: { listen: `unix:${path}` } });
    try {
      assert.equal(r.milter.address, `unix:${path}`);
      const sock = connect(path);
      sock.write(encodeCommand(POSTFIX_OFFER));
      const reply = await new Promise<Buffer>((res, rej) => {
        sock.once('data', res);
        sock.once('error', rej);
      });
      assert.equal(String.fromCharCode(reply[4]!), 'O');
      sock.destroy();
    } finally {
      await r.close();
    }
  });
});
