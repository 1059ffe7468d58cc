/*
 * backscatter/batv — Bounce Address Tag Validation, the `prvs` scheme of
 * draft-levine-smtp-batv-01 (section 4), byte for byte as Exim's
 * `${prvs{address}{key}{keynum}}` and `${prvscheck…}` do it:
 *
 *     prvs=KDDDSSSSSS=local@domain
 *
 * K the key number (0–9), DDD the expiry day (days since 1970, mod 1000),
 * SSSSSS the first 3 bytes of HMAC-SHA1(key, "K" + "DDD" + "local@domain") in
 * lower-case hex.
 *
 * Why: a bounce (null MAIL FROM, RFC 5321 4.5.5) for mail we really sent goes
 * back to the signed envelope sender; a bounce to an unsigned address, or one
 * whose tag does not verify, answers mail somebody else forged in our name —
 * backscatter (DESIGN R7).
 *
 * Trusts: the keyring it is handed (the operator's). Everything else — the
 * tagged address above all — is peer input: parsed with anchored patterns of
 * bounded length, compared in constant time, never echoed uncleaned.
 * Must never: throw on a peer's address, accept a tag outside its validity
 * window, accept a key longer than Exim does (64 bytes), or re-sign an address
 * that already carries a tag.
 *
 * Pure: no clock of its own (callers pass the time), no I/O.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

/** Days a fresh tag stays valid (the draft's suggestion, Exim's `prvs_daystamp(7)`). */
export const BATV_VALIDITY_DAYS = 7;
/** Days of clock difference between our nodes that a tag may be ahead by. */
export const BATV_CLOCK_SKEW_DAYS = 1;
/** Exim refuses keys longer than one HMAC-SHA1 block (64 bytes); so do we, so that both sides agree. */
export const BATV_MAX_KEY_BYTES = 64;
/** Longest address we look at (RFC 5321 4.5.3.1.3: a path is at most 256 octets). */
export const BATV_MAX_ADDRESS = 256;

export interface BatvKey {
  /** The K of the tag: 0–9. */
  num: number;
  secret: Buffer;
}

/** The current key signs; every key in the ring verifies (rotation keeps the previous key valid). */
export interface BatvKeyring {
  current: BatvKey;
  previous: BatvKey[];
}

export interface PrvsParts {
  keyNum: number;
  /** The DDD of the tag, 0–999. */
  day: number;
  /** SSSSSS as written (any case). */
  hash: string;
  /** The address the tag wraps, local@domain. */
  original: string;
}

export type BatvCheck =
  | { kind: 'untagged' }
  | { kind: 'valid'; original: string; keyNum: number; daysLeft: number }
  | { kind: 'expired'; original: string; keyNum: number }
  | { kind: 'unknown-key'; original: string; keyNum: number }
  | { kind: 'bad-signature'; original: string; keyNum: number };

export class BatvKeyError extends Error {}

const DAY_MS = 86_400_000;
// Exim's own pattern (expand.c, prvscheck): ^prvs\=([0-9])([0-9]{3})([A-F0-9]{6})\=(.+)\@(.+)$, caseless.
const PRVS = /^prvs=([0-9])([0-9]{3})([0-9a-f]{6})=(.+)@([^@]+)$/i;

/** Days since 1970 modulo 1000 at `at` (draft 4.1: "DDD"). */
export function batvDay(at: number | Date): number {
  const ms = typeof at === 'number' ? at : at.getTime();
  return Math.floor(ms / DAY_MS) % 1000;
}

function day3(day: number): string {
  return String(day).padStart(3, '0');
}

/** HMAC-SHA1(key, K DDD address), first 3 bytes, lower-case hex (draft 4.1). */
export function prvsHash(secret: Buffer, keyNum: number, day: number, address: string): string {
  return createHmac('sha1', secret).update(`${keyNum}${day3(day)}${address}`, 'utf8').digest().subarray(0, 3).toString('hex');
}

/** The parts of a prvs-tagged address, or null when it carries no (well-formed) tag. */
export function parsePrvs(address: string): PrvsParts | null {
  if (address.length > BATV_MAX_ADDRESS) return null;
  const m = PRVS.exec(address);
  if (!m) return null;
  return { keyNum: Number(m[1]), day: Number(m[2]), hash: m[3]!, original: `${m[4]}@${m[5]}` };
}

export function isPrvs(address: string): boolean {
  return parsePrvs(address) !== null;
}

/** The address without its tag (an untagged address unchanged). */
export function stripPrvs(address: string): string {
  return parsePrvs(address)?.original ?? address;
}

/**
 * The domain lower-cased, the local part untouched: domains are
 * case-insensitive, local parts are not (RFC 5321 2.4). Signing this form
 * means a bouncing MTA that folds the domain's case still returns a tag that
 * verifies, and Exim computes the same HMAC over the same text.
 */
function canonical(address: string): string {
  const at = address.lastIndexOf('@');
  return at < 0 ? address : `${address.slice(0, at)}@${address.slice(at + 1).toLowerCase()}`;
}

/**
 * Signs an envelope sender. `at` is when the message was first accepted, so
 * that every retry of one message carries the same tag. An address that is
 * already tagged (ours or another signer's), the null sender and an address
 * without a domain are returned unchanged.
 */
export function signPrvs(address: string, ring: BatvKeyring | BatvKey, at: number | Date): string {
  if (address === '' || !address.includes('@') || address.length > BATV_MAX_ADDRESS - 16) return address;
  if (/^prvs=/i.test(address)) return address;
  const key = 'current' in ring ? ring.current : ring;
  const day = (batvDay(at) + BATV_VALIDITY_DAYS) % 1000;
  const addr = canonical(address);
  return `prvs=${key.num}${day3(day)}${prvsHash(key.secret, key.num, day, addr)}=${addr}`;
}

function sameHash(a: string, b: string): boolean {
  // Both are 6 hex digits by construction; lower-case both, then compare in
  // constant time (the tag's hex is case-insensitive: Exim compares caselessly).
  const x = Buffer.from(a.toLowerCase(), 'latin1');
  const y = Buffer.from(b.toLowerCase(), 'latin1');
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * Checks a (possibly) tagged address at `now`. The expiry day wraps at 1000
 * (draft 4.1): the tag is valid while (DDD − today) mod 1000 lies within the
 * validity window plus the clock skew we allow between nodes; anything else
 * is expired. A tag replayed exactly 1000 days later would look fresh again —
 * the draft's accepted limit; rotating keys more often than that closes it.
 * The hex digits compare caselessly and in constant time; Exim 4.96 compares
 * them case-sensitively, which is why signPrvs writes lower case.
 */
export function verifyPrvs(address: string, ring: BatvKeyring, now: number | Date): BatvCheck {
  const parts = parsePrvs(address);
  if (!parts) return { kind: 'untagged' };
  const { keyNum, day, hash, original } = parts;
  const key = [ring.current, ...ring.previous].find((k) => k.num === keyNum);
  if (!key) return { kind: 'unknown-key', original, keyNum };
  // The tag as written first (Exim signs the address as given), then with the
  // domain lower-cased (how we sign; survives a bouncer that folds the domain).
  const candidates = [original, canonical(original)].filter((v, i, all) => all.indexOf(v) === i);
  const ok = candidates.some((c) => sameHash(prvsHash(key.secret, keyNum, day, c), hash));
  if (!ok) return { kind: 'bad-signature', original, keyNum };
  const daysLeft = (day - batvDay(now) + 1000) % 1000;
  if (daysLeft > BATV_VALIDITY_DAYS + BATV_CLOCK_SKEW_DAYS) return { kind: 'expired', original, keyNum };
  return { kind: 'valid', original, keyNum, daysLeft };
}

function checkKey(num: number, secret: Buffer): BatvKey {
  if (!Number.isInteger(num) || num < 0 || num > 9) throw new BatvKeyError(`key number must be 0–9, got ${String(num).slice(0, 10)}`);
  if (secret.length === 0) throw new BatvKeyError(`key ${num} is empty`);
  if (secret.length > BATV_MAX_KEY_BYTES) throw new BatvKeyError(`key ${num} is ${secret.length} bytes; at most ${BATV_MAX_KEY_BYTES} (Exim's limit)`);
  return { num, secret };
}

export function makeKeyring(current: { num: number; secret: string | Buffer }, previous: { num: number; secret: string | Buffer }[] = []): BatvKeyring {
  const all = [current, ...previous].map((k) => checkKey(k.num, Buffer.isBuffer(k.secret) ? k.secret : Buffer.from(k.secret, 'utf8')));
  const nums = new Set<number>();
  for (const k of all) {
    if (nums.has(k.num)) throw new BatvKeyError(`key number ${k.num} appears twice`);
    nums.add(k.num);
  }
  return { current: all[0]!, previous: all.slice(1) };
}

/**
 * A key file: one key a line, `K SECRET` (or `K:SECRET`); the first line is
 * the current key, later lines are previous keys that still verify. Blank
 * lines and `#` comments are skipped. The secret is the rest of the line,
 * taken as UTF-8 bytes — the same string an Exim configuration would hold.
 */
export function parseKeyFile(text: string): BatvKeyring {
  const keys: { num: number; secret: string }[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const m = /^([0-9])[\s:]+(.+)$/.exec(line);
    if (!m) throw new BatvKeyError(`line ${i + 1}: expected "K SECRET" with K a digit 0–9`);
    keys.push({ num: Number(m[1]), secret: m[2]! });
  });
  if (keys.length === 0) throw new BatvKeyError('no key in the key file');
  return makeKeyring(keys[0]!, keys.slice(1));
}
