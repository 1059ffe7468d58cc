/*
 * desk/aliases — which address a recipient of the abuse desk names.
 *
 * The desk takes mail for one alias per IP address under its abuse domain
 * (R8): `192.0.2.7@abuse.example.net` or `192-0-2-7@abuse.example.net` for
 * IPv4, `2001-db8--1@abuse.example.net` for IPv6 (a `-` for each `:`), and
 * the plain `abuse@abuse.example.net` mailbox, whose reports name the IP
 * themselves. Pure: no DNS, no store.
 *
 * Trusts nothing: the recipient came from an SMTP client. Only the exact
 * shapes above are read, so nothing else can make the desk think an alias
 * names an address — no quotes, comments, source routes, %-hacks, +tags,
 * address literals in the domain, zone ids, IPv4 in other radixes or with
 * leading zeros (`010.0.0.1` is 8.0.0.1 to inet_aton and 10.0.0.1 to a
 * human: refused as ambiguous), embedded IPv4 in IPv6, or a domain that only
 * ends with the abuse domain.
 */
import ipaddr from 'ipaddr.js';

export type AliasTarget = { kind: 'ip'; ip: string; family: 4 | 6 } | { kind: 'abuse' };

/** The longest recipient we look at (RFC 5321 §4.5.3.1.3: 256 octets for a path). */
const MAX_RECIPIENT = 256;

const IPV4_DOTTED = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const IPV4_DASHED = /^(\d{1,3})-(\d{1,3})-(\d{1,3})-(\d{1,3})$/;
/** Hex groups and dashes only: IPv6 as the alias writes it. */
const IPV6_DASHED = /^[0-9a-f-]+$/;

/**
 * The IP or mailbox a recipient names under `abuseDomain`, or null for any
 * other recipient. The IP comes back in its canonical text form (IPv4
 * dotted-quad, IPv6 RFC 5952 compressed lower case).
 */
export function parseAlias(recipient: string, abuseDomain: string): AliasTarget | null {
  if (typeof recipient !== 'string' || recipient.length === 0 || recipient.length > MAX_RECIPIENT) return null;
  // SMTP paths may arrive with their angle brackets; nothing else around them.
  const bare = recipient.startsWith('<') && recipient.endsWith('>') ? recipient.slice(1, -1) : recipient;
  const at = bare.indexOf('@');
  if (at <= 0 || at !== bare.lastIndexOf('@')) return null;
  const local = bare.slice(0, at);
  const domain = bare.slice(at + 1);
  const wanted = abuseDomain.toLowerCase().replace(/\.$/, '');
  if (!wanted || domain.toLowerCase().replace(/\.$/, '') !== wanted) return null;
  // The domain itself must be a plain name (no literal, no trailing junk): compared exactly above.
  if (local.toLowerCase() === 'abuse') return { kind: 'abuse' };
  const v4 = IPV4_DOTTED.exec(local) ?? IPV4_DASHED.exec(local);
  if (v4) {
    const octets = v4.slice(1, 5);
    if (octets.some((o) => (o.length > 1 && o.startsWith('0')) || Number(o) > 255)) return null;
    return { kind: 'ip', ip: octets.map(Number).join('.'), family: 4 };
  }
  const lower = local.toLowerCase();
  if (!IPV6_DASHED.test(lower) || !lower.includes('-')) return null;
  const text = lower.replace(/-/g, ':');
  // At most one '::', groups of 1–4 hex digits: ipaddr.js checks the rest.
  if (!ipaddr.IPv6.isValid(text)) return null;
  if (text.split(':').some((g) => g.length > 4)) return null;
  const parsed = ipaddr.IPv6.parse(text);
  return { kind: 'ip', ip: parsed.toRFC5952String(), family: 6 };
}

/** The alias of an IP (dashed form, as the desk publishes it). */
export function aliasFor(ip: string, abuseDomain: string): string {
  const addr = ipaddr.parse(ip);
  const text = addr.kind() === 'ipv6' ? (addr as ipaddr.IPv6).toRFC5952String() : addr.toString();
  return `${text.replace(/[.:]/g, '-')}@${abuseDomain.toLowerCase()}`;
}
