/*
 * edge/client — who the client of an SMTP session is, for everything that
 * asks: the message record, our Received line, the ARF's Source-IP, the
 * backscatter shield, the desk's restriction of customers, relay policy, the
 * console and the trace. One function, clientOf(session), so no caller reads
 * session.remoteAddress and gets the proxy in front of us instead.
 *
 * Without XFORWARD that is the socket's peer. After an accepted XFORWARD
 * from a trusted peer (smtp.trustXforwardFrom; edge/smtp-server-ext checks
 * the peer and edge/xforward cleans the values) it is the client that peer
 * names, until the end of the mail transaction it was sent for (Postfix
 * forgets XFORWARD attributes at the end of each transaction too).
 *
 * Trusts: the socket address; XFORWARD values only as they were stored here,
 * already judged and cleaned. Must never: hand out an uncleaned value.
 */
import type { SMTPServerSession } from 'smtp-server';
import { cleanText } from '../obs/clean.ts';
import type { Forwarded } from './xforward.ts';

export interface EffectiveClient {
  ip: string;
  port: number;
  /** The client's own HELO (cleaned); '' when it sent none. */
  helo: string;
  /** A verified or forwarded host name, null when unknown. */
  hostname: string | null;
  /** The protocol the client spoke to the first MTA (XFORWARD PROTO), when told. */
  proto: string | null;
  ident: string | null;
  /** XFORWARD SOURCE: LOCAL is mail the peer made itself (its pickup, a release). */
  source: 'LOCAL' | 'REMOTE' | null;
  /** The socket's peer when it differs from ip: the proxy that forwarded the client. */
  via: string | null;
}

interface Stored {
  transaction: number;
  attrs: Forwarded;
}

const forwarded = new WeakMap<object, Stored>();

function transactionOf(session: SMTPServerSession): number {
  return (session as SMTPServerSession & { transaction?: number }).transaction ?? 0;
}

/**
 * Records accepted XFORWARD attributes for the session's current (or next)
 * transaction, merged with earlier XFORWARD commands of that transaction
 * (Postfix splits long ones in two).
 */
export function recordForwarded(session: SMTPServerSession, attrs: Forwarded): void {
  const tx = transactionOf(session);
  const earlier = forwarded.get(session);
  const base = earlier && earlier.transaction === tx ? earlier.attrs : {};
  forwarded.set(session, { transaction: tx, attrs: { ...base, ...attrs } });
}

/** The forwarded attributes in effect for this transaction, if any. */
export function forwardedOf(session: SMTPServerSession): Forwarded | null {
  const stored = forwarded.get(session);
  return stored && stored.transaction === transactionOf(session) ? stored.attrs : null;
}

/** An IPv4-mapped address (::ffff:192.0.2.7) as the IPv4 address it carries. */
function plain(ip: string): string {
  return ip.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '');
}

/** The effective client of this session: see the header. */
export function clientOf(session: SMTPServerSession): EffectiveClient {
  const peer = plain(session.remoteAddress);
  const f = forwardedOf(session);
  const ownHelo = cleanText(session.hostNameAppearsAs || '', 255);
  if (!f) return { ip: peer, port: session.remotePort, helo: ownHelo, hostname: null, proto: null, ident: null, source: null, via: null };
  // ADDR [UNAVAILABLE]: the peer does not know (mail it made itself); the peer is then the best answer there is.
  const ip = f.addr ? plain(f.addr) : peer;
  return {
    ip,
    port: f.addr ? (f.port ?? 0) : session.remotePort,
    helo: f.helo === undefined ? ownHelo : (f.helo ?? ''),
    hostname: typeof f.name === 'string' && f.name !== 'tempunavail' ? f.name : null,
    proto: f.proto ?? null,
    ident: f.ident ?? null,
    source: f.source ?? null,
    via: ip === peer ? null : peer,
  };
}
