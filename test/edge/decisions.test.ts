import assert from 'node:assert/strict';
import { test } from 'node:test';
import { headerBlock, headerField } from '../../src/edge/headers.ts';
import { receivedHeader } from '../../src/edge/received.ts';
import { compileRelayPolicy, relayDecision } from '../../src/edge/relay.ts';
import { mirror } from '../../src/edge/replies.ts';
import { encodeData } from '../../src/edge/smtp-client.ts';

const policy = compileRelayPolicy(['example.net', 'Example.ORG'], ['192.0.2.0/24', '2001:db8::/32', '198.51.100.7']);
const relayTable: [string, string, string][] = [
  ['203.0.113.9', 'user@example.net', 'local'],
  ['203.0.113.9', 'USER@EXAMPLE.NET', 'local'],
  ['203.0.113.9', 'user@example.org', 'local'],
  ['203.0.113.9', 'user@example.net.', 'local'],
  ['203.0.113.9', 'user@sub.example.net', 'denied'],
  ['203.0.113.9', 'user@example.com', 'denied'],
  ['192.0.2.55', 'user@example.com', 'relay'],
  ['::ffff:192.0.2.55', 'user@example.com', 'relay'],
  ['2001:db8::1', 'user@example.com', 'relay'],
  ['198.51.100.7', 'user@example.com', 'relay'],
  ['198.51.100.8', 'user@example.com', 'denied'],
  ['not-an-ip', 'user@example.com', 'denied'],
  ['203.0.113.9', 'user@example.com@example.net', 'local'],
];
for (const [ip, rcpt, expected] of relayTable) {
  test(`relay: ${ip} → ${rcpt} is ${expected}`, () => assert.equal(relayDecision(policy, ip, rcpt), expected));
}

const mirrorTable: [number, string, number, string][] = [
  [250, '2.0.0 Ok: queued as ABC', 250, '2.0.0 Ok: queued as ABC'],
  [550, '5.1.1 <x@example.net>: Recipient address rejected: User unknown', 550, '5.1.1 <x@example.net>: Recipient address rejected: User unknown'],
  [550, 'User unknown', 550, '5.0.0 User unknown'],
  [450, '4.2.0 <x@example.net>: greylisted', 450, '4.2.0 <x@example.net>: greylisted'],
  [450, '5.7.1 mismatched class', 450, '4.0.0 mismatched class'],
  [554, 'multi\nline', 554, '5.0.0 multi line'],
  [354, 'go ahead', 451, '4.4.0 Unexpected reply from the next hop, try again later'],
  [999, 'nonsense', 451, '4.4.0 Unexpected reply from the next hop, try again later'],
  [550, '5.7.1 evil\u0000\u001b[31m text', 550, '5.7.1 evil??[31m text'],
];
for (const [code, text, expectedCode, expectedMessage] of mirrorTable) {
  test(`mirror: ${code} ${JSON.stringify(text)}`, () => assert.deepEqual(mirror({ code, text }), { code: expectedCode, message: expectedMessage }));
}

const encode = (s: string) => Buffer.concat(encodeData(Buffer.from(s))).toString('latin1');
const encodeTable: [string, string, string][] = [
  ['CRLF message', 'a\r\nb\r\n', 'a\r\nb\r\n.\r\n'],
  ['bare LF becomes CRLF', 'a\nb\n', 'a\r\nb\r\n.\r\n'],
  ['no final newline', 'a\r\nb', 'a\r\nb\r\n.\r\n'],
  ['leading dots doubled', '.x\r\n..y\r\n', '..x\r\n...y\r\n.\r\n'],
  ['bare-lf-smuggling: "\\n.\\n" cannot end DATA', 'a\n.\nMAIL FROM:<x>\n', 'a\r\n..\r\nMAIL FROM:<x>\r\n.\r\n'],
  ['bare-cr-smuggling: "\\r.\\r" cannot end DATA', 'a\r.\rRCPT TO:<y>\r\n', 'a\r\n..\r\nRCPT TO:<y>\r\n.\r\n'],
  ['empty message', '', '.\r\n'],
];
for (const [name, input, expected] of encodeTable) {
  test(`encodeData: ${name}`, () => assert.equal(encode(input), expected));
}

test('received: the client cannot break out of its part of the trace line', () => {
  const h = receivedHeader({
    helo: 'evil (injected) by forged.example;\r\nX-Bad: 1',
    clientIp: '192.0.2.7',
    clientHostname: null,
    byHost: 'mx.example.net',
    protocol: 'ESMTP',
    id: 'abc123',
    recipient: 'user@example.net',
    date: new Date(Date.UTC(2004, 0, 26, 13, 0, 0)),
  });
  assert.equal(h, 'Received: from evil__injected__by_forged.example_??X-Bad:_1 ([192.0.2.7])\r\n\tby mx.example.net (Backstop) with ESMTP id abc123\r\n\tfor <user@example.net>;\r\n\tMon, 26 Jan 2004 13:00:00 +0000\r\n');
  assert.equal(h.split('\r\n').filter((l) => /^\S/.test(l)).length, 1, 'one header field');
});

test('headers: fields are found case-insensitively, unfolded and cleaned; the body is not read', () => {
  const raw = Buffer.from('From: a@b\r\nsubject: Hello\r\n  world\r\nMessage-ID: <1@x>\r\n\r\nSubject: not this one\r\n');
  const block = headerBlock(raw);
  assert.equal(headerField(block, 'subject'), 'Hello world');
  assert.equal(headerField(block, 'message-id'), '<1@x>');
  assert.equal(headerField(block, 'date'), null);
  assert.equal(headerField(headerBlock(Buffer.from('Subject: a\u202eb\r\n\r\n')), 'subject'), 'a?b');
  assert.equal(headerField(headerBlock(Buffer.from('Subject: Grüße\r\n\r\n')), 'subject'), 'Grüße');
});
