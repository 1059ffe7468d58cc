/*
 * The milter codec, table-tested against bytes written out by hand from
 * libmilter's mfdef.h and engine.c layouts (length u32 BE, command byte, data).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  decodeCommand,
  decodeReply,
  encodeCommand,
  encodeReply,
  MilterProtocolError,
  negotiate,
  PacketReader,
  SMFIF,
  SMFIP,
  type MilterCommand,
  type MilterReply,
} from '../../src/milter/codec.ts';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const nul = (s: string) => Buffer.from(s, 'latin1').toString('hex') + '00';
const len = (n: number) => n.toString(16).padStart(8, '0');
const pkt = (code: string, dataHex: string) => hex(len(dataHex.length / 2 + 1) + Buffer.from(code).toString('hex') + dataHex);

const commands: [string, MilterCommand, Buffer][] = [
  ['O optneg: version 6, all actions, all steps', { command: 'optneg', version: 6, actions: 0x1ff, protocol: 0x1fffff }, pkt('O', '00000006' + '000001ff' + '001fffff')],
  ['D macros for connect', { command: 'macro', stage: 'C', macros: { j: 'mx.example.net', '{client_addr}': '127.0.0.9' } }, pkt('D', '43' + nul('j') + nul('mx.example.net') + nul('{client_addr}') + nul('127.0.0.9'))],
  ['D with no macros', { command: 'macro', stage: 'E', macros: {} }, pkt('D', '45')],
  ['C connect, IPv4', { command: 'connect', hostname: 'pc.example', family: '4', port: 40000, address: '127.7.7.7' }, pkt('C', nul('pc.example') + '34' + '9c40' + nul('127.7.7.7'))],
  ['C connect, IPv6', { command: 'connect', hostname: '[::1]', family: '6', port: 25, address: '::1' }, pkt('C', nul('[::1]') + '36' + '0019' + nul('::1'))],
  ['C connect, unix socket', { command: 'connect', hostname: 'localhost', family: 'L', port: 0, address: '/run/x' }, pkt('C', nul('localhost') + '4c' + '0000' + nul('/run/x'))],
  ['C connect, unknown family (no port, no address)', { command: 'connect', hostname: 'localhost', family: 'U', port: 0, address: '' }, pkt('C', nul('localhost') + '55')],
  ['H helo', { command: 'helo', helo: 'infected-pc' }, pkt('H', nul('infected-pc'))],
  ['M mail from with ESMTP args', { command: 'mail', args: ['<a@example.org>', 'SIZE=100', 'BODY=8BITMIME'] }, pkt('M', nul('<a@example.org>') + nul('SIZE=100') + nul('BODY=8BITMIME'))],
  ['M null sender', { command: 'mail', args: ['<>'] }, pkt('M', nul('<>'))],
  ['R rcpt', { command: 'rcpt', args: ['<b@example.net>'] }, pkt('R', nul('<b@example.net>'))],
  ['L header', { command: 'header', name: 'Subject', value: ' hi' }, pkt('L', nul('Subject') + nul(' hi'))],
  ['L header with an empty value', { command: 'header', name: 'X-Empty', value: '' }, pkt('L', nul('X-Empty') + '00')],
  ['N end of headers', { command: 'eoh' }, pkt('N', '')],
  ['B body chunk (bytes as sent, NULs and all)', { command: 'body', chunk: hex('00ff0d0a') }, pkt('B', '00ff0d0a')],
  ['E end of message, empty', { command: 'eom', chunk: Buffer.alloc(0) }, pkt('E', '')],
  ['E end of message with a last chunk', { command: 'eom', chunk: Buffer.from('x') }, pkt('E', '78')],
  ['A abort', { command: 'abort' }, pkt('A', '')],
  ['Q quit', { command: 'quit' }, pkt('Q', '')],
  ['K quit, new connection follows', { command: 'quit-nc' }, pkt('K', '')],
  ['T data', { command: 'data' }, pkt('T', '')],
  ['U unknown command', { command: 'unknown', line: 'XYZZY plugh' }, pkt('U', nul('XYZZY plugh'))],
];

for (const [name, command, bytes] of commands) {
  test(`command ${name}: encodes to the libmilter bytes and decodes back`, () => {
    assert.deepEqual(encodeCommand(command), bytes);
    const [p] = new PacketReader(1 << 20).push(bytes);
    assert.deepEqual(decodeCommand(p!), command);
  });
}

const replies: [string, MilterReply, Buffer][] = [
  ['O optneg reply', { reply: 'optneg', version: 6, actions: SMFIF.ADDHDRS | SMFIF.QUARANTINE, protocol: SMFIP.NR_HDR | SMFIP.NODATA }, pkt('O', '00000006' + '00000021' + '00000280')],
  ['O optneg reply with macro lists (SMFIF_SETSYMLIST)', { reply: 'optneg', version: 6, actions: SMFIF.SETSYMLIST, protocol: 0, macros: { 0: '{client_addr} {client_port}', 5: '' } }, pkt('O', '00000006' + '00000100' + '00000000' + '00000000' + nul('{client_addr} {client_port}') + '00000005' + '00')],
  ['c continue', { reply: 'continue' }, pkt('c', '')],
  ['a accept', { reply: 'accept' }, pkt('a', '')],
  ['r reject', { reply: 'reject' }, pkt('r', '')],
  ['t tempfail', { reply: 'tempfail' }, pkt('t', '')],
  ['d discard', { reply: 'discard' }, pkt('d', '')],
  ['p progress', { reply: 'progress' }, pkt('p', '')],
  ['y replycode 550 5.7.1', { reply: 'replycode', code: 550, text: '5.7.1 Message refused, virus found: Eicar-Signature' }, pkt('y', nul('550 5.7.1 Message refused, virus found: Eicar-Signature'))],
  ['y replycode 451', { reply: 'replycode', code: 451, text: '4.3.0 Local error in processing, try again later' }, pkt('y', nul('451 4.3.0 Local error in processing, try again later'))],
  ['q quarantine with a reason', { reply: 'quarantine', reason: 'Backstop: infected' }, pkt('q', nul('Backstop: infected'))],
  ['h add header', { reply: 'addheader', name: 'X-Backstop', value: 'clean' }, pkt('h', nul('X-Backstop') + nul('clean'))],
  ['e change sender', { reply: 'chgfrom', address: '<prvs=1234abcd=a@example.net>' }, pkt('e', nul('<prvs=1234abcd=a@example.net>'))],
  ['e change sender with args', { reply: 'chgfrom', address: '<a@example.net>', args: 'SIZE=10' }, pkt('e', nul('<a@example.net>') + nul('SIZE=10'))],
  ['+ add recipient', { reply: 'addrcpt', address: '<b@example.net>' }, pkt('+', nul('<b@example.net>'))],
  ['- delete recipient', { reply: 'delrcpt', address: '<prvs=1@example.net>' }, pkt('-', nul('<prvs=1@example.net>'))],
];

for (const [name, reply, bytes] of replies) {
  test(`reply ${name}: encodes to the libmilter bytes and decodes back`, () => {
    assert.deepEqual(encodeReply(reply), bytes);
    const [p] = new PacketReader(1 << 20).push(bytes);
    assert.deepEqual(decodeReply(p!), reply);
  });
}

test('a reply code that is not one 4xx/5xx line is refused (no CRLF smuggled into the MTA reply, no 2xx)', () => {
  assert.throws(() => encodeReply({ reply: 'replycode', code: 550, text: '5.7.1 x\r\n250 ok' }), MilterProtocolError);
  assert.throws(() => encodeReply({ reply: 'replycode', code: 250, text: '2.0.0 ok' }), MilterProtocolError);
  assert.throws(() => encodeReply({ reply: 'addheader', name: 'Bad Name', value: 'x' }), MilterProtocolError);
});

test('the packet reader cuts a stream fed one byte at a time, and several packets in one chunk', () => {
  const stream = Buffer.concat(commands.map(([, , b]) => b));
  const reader = new PacketReader(1 << 20);
  const got: MilterCommand[] = [];
  for (const byte of stream) for (const p of reader.push(Buffer.from([byte]))) got.push(decodeCommand(p));
  assert.deepEqual(got, commands.map(([, c]) => c));
  assert.equal(reader.pending, 0);
  assert.equal(new PacketReader(1 << 20).push(stream).length, commands.length);
});

test('truncated packets: an unfinished packet is held, never decoded; the bytes left say it was cut', () => {
  for (const [name, , bytes] of commands) {
    for (let cut = 1; cut < bytes.length; cut++) {
      const reader = new PacketReader(1 << 20);
      assert.deepEqual(reader.push(bytes.subarray(0, cut)), [], `${name} cut at ${cut}`);
      assert.equal(reader.pending, cut);
    }
  }
});

test('truncated data inside a whole packet is a protocol error, not a guess', () => {
  const bad: [string, Buffer][] = [
    ['optneg with 8 of 12 bytes', pkt('O', '00000006000001ff')],
    ['connect without its address NUL', pkt('C', nul('h') + '34' + '9c40' + Buffer.from('127.0.0.1').toString('hex'))],
    ['connect cut after the family', pkt('C', nul('h') + '34')],
    ['connect cut inside the port', pkt('C', nul('h') + '349c')],
    ['connect with an unknown family', pkt('C', nul('h') + '58' + '0019' + nul('x'))],
    ['connect with no family', pkt('C', nul('h'))],
    ['helo without NUL', pkt('H', Buffer.from('pc').toString('hex'))],
    ['empty helo packet', pkt('H', '')],
    ['mail without NUL', pkt('M', Buffer.from('<a@b>').toString('hex'))],
    ['header with a name and no value', pkt('L', nul('Subject'))],
    ['header with three strings', pkt('L', nul('a') + nul('b') + nul('c'))],
    ['macro with a name and no value', pkt('D', '43' + nul('j'))],
    ['macro with no stage', pkt('D', '')],
    ['a command byte that does not exist', pkt('Z', '')],
  ];
  for (const [name, bytes] of bad) {
    const [p] = new PacketReader(1 << 20).push(bytes);
    assert.ok(p, name);
    assert.throws(() => decodeCommand(p), MilterProtocolError, name);
  }
  assert.throws(() => decodeReply({ code: 'y', data: Buffer.from('550 no nul') }), MilterProtocolError);
  assert.throws(() => decodeReply({ code: 'Z', data: Buffer.alloc(0) }), MilterProtocolError);
});

test('oversized packets are refused from their length alone, before the data is buffered', () => {
  const reader = new PacketReader(65_536);
  // Just the 4 length bytes of a 64 KiB + 2 packet: refused at once.
  assert.throws(() => reader.push(hex(len(65_538))), /exceeds milter\.maxPacketBytes/);
  // A hostile 4 GiB length.
  assert.throws(() => new PacketReader(65_536).push(hex('ffffffff42')), /exceeds/);
  // Exactly at the limit is fine: a 65535-byte body chunk (Postfix's and libmilter's MILTER_CHUNK_SIZE) plus its command byte.
  const chunk = Buffer.alloc(65_535, 0x61);
  const [p] = new PacketReader(65_536).push(encodeCommand({ command: 'body', chunk }));
  assert.equal((decodeCommand(p!) as { chunk: Buffer }).chunk.length, 65_535);
  // Length 0 has no command byte.
  assert.throws(() => new PacketReader(65_536).push(hex('00000000')), /length 0/);
});

test('negotiation takes only what the MTA offers of what Backstop wants, and needs version 6', () => {
  const want = { actions: SMFIF.ADDHDRS | SMFIF.QUARANTINE | SMFIF.CHGFROM, protocol: SMFIP.NR_HDR | SMFIP.NOUNKNOWN | SMFIP.NODATA | SMFIP.HDR_LEADSPC };
  assert.deepEqual(negotiate({ version: 6, actions: 0x1ff, protocol: 0x1fffff }, want), { reply: 'optneg', version: 6, ...want });
  assert.deepEqual(negotiate({ version: 6, actions: SMFIF.ADDHDRS, protocol: SMFIP.NODATA }, want), { reply: 'optneg', version: 6, actions: SMFIF.ADDHDRS, protocol: SMFIP.NODATA });
  assert.throws(() => negotiate({ version: 2, actions: 0x3f, protocol: 0x7f }, want), /milter_protocol = 6/);
  // Macro lists only when the MTA allows SMFIF_SETSYMLIST.
  const macros = { 0: '{client_addr}' };
  assert.deepEqual(negotiate({ version: 6, actions: 0x1ff, protocol: 0 }, { ...want, macros }).macros, macros);
  assert.equal(negotiate({ version: 6, actions: 0xff, protocol: 0 }, { ...want, macros }).macros, undefined);
  assert.throws(() => decodeReply({ code: 'O', data: Buffer.concat([Buffer.alloc(12), Buffer.from([0, 0, 0, 0, 0x61])]) }), /not NUL-terminated/);
  assert.throws(() => decodeReply({ code: 'O', data: Buffer.concat([Buffer.alloc(12), Buffer.from([0, 0])]) }), /truncated macro list/);
});
