/*
 * edge/xforward — the XFORWARD command (Postfix XFORWARD_README), parsed and
 * judged. Pure.
 *
 * An MTA in front of Backstop (Postfix with `smtpd_proxy_filter` pointing
 * here) tells us who its client really was: NAME, ADDR, PORT, PROTO, HELO,
 * IDENT, SOURCE. Only a peer listed in `smtp.trustXforwardFrom` may say so;
 * the decision is the caller's (edge/smtp-server-ext), this module only reads
 * the words.
 *
 * Trusts: nothing. Even a trusted peer relays what its own client typed (the
 * HELO, the PTR name): every value is xtext-decoded (RFC 3461 §4), checked
 * and cleaned the way Postfix's smtpd does it (xforward_cmd in smtpd.c):
 * a malformed ADDR or PORT refuses the whole command (501 5.5.4) so no half
 * of it is applied; a NAME that is no hostname becomes unknown; HELO, PROTO
 * and IDENT lose their control characters and are truncated. The values
 * `[UNAVAILABLE]` and `[TEMPUNAVAIL]` mean "not known" (temporarily, for
 * TEMPUNAVAIL: a DNS failure) and are kept as such, never as text.
 *
 * Must never: let a value reach a log, header or reply uncleaned, or apply a
 * command that failed to parse.
 */
import { isIP } from 'node:net';
import { cleanText } from '../obs/clean.ts';

export const XFORWARD_ATTRIBUTES = ['NAME', 'ADDR', 'PORT', 'PROTO', 'HELO', 'IDENT', 'SOURCE'] as const;
export type XforwardAttribute = (typeof XFORWARD_ATTRIBUTES)[number];

/** What the forwarded client is known to be; `null` is "[UNAVAILABLE]", 'tempunavail' is "[TEMPUNAVAIL]". */
export interface Forwarded {
  name?: string | null | 'tempunavail';
  addr?: string | null;
  port?: number | null;
  proto?: string | null;
  helo?: string | null;
  ident?: string | null;
  source?: 'LOCAL' | 'REMOTE' | null;
}

export type XforwardParse = { ok: true; attrs: Forwarded } | { ok: false; code: number; message: string };

/** The EHLO keyword line a trusted peer is offered. */
export const XFORWARD_EHLO = `XFORWARD ${XFORWARD_ATTRIBUTES.join(' ')}`;

const HOSTNAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

/** RFC 3461 §4 xtext: "+XX" is the byte 0xXX; a "+" not followed by two hex digits is malformed. */
export function decodeXtext(value: string): string | null {
  if (/\+(?![0-9A-F]{2})/i.test(value)) return null;
  return value.replace(/\+([0-9A-F]{2})/gi, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

function bad(what: string): XforwardParse {
  return { ok: false, code: 501, message: `5.5.4 Bad XFORWARD ${what} syntax` };
}

/** A printable token: controls become "?", spaces "_", and it is cut at max. */
function printable(value: string, max: number): string {
  return cleanText(value, max).replace(/\s/g, '_');
}

/**
 * Parses the words after "XFORWARD". Attributes repeat the later wins, as in
 * Postfix; an empty command or an unknown attribute is 501 5.5.4.
 */
export function parseXforward(args: string): XforwardParse {
  const words = args.trim().split(/\s+/).filter(Boolean);
  if (words.length === 0) return { ok: false, code: 501, message: '5.5.4 Syntax: XFORWARD attribute=value...' };
  const attrs: Forwarded = {};
  for (const word of words) {
    const eq = word.indexOf('=');
    const key = (eq > 0 ? word.slice(0, eq) : word).toUpperCase();
    if (eq <= 0 || !(XFORWARD_ATTRIBUTES as readonly string[]).includes(key)) {
      return { ok: false, code: 501, message: `5.5.4 Bad XFORWARD attribute name: ${printable(key, 20)}` };
    }
    const value = decodeXtext(word.slice(eq + 1));
    if (value === null) return bad('attribute value');
    const upper = value.toUpperCase();
    const unavailable = upper === '[UNAVAILABLE]';
    const temp = upper === '[TEMPUNAVAIL]';
    switch (key as XforwardAttribute) {
      case 'NAME': {
        const name = value.toLowerCase().replace(/\.$/, '');
        attrs.name = unavailable ? null : temp ? 'tempunavail' : HOSTNAME.test(name) ? name : null;
        break;
      }
      case 'ADDR': {
        if (unavailable || temp) {
          attrs.addr = null;
          break;
        }
        const addr = value.replace(/^ipv6:/i, '');
        if (!isIP(addr)) return bad('ADDR');
        attrs.addr = addr.toLowerCase();
        break;
      }
      case 'PORT':
        if (unavailable || temp) attrs.port = null;
        else if (/^\d{1,5}$/.test(value) && Number(value) <= 65535) attrs.port = Number(value);
        else return bad('PORT');
        break;
      case 'PROTO':
        if (unavailable || temp) attrs.proto = null;
        else if (value.length > 64) return bad('PROTO');
        else attrs.proto = printable(value, 64);
        break;
      case 'HELO':
        attrs.helo = unavailable || temp ? null : printable(value, 255);
        break;
      case 'IDENT':
        attrs.ident = unavailable || temp ? null : printable(value, 100);
        break;
      case 'SOURCE':
        attrs.source = unavailable || temp ? null : upper === 'LOCAL' ? 'LOCAL' : 'REMOTE';
        break;
    }
  }
  return { ok: true, attrs };
}

/** Formats attributes for sending (our side of XFORWARD/XCLIENT): xtext-encoded, unknown as [UNAVAILABLE]. */
export function encodeXtext(value: string): string {
  return value.replace(/[^!-*,-<>-~]/g, (c) => `+${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
}

/*
 * The other direction: Backstop in front of an MTA tells it who the client
 * was (Postfix XCLIENT_README, XFORWARD_README), with the attributes that MTA
 * offered in its EHLO line and no others.
 */

/** The client we pass on; values are already ours (edge/client cleaned them). */
export interface ClientToForward {
  addr: string;
  port: number | null;
  name: string | null;
  helo: string | null;
  proto: string | null;
  ident?: string | null;
  source: 'LOCAL' | 'REMOTE';
}

/** RFC 5321 §4.5.3.1.4: a command line is at most 512 octets with its CRLF. */
const MAX_COMMAND = 510;

function attributeValues(c: ClientToForward, xclient: boolean): [string, string][] {
  const unavailable = '[UNAVAILABLE]';
  const addr = isIP(c.addr) === 6 ? `IPV6:${c.addr}` : c.addr;
  // XCLIENT's PROTO is SMTP or ESMTP only (XCLIENT_README); XFORWARD takes the protocol as it was.
  const proto = c.proto ? (xclient ? (/^E?SMTP$/i.test(c.proto) ? c.proto.toUpperCase() : /^ESMTP/i.test(c.proto) ? 'ESMTP' : 'SMTP') : c.proto) : null;
  const list: [string, string | null | undefined][] = [
    ['NAME', c.name],
    ['ADDR', addr],
    ['PORT', c.port ? String(c.port) : null],
    ['PROTO', proto],
    ['HELO', c.helo],
    ['IDENT', c.ident],
    ['SOURCE', c.source],
  ];
  return list.map(([k, v]) => [k, v ? encodeXtext(v) : unavailable]);
}

function offeredSet(offered: string): Set<string> {
  return new Set(offered.toUpperCase().split(/\s+/).filter(Boolean));
}

/** The XFORWARD commands for this client: the offered attributes, split over lines of at most 512 octets. */
export function xforwardCommands(c: ClientToForward, offered: string): string[] {
  const allowed = offeredSet(offered);
  const lines: string[] = [];
  let line = 'XFORWARD';
  for (const [k, v] of attributeValues(c, false)) {
    if (!allowed.has(k)) continue;
    const word = ` ${k}=${v}`;
    if ('XFORWARD'.length + word.length > MAX_COMMAND) continue;
    if (line.length + word.length > MAX_COMMAND) {
      lines.push(line);
      line = 'XFORWARD';
    }
    line += word;
  }
  if (line !== 'XFORWARD') lines.push(line);
  return lines;
}

/**
 * The one XCLIENT command (each XCLIENT restarts the session, so it is not
 * split): the offered attributes that fit, ADDR first. Null without ADDR.
 */
export function xclientCommand(c: ClientToForward, offered: string): string | null {
  const allowed = offeredSet(offered);
  if (!allowed.has('ADDR')) return null;
  const values = new Map(attributeValues(c, true));
  let line = 'XCLIENT';
  for (const k of ['ADDR', 'PORT', 'PROTO', 'NAME', 'HELO']) {
    // Postfix takes no [UNAVAILABLE] for PROTO (only SMTP or ESMTP): leave it out rather than be refused.
    if (!allowed.has(k) || (k === 'PROTO' && values.get(k) === '[UNAVAILABLE]')) continue;
    const word = ` ${k}=${values.get(k)}`;
    if (line.length + word.length <= MAX_COMMAND) line += word;
  }
  return line;
}
