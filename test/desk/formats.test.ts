/*
 * The lease-file parsers (src/desk/formats/isc-dhcpd, kea-csv,
 * radius-detail) on files written by the real daemons
 * (test/desk/fixtures/leases/, made by scripts/make-lease-fixtures.sh — see
 * the README there), on hand-written cases for what the daemons did not
 * produce here (from the manuals, marked as such), on malformed input (the
 * error names the line and what was expected) and on random truncations and
 * corruptions of the fixtures (only LeaseFileError may escape).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import * as isc from '../../src/desk/formats/isc-dhcpd.ts';
import * as kea from '../../src/desk/formats/kea-csv.ts';
import * as radius from '../../src/desk/formats/radius-detail.ts';
import { LeaseFileError } from '../../src/desk/formats/lease-file.ts';
import type { LeaseRecord } from '../../src/desk/leases.ts';

const fixture = (name: string) => readFileSync(new URL(`./fixtures/leases/${name}`, import.meta.url), 'utf8');

type Expected = [ip: string, start: string, end: string | null, line: string | null];

/** Records as compact tuples: [ip, start ISO, end ISO|null, "kind:value"|null]. */
function tuples(records: LeaseRecord[]): Expected[] {
  return records.map((r) => [r.ip, r.start.toISOString(), r.end?.toISOString() ?? null, r.line ? `${r.line.kind}:${r.line.value}` : null]);
}

function throwsAt(parse: (t: string) => unknown, text: string, line: number, pattern: RegExp) {
  assert.throws(
    () => parse(text),
    (err: unknown) => {
      assert.ok(err instanceof LeaseFileError, `expected a LeaseFileError, got ${String(err)}`);
      assert.equal(err.line, line, err.message);
      assert.match(err.message, pattern);
      return true;
    },
  );
}

/** Random truncations and byte flips of a fixture: a result or a LeaseFileError, nothing else. */
function fuzz(parse: (t: string) => LeaseRecord[], text: string, rounds = 400) {
  let seed = 12345;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const junk = ['{', '}', ';', '"', '\\', '\n', ',', '=', '#', ' ', 'x', '0', ':', '\u0000', 'ä'];
  let ok = 0;
  let refused = 0;
  for (let i = 0; i < rounds; i++) {
    let t = text.slice(0, rnd(text.length + 1));
    if (i % 2 === 1 && t.length > 0) {
      const at = rnd(t.length);
      t = t.slice(0, at) + junk[rnd(junk.length)] + t.slice(at + 1);
    }
    try {
      const out = parse(t);
      for (const r of out) {
        assert.equal(typeof r.ip, 'string');
        assert.ok(Number.isFinite(r.start.getTime()));
        assert.ok(r.end === null || r.end.getTime() > r.start.getTime());
      }
      ok++;
    } catch (err) {
      if (!(err instanceof LeaseFileError)) throw new Error(`round ${i}: ${String(err)} on input ${JSON.stringify(t.slice(-120))}`);
      refused++;
    }
  }
  assert.ok(ok > 0 && refused > 0, `both outcomes seen (ok ${ok}, refused ${refused})`);
}

describe('isc-dhcpd', () => {
  it('reads the dhcpd -4 lease file: three clients, a renewal, a release, option 82 circuit-id', () => {
    assert.deepEqual(tuples(isc.parse(fixture('isc-dhcpd.leases'))), [
      // alice (MAC …:01); her renewal 6 s later ends the first entry there
      ['10.77.0.100', '2026-11-22T19:18:25.000Z', '2026-11-22T19:18:31.000Z', 'mac:52:54:00:0a:00:01'],
      // a client behind a relay: the circuit-id is the line, not the MAC
      ['10.77.0.101', '2026-11-22T19:18:27.000Z', '2026-11-22T19:28:27.000Z', 'circuit-id:eth0/1/7'],
      // carol released: the "binding state free" entry with the same starts ends it at the release
      ['10.77.0.102', '2026-11-22T19:18:28.000Z', '2026-11-22T19:18:33.000Z', 'mac:52:54:00:0a:00:03'],
      ['10.77.0.100', '2026-11-22T19:18:31.000Z', '2026-11-22T19:28:31.000Z', 'mac:52:54:00:0a:00:01'],
    ]);
  });

  it('reads the dhcpd -6 lease file: ia-na with the MAC from the DUID, a release at its cltt', () => {
    assert.deepEqual(tuples(isc.parse(fixture('isc-dhcpd6.leases'))), [
      ['2001:db8:77::1a1', '2026-11-22T19:18:39.000Z', '2026-11-22T19:28:39.000Z', 'mac:52:54:00:0a:00:01'],
      ['2001:db8:77::19b', '2026-11-22T19:18:41.000Z', '2026-11-22T19:18:45.000Z', 'mac:52:54:00:0a:00:02'],
    ]);
  });

  // Written from dhcpd.leases(5), not by dhcpd here: the forms the daemon did not produce in the run.
  const manPage = [
    {
      name: 'epoch times (db-time-format local), ends never, upper-case MAC, comments and escapes',
      text: `# comment "with a quote
server-duid "\\000\\001\\"\\\\x";
lease 192.0.2.10 { # trailing comment
  starts epoch 1767225600; # Thu Jan 01 00:00:00 2026
  ends never;
  binding state active;
  hardware ethernet 00:1A:2B:3C:4D:5E;
  uid "\\001\\000\\032+<M^";
  client-hostname "Bob's \\"PC\\"";
}`,
      want: [['192.0.2.10', '2026-01-01T00:00:00.000Z', null, 'mac:00:1a:2b:3c:4d:5e']] as Expected[],
    },
    {
      name: 'expired ends the running lease at its ends, abandoned (a DECLINE) at its starts; a pool entry never held gives nothing',
      text: `lease 192.0.2.11 {
  starts 4 2026/01/01 10:00:00;
  ends 4 2026/01/01 12:00:00;
  binding state active;
  hardware ethernet 00:00:5e:00:53:01;
}
lease 192.0.2.12 {
  starts 4 2026/01/01 10:00:00;
  ends 4 2026/01/01 12:00:00;
  binding state active;
  hardware ethernet 00:00:5e:00:53:02;
}
lease 192.0.2.11 {
  starts 4 2026/01/01 10:00:00;
  ends 4 2026/01/01 12:00:00;
  binding state expired;
  hardware ethernet 00:00:5e:00:53:01;
}
lease 192.0.2.12 {
  starts 4 2026/01/01 11:00:00;
  ends 4 2026/01/01 11:30:00;
  binding state abandoned;
}
lease 192.0.2.13 {
  binding state free;
}`,
      want: [
        ['192.0.2.11', '2026-01-01T10:00:00.000Z', '2026-01-01T12:00:00.000Z', 'mac:00:00:5e:00:53:01'],
        ['192.0.2.12', '2026-01-01T10:00:00.000Z', '2026-01-01T11:00:00.000Z', 'mac:00:00:5e:00:53:02'],
      ] as Expected[],
    },
    {
      name: 'failover state, on-event blocks, a hex circuit-id, ia-pd skipped, a compacted free entry still names its holder',
      text: `failover peer "dhcp-failover" state {
  my state normal at 4 2026/01/01 09:00:00;
  partner state normal at 4 2026/01/01 09:00:00;
}
lease 198.51.100.7 {
  starts 4 2026/01/01 10:00:00;
  ends 4 2026/01/01 22:00:00;
  tstp 4 2026/01/01 22:00:00;
  binding state active;
  next binding state free;
  hardware ethernet 00:00:5e:00:53:07;
  option agent.circuit-id 0:4:0:1:0:3;
  option agent.remote-id "modem-17";
  set ddns-fwd-name = "x.example";
  on expiry { set ddns-fwd-name = ""; }
}
lease 198.51.100.8 {
  starts 4 2026/01/01 08:00:00;
  ends 4 2026/01/01 09:15:00;
  binding state free;
  hardware ethernet 00:00:5e:00:53:08;
}
ia-pd "\\001\\000\\000\\000\\000\\003\\000\\001\\000\\000^\\000S\\011" {
  cltt 4 2026/01/01 10:00:00;
  iaprefix 2001:db8:100::/56 { binding state active; max-life 3600; ends 4 2026/01/01 11:00:00; }
}`,
      want: [
        ['198.51.100.7', '2026-01-01T10:00:00.000Z', '2026-01-01T22:00:00.000Z', 'circuit-id:00:04:00:01:00:03'],
        ['198.51.100.8', '2026-01-01T08:00:00.000Z', '2026-01-01T09:15:00.000Z', 'mac:00:00:5e:00:53:08'],
      ] as Expected[],
    },
    {
      name: 'lease6 with starts and max-life but no ends (older dhcpd), DUID-LL',
      text: `ia-na "\\001\\000\\000\\000\\000\\003\\000\\001\\000\\000^\\000S\\011" {
  cltt 4 2026/01/01 09:59:00;
  iaaddr 2001:db8::9 {
    starts 1767261600;
    binding state active;
    preferred-life 1800;
    max-life 3600;
  }
}`,
      want: [['2001:db8::9', '2026-01-01T10:00:00.000Z', '2026-01-01T11:00:00.000Z', 'mac:00:00:5e:00:53:09']] as Expected[],
    },
  ];
  for (const c of manPage) {
    it(`(from the manual) ${c.name}`, () => assert.deepEqual(tuples(isc.parse(c.text)), c.want));
  }

  const malformed: [name: string, text: string, line: number, pattern: RegExp][] = [
    ['a bad address', 'lease 10.0.0.300 {\n}', 1, /expected lease IPV4-ADDRESS \{, found "lease 10\.0\.0\.300"/],
    ['a missing closing brace', 'lease 10.0.0.1 {\n  starts 4 2026/01/01 10:00:00;\n', 2, /expected "\}" to close the block opened at line 1/],
    ['a missing semicolon', 'lease 10.0.0.1 {\n  starts 4 2026/01/01 10:00:00\n  binding state active;\n}', 2, /expected ";" at the end of the line after "starts 4 2026\/01\/01 10:00:00", found "binding"/],
    ['an impossible date', 'lease 10.0.0.1 {\n  starts 4 2026/02/30 10:00:00;\n}', 2, /expected a date after starts .*found "4 2026\/02\/30 10:00:00"/],
    ['a local time without the epoch keyword', 'lease 10.0.0.1 {\n  ends 2026-01-01;\n}', 2, /expected a date after ends/],
    ['an unknown binding state', 'lease 10.0.0.1 {\n  starts 4 2026/01/01 10:00:00;\n  binding state bound;\n}', 3, /expected binding state active\|free/],
    ['a bad MAC', 'lease 10.0.0.1 {\n  hardware ethernet 00:11:22:33:44;\n}', 2, /expected an Ethernet MAC address/],
    ['an active lease without starts', '\n\nlease 10.0.0.1 {\n  binding state active;\n  ends never;\n}', 3, /expected a starts time in the active lease of 10\.0\.0\.1/],
    ['an active lease without ends', 'lease 10.0.0.1 {\n  starts 4 2026/01/01 10:00:00;\n  binding state active;\n}', 1, /expected an ends time \(or "ends never"\) in the active lease of 10\.0\.0\.1/],
    ['an unterminated string', 'lease 10.0.0.1 {\n  client-hostname "abc;\n}\n', 2, /expected a closing " for the string/],
    ['a stray closing brace', 'lease 10.0.0.1 {\n  binding state free;\n}\n}\n', 4, /expected a statement \(no block is open here\), found "\}"/],
    ['an unknown top-level statement', 'lese 10.0.0.1 {\n}', 1, /expected lease ADDR .*found "lese 10\.0\.0\.1"/],
    ['an IPv4 address in iaaddr', 'ia-na "abcdefgh" {\n  iaaddr 10.0.0.1 { binding state active; }\n}', 2, /expected iaaddr IPV6-ADDRESS/],
    ['a bad max-life', 'ia-na "abcdefgh" {\n  cltt 4 2026/01/01 10:00:00;\n  iaaddr 2001:db8::1 {\n    max-life forever;\n  }\n}', 4, /expected a number of seconds after max-life/],
  ];
  for (const [name, text, line, pattern] of malformed) {
    it(`refuses ${name} (line ${line})`, () => throwsAt(isc.parse, text, line, pattern));
  }

  it('random truncations and corruptions of the real files give records or a LeaseFileError, never another exception', () => {
    fuzz(isc.parse, fixture('isc-dhcpd.leases'));
    fuzz(isc.parse, fixture('isc-dhcpd6.leases'));
  });
});

describe('kea-csv', () => {
  it('reads kea-dhcp4 2.2 memfile rows: a renewal, option 82 kept in user_context, a release (deleted row)', () => {
    assert.deepEqual(tuples(kea.parse(fixture('kea-leases4.csv'))), [
      ['10.77.0.100', '2026-11-22T19:29:55.000Z', '2026-11-22T19:30:01.000Z', 'mac:52:54:00:0a:00:01'],
      ['10.77.0.101', '2026-11-22T19:29:57.000Z', '2026-11-22T19:39:57.000Z', 'circuit-id:eth0/1/7'],
      // released: Kea's deletion row (valid_lifetime 0) carries no release time, so the granted end stays
      ['10.77.0.102', '2026-11-22T19:29:57.000Z', '2026-11-22T19:39:57.000Z', 'mac:52:54:00:0a:00:03'],
      ['10.77.0.100', '2026-11-22T19:30:01.000Z', '2026-11-22T19:40:01.000Z', 'mac:52:54:00:0a:00:01'],
    ]);
  });

  it('reads kea-dhcp6 rows by their own header (duid, lease_type, hwaddr …)', () => {
    assert.deepEqual(tuples(kea.parse(fixture('kea-leases6.csv'))), [
      ['2001:db8:77::100', '2026-11-22T19:30:09.000Z', '2026-11-22T19:40:09.000Z', 'mac:52:54:00:0a:00:01'],
      ['2001:db8:77::101', '2026-11-22T19:30:11.000Z', '2026-11-22T19:40:11.000Z', 'mac:52:54:00:0a:00:02'],
    ]);
  });

  const H4 = 'address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context,pool_id';
  const H6 = 'address,duid,valid_lifetime,expire,subnet_id,pref_lifetime,lease_type,iaid,prefix_len,fqdn_fwd,fqdn_rev,hostname,hwaddr,state,user_context,hwtype,hwaddr_source,pool_id';
  // Written from the Kea ARM (memfile lease file format), not by Kea here.
  const manual = [
    {
      name: 'a later header with pool_id, expired-reclaimed ends the lease at its expire, declined holds nothing and ends the running one',
      text: `${H4}
192.0.2.1,00:00:5e:00:53:01,,3600,1767229200,1,0,0,host&#x2ca,0,,0
192.0.2.1,00:00:5e:00:53:01,,3600,1767229200,1,0,0,,2,,0
192.0.2.2,00:00:5e:00:53:02,,3600,1767229200,1,0,0,,0,,0
192.0.2.2,,,86400,1767313800,1,0,0,,1,,0
`,
      want: [
        ['192.0.2.1', '2026-01-01T00:00:00.000Z', '2026-01-01T01:00:00.000Z', 'mac:00:00:5e:00:53:01'],
        ['192.0.2.2', '2026-01-01T00:00:00.000Z', '2026-01-01T00:30:00.000Z', 'mac:00:00:5e:00:53:02'],
      ] as Expected[],
    },
    {
      name: 'infinite lifetime, the later relay-agent-info object with &#x2c, an unprintable circuit-id as hex',
      text: `${H4}
192.0.2.3,00:00:5e:00:53:03,,4294967295,6062192895,1,0,0,,0,{ "ISC": { "relay-agent-info": { "sub-options": "0x0106706F72742D31020401020304"&#x2c "remote-id": "01020304" } } },0
192.0.2.4,00:00:5e:00:53:04,,600,1767225600,1,0,0,,0,{ "ISC": { "relay-agent-info": "0x01030001FF" } },0
`,
      want: [
        ['192.0.2.3', '2026-01-01T00:00:00.000Z', null, 'circuit-id:port-1'],
        ['192.0.2.4', '2025-12-31T23:50:00.000Z', '2026-01-01T00:00:00.000Z', 'circuit-id:00:01:ff'],
      ] as Expected[],
    },
    {
      name: 'lease6: a delegated prefix is skipped, a row without hwaddr takes the MAC from a DUID-LL',
      text: `${H6}
2001:db8:1::,00:03:00:01:00:00:5e:00:53:09,3600,1767229200,1,1800,2,7,56,0,0,,,0,,0,0,0
2001:db8::9,00:03:00:01:00:00:5e:00:53:09,3600,1767229200,1,1800,0,7,128,0,0,,,0,,0,0,0
`,
      want: [['2001:db8::9', '2026-01-01T00:00:00.000Z', '2026-01-01T01:00:00.000Z', 'mac:00:00:5e:00:53:09']] as Expected[],
    },
  ];
  for (const c of manual) {
    it(`(from the manual) ${c.name}`, () => assert.deepEqual(tuples(kea.parse(c.text)), c.want));
  }

  it('an empty file holds no leases', () => assert.deepEqual(kea.parse(''), []));

  it('a last row still being written (no newline yet) is left for the next read, even cut inside a number', () => {
    const full = fixture('kea-leases4.csv');
    const lastRow = full.lastIndexOf('10.77.0.100,');
    // The renewal row cut inside its expire: as if it read 1795376 s after the epoch.
    const cut = full.slice(0, full.indexOf(',600,', lastRow) + ',600,1795376'.length) + full.slice(full.indexOf(',1,0,0,', lastRow)).replace(/\n[^]*$/, '');
    assert.ok(!cut.endsWith('\n'));
    const before = tuples(kea.parse(full.slice(0, lastRow)));
    assert.deepEqual(tuples(kea.parse(cut)), before);
    assert.equal(tuples(kea.parse(full)).length, before.length + 1);
  });

  const malformed: [name: string, text: string, line: number, pattern: RegExp][] = [
    ['rows without a header', '192.0.2.1,00:00:5e:00:53:01,,3600,1767229200,1,0,0,,0,', 1, /expected the header row/],
    ['a header without expire', 'address,hwaddr,valid_lifetime\n', 1, /expected a header with the column expire/],
    ['a short row', `${H4}\n192.0.2.1,00:00:5e:00:53:01,,3600\n`, 2, /expected 12 columns as in the header, found "4 columns"/],
    ['a bad address', `${H4}\n\n192.0.2.256,00:00:5e:00:53:01,,3600,1767229200,1,0,0,,0,,0\n`, 3, /expected an IP address in column address, found "192\.0\.2\.256"/],
    ['a negative lifetime', `${H4}\n192.0.2.1,00:00:5e:00:53:01,,-5,1767229200,1,0,0,,0,,0\n`, 2, /expected valid_lifetime as a whole number of seconds/],
    ['an unknown state', `${H4}\n192.0.2.1,00:00:5e:00:53:01,,3600,1767229200,1,0,0,,3,,0\n`, 2, /expected state 0 \(default\), 1 \(declined\) or 2/],
    ['a bad hwaddr', `${H4}\n192.0.2.1,00:00:5e:00:53,,3600,1767229200,1,0,0,,0,,0\n`, 2, /expected hwaddr as an Ethernet MAC/],
    ['user_context that is not JSON', `${H4}\n192.0.2.1,00:00:5e:00:53:01,,3600,1767229200,1,0,0,,0,{ "ISC": ,0\n`, 2, /expected user_context as JSON/],
  ];
  for (const [name, text, line, pattern] of malformed) {
    it(`refuses ${name} (line ${line})`, () => throwsAt(kea.parse, text, line, pattern));
  }

  it('random truncations and corruptions of the real files give records or a LeaseFileError, never another exception', () => {
    fuzz(kea.parse, fixture('kea-leases4.csv'));
    fuzz(kea.parse, fixture('kea-leases6.csv'));
  });
});

describe('radius-detail', () => {
  it('reads the detail file freeradius wrote for radclient: Start/Interim/Stop, Acct-Delay-Time, a Stop without Start, a lost Stop', () => {
    assert.deepEqual(tuples(radius.parse(fixture('radius-detail'))), [
      ['10.0.0.5', '2026-11-22T19:36:40.000Z', '2026-11-22T19:36:43.000Z', 'radius-user:alice@isp.example'],
      // bob's Start arrived at 19:36:41 after 5 s of retries; no Stop: dave's Start on 10.0.0.6 ends it
      ['10.0.0.6', '2026-11-22T19:36:36.000Z', '2026-11-22T19:36:46.000Z', 'radius-user:bob'],
      // carol: only the Stop (Acct-Session-Time 3600); her /64 and /56 prefixes are not single addresses
      ['10.0.0.7', '2026-11-22T18:36:44.000Z', '2026-11-22T19:36:44.000Z', 'radius-user:carol'],
      ['10.0.0.6', '2026-11-22T19:36:46.000Z', null, 'radius-user:dave'],
      ['2001:db8:6::6', '2026-11-22T19:36:46.000Z', null, 'radius-user:dave'],
    ]);
  });

  const rec = (date: string, attrs: string[]) => `${date}\n${attrs.map((a) => `\t${a}`).join('\n')}\n\n`;
  // Written from the FreeRADIUS detail module and RFC 2866/2869, not by freeradius here.
  const manual = [
    {
      name: 'Acct-Delay-Time subtracted from Timestamp when there is no Event-Timestamp; an Event-Timestamp as epoch; a NAS reboot (Accounting-On) ends its open sessions',
      text:
        rec('Thu Jan  1 10:00:09 2026', ['Acct-Status-Type = Start', 'User-Name = "u1"', 'Framed-IP-Address = 192.0.2.1', 'Acct-Session-Id = "1"', 'NAS-IP-Address = 192.0.2.250', 'Acct-Delay-Time = 9', 'Timestamp = 1767261609']) +
        rec('Thu Jan  1 10:05:00 2026', ['Acct-Status-Type = Start', 'User-Name = "u2"', 'Framed-IP-Address = 192.0.2.2', 'Acct-Session-Id = "2"', 'NAS-IP-Address = 192.0.2.251', 'Event-Timestamp = 1767261900', 'Timestamp = 1767261901']) +
        rec('Thu Jan  1 11:00:00 2026', ['Acct-Status-Type = Accounting-On', 'NAS-IP-Address = 192.0.2.250', 'Timestamp = 1767265200']),
      want: [
        ['192.0.2.1', '2026-01-01T10:00:00.000Z', '2026-01-01T11:00:00.000Z', 'radius-user:u1'],
        ['192.0.2.2', '2026-01-01T10:05:00.000Z', null, 'radius-user:u2'],
      ] as Expected[],
    },
    {
      name: 'an Event-Timestamp in CET is ambiguous (arrival time used), "+0100" is not; no User-Name: the MAC in Calling-Station-Id; a /128 prefix; an Interim-Update opens a session at time − session time',
      text:
        rec('Thu Jan  1 11:00:02 2026', ['Acct-Status-Type = Start', 'Calling-Station-Id = "00-00-5E-00-53-01"', 'Framed-IP-Address = 192.0.2.3', 'Acct-Session-Id = "3"', 'Event-Timestamp = "Jan  1 2026 11:00:00 CET"', 'Timestamp = 1767265202']) +
        rec('Thu Jan  1 11:00:02 2026', ['Acct-Status-Type = Start', 'User-Name = "Bob \\"the\\" \\\\ x"', 'Delegated-IPv6-Prefix = 2001:db8::4/128', 'Acct-Session-Id = "4"', 'Event-Timestamp = "Jan  1 2026 11:00:00 +0100"', 'Timestamp = 1767265202']) +
        rec('Thu Jan  1 12:00:00 2026', ['Acct-Status-Type = Interim-Update', 'User-Name = "u5"', 'Framed-IP-Address = 192.0.2.5', 'Acct-Session-Id = "5"', 'Acct-Session-Time = 600', 'Timestamp = 1767268800']),
      want: [
        ['192.0.2.3', '2026-01-01T11:00:02.000Z', null, 'mac:00:00:5e:00:53:01'],
        ['2001:db8::4', '2026-01-01T10:00:00.000Z', null, 'radius-user:Bob "the" \\ x'],
        ['192.0.2.5', '2026-01-01T11:50:00.000Z', null, 'radius-user:u5'],
      ] as Expected[],
    },
  ];
  for (const c of manual) {
    it(`(from the manual) ${c.name}`, () => assert.deepEqual(tuples(radius.parse(c.text)), c.want));
  }

  it('authentication records and other packet types give no leases', () => {
    const text = rec('Thu Jan  1 10:00:00 2026', ['User-Name = "x"', 'Framed-IP-Address = 192.0.2.9', 'Timestamp = 1767261600']) + rec('Thu Jan  1 10:00:00 2026', ['Acct-Status-Type = Failed', 'Timestamp = 1767261600']);
    assert.deepEqual(radius.parse(text), []);
  });

  const D = 'Thu Jan  1 10:00:00 2026';
  const malformed: [name: string, text: string, line: number, pattern: RegExp][] = [
    ['attributes without a date line', '\tAcct-Status-Type = Start\n', 1, /expected a date line before the attributes/],
    ['a bad date line', '2026-01-01 10:00:00\n\tAcct-Status-Type = Start\n', 1, /expected a date line starting a record/],
    ['a line that is not Attr = value', `${D}\n\tAcct-Status-Type = Start\n\tgarbage\n`, 3, /expected an "Attribute = value" line, found "garbage"/],
    ['an unterminated string', `${D}\n\tAcct-Status-Type = Start\n\tUser-Name = "alice\n`, 3, /expected a closing " at the end of the value/],
    ['a packet without any time', `\n${D}\n\tAcct-Status-Type = Start\n\tFramed-IP-Address = 192.0.2.1\n`, 2, /expected a Timestamp = EPOCH \(or Event-Timestamp\) attribute/],
    ['an IPv6 address in Framed-IP-Address', `${D}\n\tAcct-Status-Type = Start\n\tFramed-IP-Address = 2001:db8::1\n\tTimestamp = 1767261600\n`, 3, /expected an IPv4 address in Framed-IP-Address/],
    ['a bad Acct-Delay-Time', `${D}\n\tAcct-Status-Type = Start\n\tAcct-Delay-Time = -3\n\tTimestamp = 1767261600\n`, 3, /expected Acct-Delay-Time as a whole number of seconds/],
    ['a bad Event-Timestamp', `${D}\n\tAcct-Status-Type = Start\n\tEvent-Timestamp = "yesterday"\n`, 3, /expected Event-Timestamp as epoch seconds/],
    ['a bad delegated prefix', `${D}\n\tAcct-Status-Type = Start\n\tDelegated-IPv6-Prefix = 2001:db8::/129\n\tTimestamp = 1767261600\n`, 3, /expected an IPv6 prefix in Delegated-IPv6-Prefix/],
    ['a User-Name with a control character', `${D}\n\tAcct-Status-Type = Start\n\tUser-Name = "a\\001b"\n\tTimestamp = 1767261600\n`, 3, /expected a User-Name of printable characters/],
  ];
  for (const [name, text, line, pattern] of malformed) {
    // Each ends with the blank line that completes a record (an unfinished last record is left for later).
    it(`refuses ${name} (line ${line})`, () => throwsAt(radius.parse, `${text}\n`, line, pattern));
  }

  it('a last record still being written (no blank line yet) is left for the next read, even cut inside a number', () => {
    const full = fixture('radius-detail');
    const cut = full.slice(0, full.lastIndexOf('Timestamp = 17953') + 'Timestamp = 17953'.length);
    const before = tuples(radius.parse(full.slice(0, full.lastIndexOf('Sun Nov 22'))));
    assert.equal(before.length, 3);
    assert.deepEqual(tuples(radius.parse(cut)), before);
    assert.deepEqual(tuples(radius.parse(`${cut}76206\n`)), tuples(radius.parse(cut)), 'complete line, but no blank line yet');
    assert.deepEqual(tuples(radius.parse(`${cut}76206\n\n`)), tuples(radius.parse(full)));
  });

  it('random truncations and corruptions of the real file give records or a LeaseFileError, never another exception', () => {
    fuzz(radius.parse, fixture('radius-detail'));
  });
});
