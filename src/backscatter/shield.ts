/*
 * backscatter/shield — the gateway's two decisions, as pure functions the
 * edge's hook arrays can call:
 *
 *   at RCPT   checkBounceRecipient(mailFrom, rcpt, policy): a null sender
 *             (RFC 5321 4.5.5: bounces use MAIL FROM:<>) to an untagged or
 *             badly tagged address of a BATV domain is refused 550 5.7.1
 *             there and then — decidable before DATA, so nothing is received;
 *             a valid tag is stripped before the next hop.
 *   at DATA   decideAtData(classification, verdict, policy): backscatter is
 *             refused or quarantined per config, everything else passes.
 *
 * `log-only` mode answers "accept" and says what it would have refused, for
 * a careful rollout. Never refuses mail for lacking a tag when it is not a
 * bounce (a non-null sender passes RCPT; DATA decides by classification).
 * postmaster@ is never refused (RFC 5321 4.5.1 requires it to accept mail).
 *
 * Trusts: its policy. Replies carry no peer text beyond what is cleaned.
 * Pure: no clock (policy.now), no I/O, no state.
 */
import { cleanText } from '../obs/clean.ts';
import { stripPrvs, verifyPrvs, type BatvKeyring } from './batv.ts';
import type { Classification, MessageClass } from './classify.ts';
import type { VerdictResult } from './verdict.ts';

export type ShieldMode = 'enforce' | 'log-only';

export interface RcptPolicy {
  /** Domains whose outgoing envelope senders we sign: bounces to them must carry a valid tag. */
  batvDomains: string[];
  ring: BatvKeyring;
  now: number;
  mode: ShieldMode;
}

export interface SmtpReply {
  code: number;
  enhanced: string;
  text: string;
}

export interface RcptDecision {
  action: 'accept' | 'refuse';
  /** The recipient to hand the next hop: the tag removed when it verified. */
  rcpt: string;
  /** What the BATV check found: the tag state, or why it did not apply. */
  batv: 'not-batv-domain' | 'not-a-bounce' | 'postmaster' | 'untagged' | 'valid' | 'expired' | 'unknown-key' | 'bad-signature';
  reply?: SmtpReply;
  /** In log-only mode, the refusal that enforce mode would have answered. */
  wouldRefuse?: SmtpReply;
}

function domainOf(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1).toLowerCase();
}

function localOf(address: string): string {
  return address.slice(0, Math.max(0, address.lastIndexOf('@'))).toLowerCase();
}

/** The RCPT-time decision for one recipient. `mailFrom` is '' for the null sender. */
export function checkBounceRecipient(mailFrom: string, rcpt: string, policy: RcptPolicy): RcptDecision {
  const domains = new Set(policy.batvDomains.map((d) => d.toLowerCase()));
  const check = verifyPrvs(rcpt, policy.ring, policy.now);
  const original = check.kind === 'untagged' ? rcpt : check.original;
  if (!domains.has(domainOf(original))) return { action: 'accept', rcpt, batv: 'not-batv-domain' };
  // A valid tag is removed whoever sends (a reply to the envelope sender is fine too).
  if (check.kind === 'valid') return { action: 'accept', rcpt: check.original, batv: 'valid' };
  const isBounce = mailFrom.trim() === '' || mailFrom.trim() === '<>';
  if (!isBounce) return { action: 'accept', rcpt: stripPrvs(rcpt), batv: 'not-a-bounce' };
  if (localOf(original) === 'postmaster') return { action: 'accept', rcpt: original, batv: 'postmaster' };
  const why =
    check.kind === 'untagged'
      ? 'bounce to an address we never used as a sender'
      : check.kind === 'expired'
        ? 'bounce to an expired BATV tag'
        : 'bounce to an invalid BATV tag';
  const reply: SmtpReply = { code: 550, enhanced: '5.7.1', text: `<${cleanText(original, 120)}>: ${why} (backscatter refused)` };
  if (policy.mode === 'log-only') return { action: 'accept', rcpt: stripPrvs(rcpt), batv: check.kind, wouldRefuse: reply };
  return { action: 'refuse', rcpt, batv: check.kind, reply };
}

export interface DataPolicy {
  mode: ShieldMode;
  /** What to do with backscatter found at end of DATA. */
  onBackscatter: 'refuse' | 'quarantine';
  /** Classes the shield acts on (default: every bounce and notice class). */
  classes?: MessageClass[];
}

export interface DataDecision {
  action: 'pass' | 'refuse' | 'quarantine';
  reply?: SmtpReply;
  wouldAct?: 'refuse' | 'quarantine';
  /** The record to keep (the only state a bounce may cause). */
  record: { class: MessageClass; verdict: VerdictResult['verdict']; format: string | null; reasons: string[] };
}

const DEFAULT_CLASSES: MessageClass[] = ['dsn', 'delay', 'av-notice', 'challenge'];

/** The end-of-DATA decision. Only `backscatter` is ever stopped; `ours` and `unknown` pass. */
export function decideAtData(c: Classification, v: VerdictResult, policy: DataPolicy): DataDecision {
  const record = { class: c.class, verdict: v.verdict, format: c.format, reasons: [...c.reasons, ...v.reasons] };
  const classes = policy.classes ?? DEFAULT_CLASSES;
  if (v.verdict !== 'backscatter' || !classes.includes(c.class)) return { action: 'pass', record };
  const reply: SmtpReply = { code: 550, enhanced: '5.7.1', text: `${c.class === 'av-notice' ? 'virus notice' : 'bounce'} for mail we did not send (backscatter refused)` };
  if (policy.mode === 'log-only') return { action: 'pass', wouldAct: policy.onBackscatter, record };
  return policy.onBackscatter === 'refuse' ? { action: 'refuse', reply, record } : { action: 'quarantine', record };
}
