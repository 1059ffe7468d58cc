/*
 * scan/mime — a raw message into the leaves the policy and the cache look at:
 * every attachment and every inline body, decoded, with its decoded file name;
 * attached messages (message/rfc822) are walked too.
 *
 * Parsing and decoding is postal-mime's (RFC 2045-2049, RFC 2047 encoded
 * words, RFC 2231 parameters). It buffers the whole message and builds every
 * part before it returns, so a cheap structural pre-pass runs first and
 * refuses a message with more parts (scan.maxParts) or deeper nesting
 * (scan.maxMimeDepth) than allowed: one linear pass over the lines, which
 * only tracks the boundaries in force, and stops at the first limit. The
 * pre-pass is hand-written because it must not build anything; it only
 * counts, and postal-mime's own nesting limit remains behind it.
 *
 * The pre-pass also notes what makes postal-mime's view of a part possibly
 * differ from clamd's (an unusual transfer encoding, an inline text body in a
 * charset postal-mime converts, a multipart without a boundary): the scanner
 * then does not spread a whole-message "clean" to the leaves (cache).
 *
 * Trusts nothing in the message. Never recurses without a depth budget.
 */
import PostalMime from 'postal-mime';
import type { Leaf } from './policy.ts';

export class MimeLimitError extends Error {}

export interface MimeLimits {
  maxMimeDepth: number;
  maxParts: number;
}

export interface MimeShape {
  /** MIME entities (the message itself, every body part, multipart or not). */
  parts: number;
  /** The deepest nesting seen (the message's own header block is depth 0). */
  depth: number;
  /** Depth of the deepest message/rfc822 part, -1 when there is none. */
  messageDepth: number;
  /** Why a leaf decoded by postal-mime may not be what clamd decoded, or null. */
  opaque: string | null;
}

const KNOWN_ENCODINGS = new Set(['', '7bit', '8bit', 'binary', 'base64', 'quoted-printable']);
const PLAIN_CHARSETS = new Set(['', 'us-ascii', 'ascii', 'utf-8', 'utf8']);
const COLLECTED = new Set(['content-type', 'content-transfer-encoding', 'content-disposition']);
/** A header longer than this is not read further: the pre-pass needs the type and a boundary. */
const MAX_COLLECTED = 8192;

function param(header: string, name: string): string | null {
  const match = new RegExp(`;\\s*${name}\\s*=\\s*(?:"([^"]*)"|([^\\s;]+))`, 'i').exec(header);
  return match ? (match[1] ?? match[2] ?? '') : null;
}

/**
 * Counts entities and nesting without decoding anything. Throws
 * MimeLimitError at the first limit crossed. `already` is what enclosing
 * messages used up (for an attached message): the limits are the whole
 * message's.
 */
export function measureMime(raw: Uint8Array, maxDepth: number, maxParts: number, already = { depth: 0, parts: 0 }): MimeShape {
  const buf = Buffer.from(raw.buffer, raw.byteOffset, raw.length);
  const stack: { delimiter: Buffer; depth: number }[] = [];
  let parts = 1;
  let deepest = 0;
  let messageDepth = -1;
  let opaque: string | null = null;
  let inHeader = true;
  let entityDepth = 0;
  let headers: Record<string, string> = {};
  let current: string | null = null;

  const endOfHeader = () => {
    inHeader = false;
    const contentType = (headers['content-type'] ?? '').trim();
    const type = contentType.split(';', 1)[0]!.trim().toLowerCase();
    const encoding = (headers['content-transfer-encoding'] ?? '').trim().toLowerCase();
    const disposition = (headers['content-disposition'] ?? '').split(';', 1)[0]!.trim().toLowerCase();
    if (!KNOWN_ENCODINGS.has(encoding)) opaque ??= `unusual Content-Transfer-Encoding "${encoding.slice(0, 40)}"`;
    if (type.startsWith('multipart/')) {
      const boundary = param(contentType, 'boundary');
      if (boundary) stack.push({ delimiter: Buffer.from(`--${boundary}`, 'latin1'), depth: entityDepth });
      else opaque ??= 'multipart without a boundary';
    } else if (type === 'message/rfc822' || type === 'message/global') {
      messageDepth = Math.max(messageDepth, entityDepth);
    } else if ((type === 'text/plain' || type === 'text/html' || type === '') && disposition !== 'attachment') {
      const charset = (param(contentType, 'charset') ?? '').toLowerCase();
      if (!PLAIN_CHARSETS.has(charset)) opaque ??= `text body in charset "${charset.slice(0, 40)}"`;
    }
    headers = {};
    current = null;
  };

  let start = 0;
  while (start < buf.length) {
    let end = buf.indexOf(0x0a, start);
    if (end < 0) end = buf.length;
    let lineEnd = end;
    if (lineEnd > start && buf[lineEnd - 1] === 0x0d) lineEnd--;
    if (inHeader) {
      if (lineEnd === start) endOfHeader();
      else if (buf[start] === 0x20 || buf[start] === 0x09) {
        if (current !== null && headers[current]!.length < MAX_COLLECTED) headers[current] += buf.toString('latin1', start, Math.min(lineEnd, start + MAX_COLLECTED));
      } else {
        const colon = buf.indexOf(0x3a, start);
        if (colon > start && colon < lineEnd && colon - start < 80) {
          const name = buf.toString('latin1', start, colon).trim().toLowerCase();
          current = COLLECTED.has(name) ? name : null;
          // The first occurrence wins, as in postal-mime.
          if (current !== null) {
            if (headers[current] === undefined) headers[current] = buf.toString('latin1', colon + 1, Math.min(lineEnd, colon + 1 + MAX_COLLECTED));
            else current = null;
          }
        } else current = null;
      }
    } else if (stack.length > 0 && buf[start] === 0x2d && buf[start + 1] === 0x2d) {
      for (let i = stack.length - 1; i >= 0; i--) {
        const { delimiter, depth } = stack[i]!;
        if (lineEnd - start < delimiter.length || buf.compare(delimiter, 0, delimiter.length, start, start + delimiter.length) !== 0) continue;
        let p = start + delimiter.length;
        const closing = buf[p] === 0x2d && buf[p + 1] === 0x2d;
        if (closing) p += 2;
        while (p < lineEnd && (buf[p] === 0x20 || buf[p] === 0x09)) p++;
        if (p !== lineEnd) continue; // "--boundaryX": a longer boundary, not this one (RFC 2046 5.1.1)
        if (closing) {
          stack.length = i;
        } else {
          stack.length = i + 1;
          parts++;
          entityDepth = depth + 1;
          deepest = Math.max(deepest, entityDepth);
          if (already.parts + parts > maxParts) throw new MimeLimitError(`more than ${maxParts} parts`);
          if (already.depth + entityDepth > maxDepth) throw new MimeLimitError(`nested deeper than ${maxDepth} levels`);
          inHeader = true;
          headers = {};
          current = null;
        }
        break;
      }
    }
    start = end + 1;
  }
  if (inHeader) endOfHeader();
  return { parts, depth: deepest, messageDepth, opaque };
}

export interface WalkedMessage {
  leaves: Leaf[];
  /** MIME entities in the message and every message it carries. */
  parts: number;
  /** See MimeShape.opaque; the first reason found anywhere in the message. */
  opaque: string | null;
}

/**
 * Leaves of a message and, recursively, of the messages attached to it. An
 * attached message starts one level below the deepest message/rfc822 part
 * of its parent (the pre-pass does not know which one it is, so it charges
 * the deepest): the depth budget is shared by every level.
 */
export async function walkMessage(raw: Uint8Array, limits: MimeLimits): Promise<WalkedMessage> {
  const walked: WalkedMessage = { leaves: [], parts: 0, opaque: null };
  await walk(raw, 0, limits, walked);
  return walked;
}

async function walk(raw: Uint8Array, depthUsed: number, limits: MimeLimits, into: WalkedMessage): Promise<void> {
  const shape = measureMime(raw, limits.maxMimeDepth, limits.maxParts, { depth: depthUsed, parts: into.parts });
  into.parts += shape.parts;
  if (into.parts > limits.maxParts) throw new MimeLimitError(`more than ${limits.maxParts} parts`);
  into.opaque ??= shape.opaque;
  const mail = await PostalMime.parse(raw, {
    maxNestingDepth: limits.maxMimeDepth - depthUsed,
    // Attached messages come back as attachments and are walked here, with the shared budget.
    maxRfc822NestingDepth: 0,
    attachmentEncoding: 'arraybuffer',
  });
  const encoder = new TextEncoder();
  if (mail.text) into.leaves.push({ name: null, content: encoder.encode(mail.text), body: true });
  if (mail.html) into.leaves.push({ name: null, content: encoder.encode(mail.html), body: true });
  for (const attachment of mail.attachments) {
    const content = new Uint8Array(attachment.content as ArrayBuffer);
    if (attachment.mimeType === 'message/rfc822' || attachment.mimeType === 'message/global') {
      const nested = depthUsed + Math.max(0, shape.messageDepth) + 1;
      if (nested > limits.maxMimeDepth) throw new MimeLimitError(`attached messages nested deeper than ${limits.maxMimeDepth} levels`);
      await walk(content, nested, limits, into);
      continue;
    }
    into.leaves.push({ name: attachment.filename ?? null, content });
  }
}
