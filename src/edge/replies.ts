/*
 * edge/replies — what the sender hears when the next hop has spoken. Pure.
 *
 * The next hop's code is passed on (that is the point of a before-queue
 * proxy: its "no such user" is the sender's "no such user"); its text is
 * cleaned and shortened, and given an RFC 3463 enhanced code when it has
 * none. A reply that makes no sense at that step is our failure: 451.
 */
import { cleanText } from '../obs/clean.ts';
import type { SmtpReply } from './smtp-client.ts';

export interface Reply {
  code: number;
  message: string;
}

const ENHANCED = /^([245])\.(\d{1,3})\.(\d{1,3})\s+/;

export function mirror(reply: SmtpReply): Reply {
  if (!(reply.code >= 200 && reply.code < 600) || (reply.code >= 300 && reply.code < 400)) {
    return { code: 451, message: '4.4.0 Unexpected reply from the next hop, try again later' };
  }
  const text = cleanText(reply.text.replace(/\n/g, ' ').trim(), 300);
  const klass = String(reply.code)[0]!;
  const enhanced = ENHANCED.exec(text);
  if (enhanced && enhanced[1] === klass) return { code: reply.code, message: text };
  const body = enhanced ? text.replace(ENHANCED, '') : text;
  return { code: reply.code, message: `${klass}.0.0 ${body || 'Next hop replied without text'}` };
}

/** The next hop could not be reached or went away mid-transaction: temporary, the sender retries (RFC 3463 4.4.1, 4.4.2). */
export const NEXT_HOP_UNREACHABLE: Reply = { code: 451, message: '4.4.1 Next hop not reachable, try again later' };
export const NEXT_HOP_LOST: Reply = { code: 451, message: '4.4.2 Connection to the next hop lost, try again later' };
/** The message's record could not be committed (store down or slower than records.commitTimeoutMs): never a 250 whose record may be lost. */
export const STORE_UNAVAILABLE: Reply = { code: 451, message: '4.3.0 Cannot record the message now, try again later' };
export const LOCAL_ERROR: Reply = { code: 451, message: '4.3.0 Local error in processing, try again later' };
export const RELAY_DENIED: Reply = { code: 550, message: '5.7.1 Relay access denied' };
/** RFC 5321 §4.5.3.1.10: the client sends the rest of its recipients in another transaction. */
export const SEPARATE_TRANSACTION: Reply = { code: 452, message: '4.5.3 This recipient goes in a separate transaction; please send it again' };
export const TOO_BIG = (max: number): Reply => ({ code: 552, message: `5.3.4 Message size exceeds fixed maximum message size of ${max} bytes` });
/** The node holds as many message bytes as it may (smtp.maxBufferedBytes): the sender retries later (RFC 3463 4.3.1). */
export const NO_BUFFER_SPACE: Reply = { code: 452, message: '4.3.1 Insufficient system storage, try again later' };
/** DATA took longer than smtp.dataTimeoutMs: the session is ended, the client keeps its message. */
/** A node that is stopping takes no new connection; the client tries again (another MX, or this one later). */
export const SHUTTING_DOWN: Reply = { code: 421, message: '4.3.2 Service shutting down, try again later' };
export const DATA_TIMEOUT: Reply = { code: 421, message: '4.4.2 Error: timeout exceeded during DATA, closing connection' };
