/*
 * Per-IP aliases: which recipients name which address, and the hostile
 * shapes that must name none.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { aliasFor, parseAlias } from '../../src/desk/aliases.ts';

const D = 'abuse.example.net';

const NAMES: [string, string][] = [
  ['192.0.2.7@abuse.example.net', '192.0.2.7'],
  ['192-0-2-7@abuse.example.net', '192.0.2.7'],
  ['192-0-2-7@ABUSE.Example.NET', '192.0.2.7'],
  ['192-0-2-7@abuse.example.net.', '192.0.2.7'],
  ['<192-0-2-7@abuse.example.net>', '192.0.2.7'],
  ['0.0.0.0@abuse.example.net', '0.0.0.0'],
  ['255.255.255.255@abuse.example.net', '255.255.255.255'],
  ['10-0-0-1@abuse.example.net', '10.0.0.1'],
  ['2001-db8--1@abuse.example.net', '2001:db8::1'],
  ['2001-DB8--1@abuse.example.net', '2001:db8::1'],
  ['2001-0db8-0000-0000-0000-0000-0000-0001@abuse.example.net', '2001:db8::1'],
  ['--1@abuse.example.net', '::1'],
  ['fe80--@abuse.example.net', 'fe80::'],
];

for (const [rcpt, ip] of NAMES) {
  test(`alias ${rcpt} names ${ip}`, () => {
    const t = parseAlias(rcpt, D);
    assert.ok(t && t.kind === 'ip', `expected an IP for ${rcpt}`);
    assert.equal(t.ip, ip);
  });
}

test('abuse@ is the plain mailbox, in any case', () => {
  assert.deepEqual(parseAlias('abuse@abuse.example.net', D), { kind: 'abuse' });
  assert.deepEqual(parseAlias('ABUSE@Abuse.Example.Net', D), { kind: 'abuse' });
  assert.deepEqual(parseAlias('abuse@ABUSE.EXAMPLE.NET', 'Abuse.Example.Net'), { kind: 'abuse' });
});

const REFUSED: [string, string][] = [
  ['other domain', '192-0-2-7@example.net'],
  ['suffix only', '192-0-2-7@evil-abuse.example.net'],
  ['subdomain', '192-0-2-7@x.abuse.example.net'],
  ['domain with suffix', '192-0-2-7@abuse.example.net.evil'],
  ['leading zero octal', '010.0.0.1@abuse.example.net'],
  ['leading zero dashed', '192-0-02-7@abuse.example.net'],
  ['double zero', '00.0.0.1@abuse.example.net'],
  ['octet too big', '256.0.0.1@abuse.example.net'],
  ['three octets', '192.0.2@abuse.example.net'],
  ['five octets', '192.0.2.7.1@abuse.example.net'],
  ['mixed separators', '192.0-2.7@abuse.example.net'],
  ['hex IPv4', '0xc0.0.2.7@abuse.example.net'],
  ['decimal IPv4', '3221225991@abuse.example.net'],
  ['plus tag', '192-0-2-7+x@abuse.example.net'],
  ['plus tag on abuse', 'abuse+x@abuse.example.net'],
  ['percent hack', '192-0-2-7%evil.example@abuse.example.net'],
  ['quoted local part', '"192-0-2-7"@abuse.example.net'],
  ['quoted with at', '"a@b"@abuse.example.net'],
  ['two ats', '192-0-2-7@x@abuse.example.net'],
  ['source route', '@relay.example:192-0-2-7@abuse.example.net'],
  ['comment', '192-0-2-7(c)@abuse.example.net'],
  ['ip literal domain', '192-0-2-7@[192.0.2.1]'],
  ['ip literal for abuse domain', 'abuse@[203.0.113.1]'],
  ['empty local', '@abuse.example.net'],
  ['no domain', '192-0-2-7'],
  ['empty', ''],
  ['spaces', ' 192-0-2-7@abuse.example.net'],
  ['crlf', '192-0-2-7@abuse.example.net\r\nRCPT TO:<x@y>'],
  ['nul', '192-0-2-7\u0000@abuse.example.net'],
  ['ipv6 colons in local part', '2001:db8::1@abuse.example.net'],
  ['ipv6 two double dashes', '2001--db8--1@abuse.example.net'],
  ['ipv6 group too long', '2001-0db80-1--@abuse.example.net'],
  ['ipv6 zone id', 'fe80--1%eth0@abuse.example.net'],
  ['ipv6 embedded ipv4', '--ffff-192.0.2.7@abuse.example.net'],
  ['ipv6 non-hex', '2001-db8--g@abuse.example.net'],
  ['ipv6 too many groups', '1-2-3-4-5-6-7-8-9@abuse.example.net'],
  ['dashes only', '-@abuse.example.net'],
  ['unicode digits', '١٩٢-0-2-7@abuse.example.net'],
  ['fullwidth', '１92-0-2-7@abuse.example.net'],
  ['postmaster', 'postmaster@abuse.example.net'],
  ['abuse with ip', 'abuse-192-0-2-7@abuse.example.net'],
  ['overlong', `${'1'.repeat(300)}@abuse.example.net`],
];

for (const [what, rcpt] of REFUSED) {
  test(`refused: ${what}`, () => {
    assert.equal(parseAlias(rcpt, D), null, JSON.stringify(rcpt));
  });
}

test('no abuse domain configured: nothing is an alias', () => {
  assert.equal(parseAlias('abuse@abuse.example.net', ''), null);
  assert.equal(parseAlias('192-0-2-7@', ''), null);
});

test('aliasFor writes the dashed form that parseAlias reads back', () => {
  assert.equal(aliasFor('192.0.2.7', 'Abuse.Example.Net'), '192-0-2-7@abuse.example.net');
  assert.equal(aliasFor('2001:0db8:0:0:0:0:0:1', D), '2001-db8--1@abuse.example.net');
  for (const ip of ['192.0.2.7', '2001:db8::1', '::1', 'fe80::']) {
    const t = parseAlias(aliasFor(ip, D), D);
    assert.ok(t && t.kind === 'ip');
    assert.equal(t.ip, ip);
  }
});
