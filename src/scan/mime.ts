/*
 * scan/mime — a raw message into the leaves the policy and the cache look at:
 * every attachment and every inline body, decoded, with its decoded file name;
 * attached messages (message/rfc822) are walked too.
 *
 * Two ways to split. The common case — every part 7bit/8bit/binary or
 * base64 with only the base64 alphabet, plain ASCII Content-* headers with at
 * most one name and no encoded words, UTF-8/ASCII text, no attached
 * messages — is split by hand in the same linear pass that counts parts:
 * each body is a byte range, base64 is decoded by Node's Buffer (native),
 * text bodies get LF line ends like postal-mime's. Why not the library
 * there: postal-mime decodes base64 in pure JS, copies every part through
 * Blobs and builds text we do not need; on the benchmark's 20 kB messages it
 * was a quarter of the gateway's CPU. Why only there: the hand split only
 * takes what has one reading (a test checks it gives postal-mime's leaves,
 * byte for byte); anything else — quoted-printable, RFC 2047/2231 names, a
 * repeated name or header, odd base64, a malformed header line — goes to
 * postal-mime, which stays the reference.
 *
 * Parsing and decoding otherwise is postal-mime's (RFC 2045-2049, RFC 2047 encoded
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
 * postal-mime is loaded on the first message the hand split does not take:
 * `backstop scan` on a plain message or file starts without it.
 *
 * Trusts nothing in the message. Never recurses without a depth budget.
 */
import type { Leaf } from './policy.ts';

let postalMime: Promise<typeof import('postal-mime')> | undefined;

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
  // A quoted string may hold quoted pairs (RFC 5322 3.2.4): boundary="\XX" is the boundary XX, as
  // postal-mime reads it; read raw, the pre-pass saw no part at all (found by test/fuzz).
  const match = new RegExp(`;\\s*${name}\\s*=\\s*(?:"((?:[^"\\\\]|\\\\.)*)"|([^\\s;]+))`, 'i').exec(header);
  if (!match) return null;
  return match[1] !== undefined ? match[1].replace(/\\(.)/g, '$1') : (match[2] ?? '');
}

/**
 * Counts entities and nesting without decoding anything. Throws
 * MimeLimitError at the first limit crossed. `already` is what enclosing
 * messages used up (for an attached message): the limits are the whole
 * message's.
 */
export function measureMime(raw: Uint8Array, maxDepth: number, maxParts: number, already = { depth: 0, parts: 0 }): MimeShape {
  const { parts, depth, messageDepth, opaque } = structure(raw, maxDepth, maxParts, already);
  return { parts, depth, messageDepth, opaque };
}

/** Characters a base64 body may hold for Node's decoder and clamd's to agree: the alphabet, line breaks, padding only at the end. */
const PLAIN_BASE64 = /^[A-Za-z0-9+/\r\n]*(?:={1,2}[\r\n]*)?$/;
/** A media type as RFC 2045 5.1 spells it: token "/" token. */
const TYPE_TOKEN = /^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+$/;
/** Parameters we read by hand only when they are this plain: no RFC 2047 words, no RFC 2231 continuations, no escapes, ASCII. */
const PLAIN_HEADER = /^[\x20-\x7e\t]*$/;

function paramCount(header: string, name: string): number {
  return header.match(new RegExp(`;\\s*${name}\\s*=`, 'gi'))?.length ?? 0;
}

interface Structure extends MimeShape {
  /** The leaves, decoded, when every part is plain enough to split by hand (see walk); null: let postal-mime do it. */
  leaves: Leaf[] | null;
  /** Preambles and epilogues that hold more than white space. */
  outside: Uint8Array[];
}

export function structure(raw: Uint8Array, maxDepth: number, maxParts: number, already = { depth: 0, parts: 0 }): Structure {
  const buf = Buffer.from(raw.buffer, raw.byteOffset, raw.length);
  // The hand split (see walk): each part's body is a region that becomes a leaf. A multipart's
  // preamble and epilogue are not leaves (as with postal-mime), but what they hold beyond white
  // space is noted (`outside`), on both paths: the scanner's clean shortcut must account for it.
  let leaves: Leaf[] | null = [];
  let region: { start: number; leaf: Omit<Leaf, 'content'> & { base64: boolean } } | null = null;
  const outside: Uint8Array[] = [];
  let outsideStart = -1;
  const closeOutside = (end: number) => {
    if (outsideStart >= 0 && end > outsideStart) {
      const bytes = buf.subarray(outsideStart, end);
      if (/\S/.test(bytes.toString('latin1'))) outside.push(bytes);
    }
    outsideStart = -1;
  };
  const closeRegion = (end: number) => {
    closeOutside(end);
    if (!region || !leaves) return (region = null);
    const { name, body, base64 } = region.leaf;
    // The line break before a delimiter belongs to the delimiter (RFC 2046 5.1.1); a text body
    // keeps it, as postal-mime's line-by-line text does.
    if (!body && end > region.start && buf[end - 1] === 0x0a) end--;
    if (!body && end > region.start && buf[end - 1] === 0x0d) end--;
    const bytes = buf.subarray(region.start, Math.max(region.start, end));
    region = null;
    let content: Uint8Array = bytes;
    if (base64) {
      const text = bytes.toString('latin1');
      if (!PLAIN_BASE64.test(text)) {
        opaque ??= 'base64 with characters outside the alphabet or padding inside';
        return (leaves = null);
      }
      content = Buffer.from(text, 'base64');
    }
    if (body) {
      // Text bodies with LF line ends, like postal-mime's: the body checks (uuencoded files) match on lines.
      const text = Buffer.from(content.buffer, content.byteOffset, content.length).toString('latin1');
      if (!/\S/.test(text)) return;
      content = text.includes('\r\n') ? Buffer.from(text.replace(/\r\n/g, '\n'), 'latin1') : content;
      leaves.push({ name, content, body });
    } else leaves.push({ name, content });
  };
  const stack: { delimiter: Buffer; depth: number }[] = [];
  let parts = 1;
  let deepest = 0;
  let messageDepth = -1;
  let opaque: string | null = null;
  let inHeader = true;
  let entityDepth = 0;
  let headers: Record<string, string> = {};
  let current: string | null = null;
  let truncated = false;
  let nextLine = 0;

  const endOfHeader = () => {
    inHeader = false;
    const contentType = (headers['content-type'] ?? '').trim();
    const type = contentType.split(';', 1)[0]!.trim().toLowerCase();
    const encoding = (headers['content-transfer-encoding'] ?? '').trim().toLowerCase();
    const disposition = (headers['content-disposition'] ?? '').split(';', 1)[0]!.trim().toLowerCase();
    if (!KNOWN_ENCODINGS.has(encoding)) opaque ??= `unusual Content-Transfer-Encoding "${encoding.slice(0, 40)}"`;
    const textBody = (type === 'text/plain' || type === 'text/html' || type === '') && disposition !== 'attachment';
    if (type.startsWith('multipart/')) {
      const boundary = param(contentType, 'boundary');
      if (boundary) {
        stack.push({ delimiter: Buffer.from(`--${boundary}`, 'latin1'), depth: entityDepth });
        outsideStart = nextLine; // the preamble
      }
      else {
        opaque ??= 'multipart without a boundary';
        leaves = null; // postal-mime makes its body an attachment; the hand split would keep nothing
      }
    } else if (type === 'message/rfc822' || type === 'message/global') {
      messageDepth = Math.max(messageDepth, entityDepth);
      leaves = null;
    } else if (textBody) {
      const charset = (param(contentType, 'charset') ?? '').toLowerCase();
      if (!PLAIN_CHARSETS.has(charset)) opaque ??= `text body in charset "${charset.slice(0, 40)}"`;
    }
    if (leaves && !type.startsWith('multipart/') && !(type === 'message/rfc822' || type === 'message/global')) {
      const contentDisposition = headers['content-disposition'] ?? '';
      const filename = param(contentDisposition, 'filename');
      const name = param(contentType, 'name');
      const plain =
        // An attachment unencoded (7bit/8bit/binary) is read by postal-mime line by line, LF-joined: two readings, so its (found by test/fuzz).
        (encoding === 'base64' || (textBody && (encoding === '' || encoding === '7bit' || encoding === '8bit' || encoding === 'binary'))) &&
        // A type that is no type/subtype token pair (nothing at all, a stray quote) has two readings: postal-mime's.
        (TYPE_TOKEN.test(type) || headers['content-type'] === undefined) &&
        (!textBody || PLAIN_CHARSETS.has((param(contentType, 'charset') ?? '').toLowerCase())) &&
        truncated === false &&
        PLAIN_HEADER.test(contentType) &&
        PLAIN_HEADER.test(contentDisposition) &&
        !/[*\\]|=\?/.test(contentType + contentDisposition) &&
        paramCount(contentDisposition, 'filename') <= 1 &&
        paramCount(contentType, 'name') <= 1 &&
        (filename === null || name === null || filename === name);
      if (plain) region = { start: nextLine, leaf: { name: filename ?? name, body: textBody, base64: encoding === 'base64' } };
      else leaves = null;
    }
    headers = {};
    truncated = false;
    current = null;
  };

  /**
   * Which boundary in force (innermost first) this line is a delimiter of (RFC 2046 5.1.1): its
   * index in the stack times two, plus one for a closing delimiter; -1 for none. A number, not an
   * object: it runs for every "--" line, hundreds of thousands in a part flood.
   */
  const delimiterAt = (start: number, lineEnd: number): number => {
    for (let i = stack.length - 1; i >= 0; i--) {
      const { delimiter } = stack[i]!;
      if (lineEnd - start < delimiter.length || buf.compare(delimiter, 0, delimiter.length, start, start + delimiter.length) !== 0) continue;
      let p = start + delimiter.length;
      const closing = buf[p] === 0x2d && buf[p + 1] === 0x2d;
      if (closing) p += 2;
      while (p < lineEnd && (buf[p] === 0x20 || buf[p] === 0x09)) p++;
      if (p !== lineEnd) continue; // "--boundaryX": a longer boundary, not this one
      return i * 2 + (closing ? 1 : 0);
    }
    return -1;
  };

  let start = 0;
  while (start < buf.length) {
    let end = buf.indexOf(0x0a, start);
    if (end < 0) end = buf.length;
    let lineEnd = end;
    // Every CR before the LF, as postal-mime reads lines: "--b\r\r\n" is a delimiter to it (found by test/fuzz).
    while (lineEnd > start && buf[lineEnd - 1] === 0x0d) lineEnd--;
    nextLine = Math.min(buf.length, end + 1);
    const delimiter = stack.length > 0 && buf[start] === 0x2d && buf[start + 1] === 0x2d ? delimiterAt(start, lineEnd) : -1;
    if (inHeader && delimiter < 0) {
      if (lineEnd === start) endOfHeader();
      else if (buf[start] === 0x20 || buf[start] === 0x09) {
        if (current !== null) {
          if (headers[current]!.length < MAX_COLLECTED && lineEnd - start <= MAX_COLLECTED) headers[current] += buf.toString('latin1', start, lineEnd);
          else truncated = true;
        }
      } else {
        const colon = buf.indexOf(0x3a, start);
        if (colon > start && colon < lineEnd && colon - start < 80) {
          const name = buf.toString('latin1', start, colon).trim().toLowerCase();
          current = COLLECTED.has(name) ? name : null;
          // The first occurrence wins, as in postal-mime.
          if (current !== null) {
            if (headers[current] === undefined) {
              headers[current] = buf.toString('latin1', colon + 1, Math.min(lineEnd, colon + 1 + MAX_COLLECTED));
              if (lineEnd - colon - 1 > MAX_COLLECTED) truncated = true;
            } else {
              current = null;
              leaves = null; // a repeated Content-* header: postal-mime's reading is the reference
            }
          }
        } else {
          current = null;
          leaves = null; // not a header field: a malformed block is postal-mime's to read
        }
      }
    } else if (delimiter >= 0) {
      const index = delimiter >> 1;
      if (inHeader) {
        // A delimiter inside a part's header block ends the part, as postal-mime reads it: parts that
        // never finish their header must count against maxParts too (found by test/fuzz).
        leaves = null;
        endOfHeader();
      }
      const { depth } = stack[index]!;
      closeRegion(start);
      if (delimiter & 1) {
        stack.length = index;
        outsideStart = nextLine; // the epilogue
      } else {
        stack.length = index + 1;
        parts++;
        entityDepth = depth + 1;
        deepest = Math.max(deepest, entityDepth);
        if (already.parts + parts > maxParts) throw new MimeLimitError(`more than ${maxParts} parts`);
        if (already.depth + entityDepth > maxDepth) throw new MimeLimitError(`nested deeper than ${maxDepth} levels`);
        inHeader = true;
        headers = {};
        current = null;
      }
    }
    start = end + 1;
  }
  if (inHeader) {
    nextLine = buf.length;
    endOfHeader();
  }
  closeRegion(buf.length);
  return { parts, depth: deepest, messageDepth, opaque, leaves, outside };
}

export interface WalkedMessage {
  leaves: Leaf[];
  /** MIME entities in the message and every message it carries. */
  parts: number;
  /** See MimeShape.opaque; the first reason found anywhere in the message. */
  opaque: string | null;
  /** Bytes in no leaf and no header block (multipart preambles and epilogues beyond white space). */
  outside: Uint8Array[];
}

/**
 * Leaves of a message and, recursively, of the messages attached to it. An
 * attached message starts one level below the deepest message/rfc822 part
 * of its parent (the pre-pass does not know which one it is, so it charges
 * the deepest): the depth budget is shared by every level.
 */
export async function walkMessage(raw: Uint8Array, limits: MimeLimits): Promise<WalkedMessage> {
  const walked: WalkedMessage = { leaves: [], parts: 0, opaque: null, outside: [] };
  await walk(raw, 0, limits, walked);
  return walked;
}

async function walk(raw: Uint8Array, depthUsed: number, limits: MimeLimits, into: WalkedMessage): Promise<void> {
  const shape = structure(raw, limits.maxMimeDepth, limits.maxParts, { depth: depthUsed, parts: into.parts });
  into.parts += shape.parts;
  if (into.parts > limits.maxParts) throw new MimeLimitError(`more than ${limits.maxParts} parts`);
  into.opaque ??= shape.opaque;
  into.outside.push(...shape.outside);
  if (shape.leaves) {
    into.leaves.push(...shape.leaves);
    return;
  }
  const { default: PostalMime } = await (postalMime ??= import('postal-mime'));
  let mail: Awaited<ReturnType<typeof PostalMime.parse>>;
  try {
    mail = await PostalMime.parse(raw, {
      maxNestingDepth: limits.maxMimeDepth - depthUsed,
      // Attached messages come back as attachments and are walked here, with the shared budget.
      maxRfc822NestingDepth: 0,
      attachmentEncoding: 'arraybuffer',
    });
  } catch (err) {
    // postal-mime's own depth limit, where its reading of a malformed structure nests deeper than the pre-pass's: a limit all the same (found by test/fuzz).
    if (/nesting depth/i.test((err as Error).message)) throw new MimeLimitError(`nested deeper than ${limits.maxMimeDepth} levels`);
    throw err;
  }
  // The pre-pass and postal-mime may still read a malformed structure apart: postal-mime's count is a limit too.
  if (into.parts - shape.parts + mail.attachments.length > limits.maxParts) throw new MimeLimitError(`more than ${limits.maxParts} parts`);
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
    // postal-mime ends a quoted-printable part with the line break that belongs to the delimiter (RFC 2046 5.1.1).
    const trimmed = content.length > 0 && content[content.length - 1] === 0x0a ? content.subarray(0, content.length - (content[content.length - 2] === 0x0d ? 2 : 1)) : null;
    into.leaves.push(trimmed ? { name: attachment.filename ?? null, content, alternatives: [trimmed] } : { name: attachment.filename ?? null, content });
  }
}
