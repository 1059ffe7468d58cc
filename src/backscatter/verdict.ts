/*
 * backscatter/verdict — is a bounce or notice about mail we really sent?
 *
 *   ours         the quoted original carries our Message-ID stamp, or one of
 *                our relays in its Received chain, or the bounce came to a
 *                BATV tag that verifies
 *   backscatter  a bounce or notice about mail we did not send: the quoted
 *                original lacks every mark of ours, or it came to an untagged
 *                or badly tagged address of a domain whose mail we all sign
 *   unknown      nothing to decide on (no quoted original, no BATV domain)
 *
 * The Message-ID stamp. Rewriting a message's own Message-ID would break the
 * DKIM signatures that cover it (RFC 6376 5.4.1 recommends signing it), so
 * Backstop binds the existing Message-ID with an extra header field,
 * `X-Backstop-Stamp: bs1.<hex>` = HMAC-SHA256(key, "bs1" Message-ID), that a
 * bounce quoting our headers (RFC 3464 2.1/RFC 6522 text/rfc822-headers or
 * the whole message) brings back; a message with no Message-ID gets one whose
 * local part carries the same HMAC (RFC 5322 3.6.4 lets the relay add it;
 * RFC 5321 6.4). Both are keyed, so a worm cannot forge "ours".
 *
 * Trusts: the keys and the host names it is given. Treats everything in the
 * classification as peer text: the Reporting-MTA, the bounce's own headers and
 * its From never decide "ours" (a forger writes our host name there freely).
 * Our relay's name in the quoted Received chain does count, as the issue asks;
 * a forger can write that line too, so `trustReceivedChain: false` turns it
 * off where the stamp and BATV cover all outgoing mail.
 * Pure: no clock, no I/O.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { verifyPrvs, type BatvKeyring } from './batv.ts';
import type { Classification } from './classify.ts';

export const STAMP_HEADER = 'X-Backstop-Stamp';
const STAMP_VERSION = 'bs1';
const STAMP_HEX = 20; // 80 bits: enough against guessing, short enough for a local part

export type BackscatterVerdict = 'ours' | 'backscatter' | 'unknown';

function mac(key: Buffer, text: string): string {
  return createHmac('sha256', key).update(`${STAMP_VERSION}${text}`, 'utf8').digest('hex').slice(0, STAMP_HEX);
}

function eq(a: string, b: string): boolean {
  const x = Buffer.from(a.toLowerCase(), 'latin1');
  const y = Buffer.from(b.toLowerCase(), 'latin1');
  return x.length === y.length && timingSafeEqual(x, y);
}

/** The Message-ID as compared: angle brackets and surrounding space removed (RFC 5322 3.6.4 msg-id). */
export function normalizeMessageId(id: string): string {
  const m = /<([^<>\s]{1,250})>/.exec(id);
  return (m ? m[1]! : id.trim()).slice(0, 250);
}

/** The value of X-Backstop-Stamp for a message whose Message-ID is `messageId`. */
export function messageIdStamp(messageId: string, key: Buffer): string {
  return `${STAMP_VERSION}.${mac(key, normalizeMessageId(messageId))}`;
}

/** A fresh Message-ID for mail that has none: `<bs1.RANDOM.HMAC@host>`. `random` is for tests. */
export function stampedMessageId(host: string, key: Buffer, random: string = randomBytes(9).toString('base64url')): string {
  const local = `${STAMP_VERSION}.${random}`;
  return `<${local}.${mac(key, local)}@${host}>`;
}

/** True when `messageId` is one stampedMessageId made with one of `keys`. */
export function isStampedMessageId(messageId: string, keys: Buffer[]): boolean {
  const m = /^(bs1\.[A-Za-z0-9_-]{1,40})\.([0-9a-f]{20})@/i.exec(normalizeMessageId(messageId));
  return m !== null && keys.some((k) => eq(mac(k, m[1]!), m[2]!));
}

/** True when `stamp` (the X-Backstop-Stamp value) binds `messageId` under one of `keys`. */
export function verifyMessageIdStamp(messageId: string, stamp: string, keys: Buffer[]): boolean {
  const m = /^\s*bs1\.([0-9a-f]{20})\s*$/i.exec(stamp);
  if (!m) return false;
  const id = normalizeMessageId(messageId);
  return keys.some((k) => eq(mac(k, id), m[1]!));
}

export interface VerdictContext {
  /** Stamp keys, current first; previous keys keep verifying after a rotation. */
  stampKeys: Buffer[];
  /** Host names our relays write in `by` of their Received lines (lower-case compare). */
  ourRelays: string[];
  trustReceivedChain?: boolean;
  /** BATV: the envelope recipients of the bounce, our signing domains, the keyring, the time. */
  batv?: { rcpts: string[]; domains: string[]; ring: BatvKeyring; now: number };
}

export interface VerdictResult {
  verdict: BackscatterVerdict;
  reasons: string[];
}

const BOUNCE_CLASSES = new Set(['dsn', 'delay', 'av-notice', 'challenge', 'auto-reply', 'read-receipt']);

function domainOf(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1).toLowerCase();
}

/** `by HOST` of a Received field (RFC 5321 4.4 Time-stamp-line). */
function receivedBy(line: string): string | null {
  return /\bby\s+([A-Za-z0-9.-]{1,253})/i.exec(line)?.[1]?.toLowerCase().replace(/\.$/, '') ?? null;
}

/** The verdict on a classified message in the given context. Normal mail is never backscatter. */
export function bounceVerdict(c: Classification, ctx: VerdictContext): VerdictResult {
  const reasons: string[] = [];
  if (!BOUNCE_CLASSES.has(c.class)) return { verdict: 'unknown', reasons: ['not a bounce or notice'] };
  const o = c.original;
  // 1. Cryptographic marks first: they cannot be forged without our keys.
  if (o?.messageId && ctx.stampKeys.length > 0) {
    if (isStampedMessageId(o.messageId, ctx.stampKeys)) return { verdict: 'ours', reasons: ['quoted Message-ID is one we generated (HMAC verifies)'] };
    const stamp = o.fields[STAMP_HEADER.toLowerCase()];
    if (stamp && verifyMessageIdStamp(o.messageId, stamp, ctx.stampKeys)) return { verdict: 'ours', reasons: [`quoted ${STAMP_HEADER} binds its Message-ID (HMAC verifies)`] };
    if (stamp) reasons.push(`quoted ${STAMP_HEADER} does not verify`);
  }
  let batvSaysNotOurs = false;
  if (ctx.batv) {
    const domains = new Set(ctx.batv.domains.map((d) => d.toLowerCase()));
    for (const rcpt of ctx.batv.rcpts) {
      if (!domains.has(domainOf(rcpt))) continue;
      const check = verifyPrvs(rcpt, ctx.batv.ring, ctx.batv.now);
      if (check.kind === 'valid') return { verdict: 'ours', reasons: ['sent to a valid BATV tag'] };
      batvSaysNotOurs = true;
      reasons.push(check.kind === 'untagged' ? 'sent to an untagged address of a BATV domain' : `BATV tag ${check.kind}`);
    }
  }
  // 2. Our relay in the quoted original's Received chain (the rule; see header).
  if (o && ctx.trustReceivedChain !== false && ctx.ourRelays.length > 0) {
    const ours = new Set(ctx.ourRelays.map((h) => h.toLowerCase().replace(/\.$/, '')));
    if (o.received.some((r) => { const by = receivedBy(r); return by !== null && ours.has(by); })) {
      return { verdict: 'ours', reasons: [...reasons, 'one of our relays is in the quoted Received chain'] };
    }
  }
  if (batvSaysNotOurs) return { verdict: 'backscatter', reasons };
  // 3. A quoted original with none of our marks: somebody else's mail in our
  // name — but only if we know our marks at all.
  if (ctx.stampKeys.length === 0 && ctx.ourRelays.length === 0) {
    reasons.push('no stamp key or relay name configured: cannot tell our mail');
    return { verdict: 'unknown', reasons };
  }
  if (o && (o.messageId || o.received.length > 0)) {
    reasons.push('the quoted original has no mark of ours (stamp, relay)');
    return { verdict: 'backscatter', reasons };
  }
  reasons.push('no quoted original to judge');
  return { verdict: 'unknown', reasons };
}
