/*
 * edge/relay — may this client send to this recipient? Pure.
 *
 * Mail for our domains is taken from anyone; mail for anywhere else only
 * from the relayFrom networks (the ISP's customers in smarthost mode).
 * Everything else is "Relay access denied": never an open relay.
 */
import ipaddr from 'ipaddr.js';

export type RelayDecision = 'local' | 'relay' | 'denied';

/** CIDRs parsed once; a bare address is its own /32 or /128. */
export type Networks = readonly [ipaddr.IPv4 | ipaddr.IPv6, number][];

export interface RelayPolicy {
  domains: ReadonlySet<string>;
  relayFrom: Networks;
}

export function compileNetworks(cidrs: readonly string[]): Networks {
  return cidrs.map((cidr) => (cidr.includes('/') ? ipaddr.parseCIDR(cidr) : ([ipaddr.parse(cidr), ipaddr.parse(cidr).kind() === 'ipv4' ? 32 : 128] as [ipaddr.IPv4 | ipaddr.IPv6, number])));
}

export function compileRelayPolicy(domains: readonly string[], relayFrom: readonly string[]): RelayPolicy {
  return { domains: new Set(domains.map((d) => d.toLowerCase())), relayFrom: compileNetworks(relayFrom) };
}

/** An IPv4-mapped IPv6 address (::ffff:192.0.2.7) is the IPv4 address it carries. */
export function normaliseIp(ip: string): ipaddr.IPv4 | ipaddr.IPv6 | null {
  if (!ipaddr.isValid(ip)) return null;
  const parsed = ipaddr.parse(ip);
  return parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress() ? (parsed as ipaddr.IPv6).toIPv4Address() : parsed;
}

export function inNetworks(ip: string, networks: Networks): boolean {
  const addr = normaliseIp(ip);
  if (!addr) return false;
  return networks.some(([range, bits]) => range.kind() === addr.kind() && addr.match(range, bits));
}

export function domainOf(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1).toLowerCase().replace(/\.$/, '');
}

export function relayDecision(policy: RelayPolicy, clientIp: string, rcpt: string): RelayDecision {
  if (policy.domains.has(domainOf(rcpt))) return 'local';
  return inNetworks(clientIp, policy.relayFrom) ? 'relay' : 'denied';
}
