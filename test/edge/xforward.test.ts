/*
 * XFORWARD in (Postfix XFORWARD_README): the parser's table, the effective
 * client's rules, and a real gateway driven over a socket — trusted peer,
 * untrusted peer, hostile values, the attributes' lifetime of one transaction.
 */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { SMTPServerSession } from 'smtp-server';
import { clientOf, recordForwarded } from '../../src/edge/client.ts';
import { decodeXtext, encodeXtext, parseXforward, xclientCommand, XFORWARD_EHLO, xforwardCommands, type ClientToForward } from '../../src/edge/xforward.ts';
import { messageRecords, startTestGateway, type TestGateway } from '../helpers/gateway.ts';

describe('parseXforward', () => {
  const table: [string, ReturnType<typeof parseXforward>][] = [
    ['NAME=pc7.dsl.example ADDR=198.51.100.7 PORT=4242 PROTO=ESMTP HELO=pc7 IDENT=fred SOURCE=REMOTE', { ok: true, attrs: { name: 'pc7.dsl.example', addr: '198.51.100.7', port: 4242, proto: 'ESMTP', helo: 'pc7', ident: 'fred', source: 'REMOTE' } }],
    ['name=PC.Example. addr=IPv6:2001:DB8::7', { ok: true, attrs: { name: 'pc.example', addr: '2001:db8::7' } }],
    ['NAME=[UNAVAILABLE] ADDR=[UNAVAILABLE] PORT=[UNAVAILABLE] HELO=[UNAVAILABLE] SOURCE=[UNAVAILABLE]', { ok: true, attrs: { name: null, addr: null, port: null, helo: null, source: null } }],
    ['NAME=[TEMPUNAVAIL] ADDR=198.51.100.7', { ok: true, attrs: { name: 'tempunavail', addr: '198.51.100.7' } }],
    ['SOURCE=LOCAL', { ok: true, attrs: { source: 'LOCAL' } }],
    ['SOURCE=elsewhere', { ok: true, attrs: { source: 'REMOTE' } }],
    // A NAME that is no hostname is "unknown", as in Postfix: not a refusal of the whole command.
    ['NAME=evil<script>.example ADDR=198.51.100.7', { ok: true, attrs: { name: null, addr: '198.51.100.7' } }],
    // Header/log injection smuggled through xtext: the controls become "?", the spaces "_".
    ['HELO=pc+0D+0AX-Injected:+20yes IDENT=a+00b PROTO=ES+09MTP', { ok: true, attrs: { helo: 'pc??X-Injected:_yes', ident: 'a?b', proto: 'ES?MTP' } }],
    [`HELO=${'h'.repeat(400)}`, { ok: true, attrs: { helo: `${'h'.repeat(252)}...` } }],
    ['', { ok: false, code: 501, message: '5.5.4 Syntax: XFORWARD attribute=value...' }],
    ['ADDR=not-an-ip', { ok: false, code: 501, message: '5.5.4 Bad XFORWARD ADDR syntax' }],
    ['ADDR=198.51.100.7+0D+0A', { ok: false, code: 501, message: '5.5.4 Bad XFORWARD ADDR syntax' }],
    ['PORT=65536', { ok: false, code: 501, message: '5.5.4 Bad XFORWARD PORT syntax' }],
    ['PORT=-1', { ok: false, code: 501, message: '5.5.4 Bad XFORWARD PORT syntax' }],
    [`PROTO=${'P'.repeat(65)}`, { ok: false, code: 501, message: '5.5.4 Bad XFORWARD PROTO syntax' }],
    ['LOGIN=root', { ok: false, code: 501, message: '5.5.4 Bad XFORWARD attribute name: LOGIN' }],
    ['ADDR', { ok: false, code: 501, message: '5.5.4 Bad XFORWARD attribute name: ADDR' }],
    ['HELO=bad+zz', { ok: false, code: 501, message: '5.5.4 Bad XFORWARD attribute value syntax' }],
  ];
  for (const [input, expected] of table) {
    test(`XFORWARD ${input.slice(0, 70) || '(nothing)'}`, () => assert.deepEqual(parseXforward(input), expected));
  }
  test('xtext round trip (RFC 3461 §4)', () => {
    for (const s of ['plain', 'a+b=c', 'sp ace', 'ünï\r\n']) assert.equal(decodeXtext(encodeXtext(s)), s);
    assert.equal(encodeXtext('a+b=c d'), 'a+2Bb+3Dc+20d');
  });
});

describe('XFORWARD / XCLIENT out: the commands for the next hop', () => {
  const pc: ClientToForward = { addr: '198.51.100.7', port: 4242, name: null, helo: 'pc 7', proto: 'ESMTPS', source: 'REMOTE' };
  const table: [string, ClientToForward, string, string[] | string | null][] = [
    ['XFORWARD, every attribute Postfix offers, unknown ones as [UNAVAILABLE], values xtext', pc, 'xforward:NAME ADDR PORT PROTO HELO IDENT SOURCE', ['XFORWARD NAME=[UNAVAILABLE] ADDR=198.51.100.7 PORT=4242 PROTO=ESMTPS HELO=pc+207 IDENT=[UNAVAILABLE] SOURCE=REMOTE']],
    ['XFORWARD: only what was offered', pc, 'xforward:ADDR HELO', ['XFORWARD ADDR=198.51.100.7 HELO=pc+207']],
    ['XFORWARD: IPv6 with its prefix', { ...pc, addr: '2001:db8::7' }, 'xforward:ADDR', ['XFORWARD ADDR=IPV6:2001:db8::7']],
    ['XFORWARD: release from the quarantine is SOURCE=LOCAL', { ...pc, source: 'LOCAL' }, 'xforward:ADDR SOURCE', ['XFORWARD ADDR=198.51.100.7 SOURCE=LOCAL']],
    ['XFORWARD: long values split over lines of at most 512 octets', { ...pc, name: `${'n'.repeat(250)}.example`, helo: 'h'.repeat(255) }, 'xforward:NAME ADDR HELO', [`XFORWARD NAME=${'n'.repeat(250)}.example ADDR=198.51.100.7`, `XFORWARD HELO=${'h'.repeat(255)}`]],
    ['XCLIENT: one line, PROTO as SMTP or ESMTP', pc, 'xclient:NAME ADDR PORT PROTO HELO LOGIN DESTADDR', 'XCLIENT ADDR=198.51.100.7 PORT=4242 PROTO=ESMTP NAME=[UNAVAILABLE] HELO=pc+207'],
    ['XCLIENT: an unknown PROTO is left out (Postfix refuses [UNAVAILABLE] there)', { ...pc, proto: null }, 'xclient:ADDR PROTO', 'XCLIENT ADDR=198.51.100.7'],
    ['XCLIENT without ADDR on offer: nothing', pc, 'xclient:NAME HELO', null],
  ];
  for (const [name, client, offer, expected] of table) {
    test(name, () => {
      const [kind, offered] = offer.split(':') as [string, string];
      const got = kind === 'xforward' ? xforwardCommands(client, offered) : xclientCommand(client, offered);
      assert.deepEqual(got, expected);
      for (const line of [got ?? []].flat()) assert.ok(line.length + 2 <= 512, 'RFC 5321 §4.5.3.1.4');
    });
  }
});

describe('clientOf: the effective client', () => {
  const session = (over: Partial<SMTPServerSession> = {}) => ({ remoteAddress: '::ffff:127.0.0.1', remotePort: 5000, hostNameAppearsAs: 'postfix.example', transaction: 1, ...over }) as unknown as SMTPServerSession;
  test('without XFORWARD: the socket peer, IPv4-mapped written plain', () => {
    assert.deepEqual(clientOf(session()), { ip: '127.0.0.1', port: 5000, helo: 'postfix.example', hostname: null, proto: null, ident: null, source: null, via: null });
  });
  test('with XFORWARD: the forwarded client, the peer as via; two commands merge', () => {
    const s = session();
    recordForwarded(s, { addr: '198.51.100.7', port: 4242, name: 'pc7.example' });
    recordForwarded(s, { helo: 'pc7', proto: 'ESMTP', source: 'REMOTE' });
    assert.deepEqual(clientOf(s), { ip: '198.51.100.7', port: 4242, helo: 'pc7', hostname: 'pc7.example', proto: 'ESMTP', ident: null, source: 'REMOTE', via: '127.0.0.1' });
  });
  test('the attributes last one transaction', () => {
    const s = session();
    recordForwarded(s, { addr: '198.51.100.7' });
    (s as unknown as { transaction: number }).transaction = 2;
    assert.equal(clientOf(s).ip, '127.0.0.1');
  });
  test('ADDR [UNAVAILABLE] (mail the peer made itself): the peer; HELO [UNAVAILABLE]: none; NAME [TEMPUNAVAIL]: no name', () => {
    const s = session();
    recordForwarded(s, { addr: null, helo: null, name: 'tempunavail', source: 'LOCAL' });
    const c = clientOf(s);
    assert.deepEqual([c.ip, c.port, c.helo, c.hostname, c.source, c.via], ['127.0.0.1', 5000, '', null, 'LOCAL', null]);
  });
});

/** A bare SMTP dialogue over a socket bound to a chosen loopback address: XFORWARD is not in swaks' vocabulary. */
class Dialogue {
  private buf = '';
  private waiters: (() => void)[] = [];
  private constructor(private readonly socket: Socket) {
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.buf += d;
      for (const w of this.waiters.splice(0)) w();
    });
  }
  static async open(port: number, localAddress: string): Promise<Dialogue> {
    const socket = connect({ port, host: '127.0.0.1', localAddress });
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const d = new Dialogue(socket);
    await d.reply();
    return d;
  }
  /** The next complete reply (all its lines). */
  async reply(): Promise<string> {
    for (;;) {
      const m = /^(?:\d{3}-[^\n]*\n)*\d{3} [^\n]*\n/.exec(this.buf);
      if (m) {
        this.buf = this.buf.slice(m[0].length);
        return m[0].replace(/\r/g, '').trimEnd();
      }
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }
  async cmd(line: string): Promise<string> {
    this.socket.write(`${line}\r\n`);
    return this.reply();
  }
  async message(from: string, to: string, body: string): Promise<string> {
    assert.match(await this.cmd(`MAIL FROM:<${from}>`), /^250/);
    const rcpt = await this.cmd(`RCPT TO:<${to}>`);
    if (!rcpt.startsWith('250')) {
      assert.match(await this.cmd('RSET'), /^250/);
      return rcpt;
    }
    assert.match(await this.cmd('DATA'), /^354/);
    return this.cmd(`${body.replace(/\n/g, '\r\n')}\r\n.`);
  }
  async close(): Promise<void> {
    this.socket.end('QUIT\r\n');
    await new Promise<void>((resolve) => this.socket.once('close', () => resolve()));
  }
}

const mail = (subject: string) => `From: <a@example.org>\nTo: <user@example.net>\nSubject: ${subject}\nMessage-ID: <${subject.replace(/\W/g, '')}@example.org>\n\nhello\n`;

describe('XFORWARD at a real gateway', () => {
  let g: TestGateway;
  before(async () => {
    // 127.0.0.1 is "our Postfix"; 127.0.0.2 is anyone else. The forwarded customer network may relay.
    g = await startTestGateway({ smtp: { trustXforwardFrom: ['127.0.0.0/31'] }, relayFrom: ['198.51.100.0/24'] });
  });
  after(() => g.close());
  const records = () => messageRecords(g);
  const bySubject = async (s: string) => (await records()).find((r) => r.subject === s);

  test('a trusted peer is offered XFORWARD, and its client is the client: record, Received, relay policy', async () => {
    const d = await Dialogue.open(g.port, '127.0.0.1');
    assert.ok((await d.cmd('EHLO postfix.example')).split('\n').some((l) => l.slice(4) === XFORWARD_EHLO));
    assert.equal(await d.cmd('XFORWARD NAME=pc7.dsl.example ADDR=198.51.100.7 PORT=4242'), '250 2.0.0 Ok');
    assert.equal(await d.cmd('XFORWARD PROTO=ESMTP HELO=pc7 SOURCE=REMOTE'), '250 2.0.0 Ok');
    // Relay to a foreign domain: allowed only because the forwarded client is in relayFrom.
    assert.match(await d.message('a@example.org', 'far@elsewhere.example', mail('forwarded relay')), /^250 /);
    // The next transaction without XFORWARD is the peer's own: 127.0.0.1 may not relay.
    assert.match(await d.message('a@example.org', 'far@elsewhere.example', mail('own relay')), /^550 5\.7\.1 Relay access denied/);
    await d.close();
    const r = await bySubject('forwarded relay');
    assert.deepEqual([r?.client_ip, r?.client_port, r?.helo], ['198.51.100.7', 4242, 'pc7']);
    const msg = g.sink!.messages().find((m) => /Subject: forwarded relay/.test(m));
    assert.match(msg ?? '', /^Received: from pc7 \(pc7\.dsl\.example \[198\.51\.100\.7\]\)\r?\n\tby mx\.example\.net \(Backstop\) with ESMTP id /m);
  });

  test('an untrusted peer is not offered XFORWARD, is refused 550 5.7.0, and its words change nothing', async () => {
    const d = await Dialogue.open(g.port, '127.0.0.2');
    assert.ok(!(await d.cmd('EHLO liar.example')).includes('XFORWARD'));
    assert.equal(await d.cmd('XFORWARD ADDR=198.51.100.7 PORT=1 HELO=trusted'), '550 5.7.0 Error: insufficient authorization');
    assert.match(await d.message('a@example.org', 'far@elsewhere.example', mail('liar relay')), /^550 5\.7\.1 Relay access denied/);
    assert.match(await d.message('a@example.org', 'user@example.net', mail('liar local')), /^250 /);
    await d.close();
    const r = await bySubject('liar local');
    assert.deepEqual([r?.client_ip, r?.helo], ['127.0.0.2', 'liar.example']);
    assert.match(g.sink!.messages().find((m) => /Subject: liar local/.test(m)) ?? '', /^Received: from liar\.example \(\[127\.0\.0\.2\]\)/m);
  });

  test('hostile values from a trusted peer are cleaned; a malformed command is refused whole', async () => {
    const d = await Dialogue.open(g.port, '127.0.0.1');
    await d.cmd('EHLO postfix.example');
    assert.equal(await d.cmd('XFORWARD ADDR=198.51.100.9 PORT=99999'), '501 5.5.4 Bad XFORWARD PORT syntax');
    assert.equal(await d.cmd('XFORWARD NAME=<x>.example ADDR=203.0.113.5 HELO=pc+0D+0AX-Injected:+20yes'), '250 2.0.0 Ok');
    assert.match(await d.message('a@example.org', 'user@example.net', mail('hostile')), /^250 /);
    assert.match(await d.cmd('MAIL FROM:<a@example.org>'), /^250/);
    assert.equal(await d.cmd('XFORWARD ADDR=198.51.100.7'), '503 5.5.1 Error: MAIL transaction in progress');
    await d.close();
    const r = await bySubject('hostile');
    assert.deepEqual([r?.client_ip, r?.client_port, r?.helo], ['203.0.113.5', 0, 'pc??X-Injected:_yes']);
    const msg = g.sink!.messages().find((m) => /Subject: hostile/.test(m)) ?? '';
    assert.match(msg, /^Received: from pc\?\?X-Injected:_yes \(\[203\.0\.113\.5\]\)/m);
    assert.doesNotMatch(msg, /^X-Injected/m);
    assert.ok(!(await records()).some((x) => x.client_ip === '198.51.100.9'));
  });
});
