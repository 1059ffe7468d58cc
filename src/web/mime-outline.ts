/*
 * web/mime-outline — the shape of a quarantined message for a person to
 * read: every MIME entity with its depth, type, transfer encoding,
 * disposition, file name as written and raw size; and, from postal-mime's
 * decoding, every attachment's decoded name, size and SHA-256 (what a
 * postmaster pastes into a malware database).
 *
 * Trusts nothing in the message: the walk has a depth and a part budget and
 * stops (saying so) where they run out; nothing is decoded for display, and
 * names are returned as text for the escaping template, never as markup.
 * Must never: render, execute or hand back a part's content.
 */
import { createHash } from 'node:crypto';
import PostalMime from 'postal-mime';

export interface OutlinePart {
  depth: number;
  type: string;
  encoding: string;
  disposition: string;
  filename: string | null;
  bytes: number;
}

export interface Outline {
  parts: OutlinePart[];
  /** Set when a limit stopped the walk. */
  truncated: string | null;
}

export interface AttachmentInfo {
  filename: string | null;
  type: string;
  bytes: number;
  sha256: string;
}

const LIMITS = { maxDepth: 20, maxParts: 300, maxHeaderBytes: 64 * 1024 };

function headerValue(block: string, name: string): string {
  const m = new RegExp(`^${name}:[ \\t]*((?:.*)(?:\\r?\\n[ \\t].*)*)`, 'im').exec(block);
  return m ? m[1]!.replace(/\r?\n[ \t]+/g, ' ').trim() : '';
}

function param(value: string, name: string): string | null {
  // RFC 2231 continuations/charsets are shown as written (name*0*=…): the decoded name is in the attachments list.
  const m = new RegExp(`;\\s*${name}\\*?(?:0\\*?)?\\s*=\\s*(?:"((?:[^"\\\\]|\\\\.)*)"|([^\\s;]+))`, 'i').exec(value);
  return m ? (m[1] ?? m[2] ?? '') : null;
}

/** Walks the raw message (latin1: one char per byte, so offsets are byte counts). */
export function outlineMessage(raw: Uint8Array): Outline {
  const text = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('latin1');
  const parts: OutlinePart[] = [];
  let truncated: string | null = null;

  const walk = (start: number, end: number, depth: number): void => {
    if (truncated) return;
    if (depth > LIMITS.maxDepth) {
      truncated = `nesting deeper than ${LIMITS.maxDepth} levels is not shown`;
      return;
    }
    if (parts.length >= LIMITS.maxParts) {
      truncated = `only the first ${LIMITS.maxParts} parts are shown`;
      return;
    }
    const slice = text.slice(start, Math.min(end, start + LIMITS.maxHeaderBytes));
    const m = /\r?\n\r?\n/.exec(slice);
    const headerEnd = m ? start + m.index : end;
    const bodyStart = m ? start + m.index + m[0].length : end;
    const block = text.slice(start, headerEnd);
    const contentType = headerValue(block, 'content-type') || 'text/plain';
    const type = contentType.split(';', 1)[0]!.trim().toLowerCase().slice(0, 100);
    const disposition = headerValue(block, 'content-disposition');
    const part: OutlinePart = {
      depth,
      type,
      encoding: headerValue(block, 'content-transfer-encoding').toLowerCase().slice(0, 40),
      disposition: disposition.split(';', 1)[0]!.trim().toLowerCase().slice(0, 40),
      filename: param(disposition, 'filename') ?? param(contentType, 'name'),
      bytes: Math.max(0, end - bodyStart),
    };
    parts.push(part);
    if (type.startsWith('multipart/')) {
      const boundary = param(contentType, 'boundary');
      if (!boundary) return;
      const delimiter = `--${boundary}`;
      const body = text.slice(bodyStart, end);
      // Delimiters start a line (RFC 2046 §5.1.1); the close delimiter has "--" after the boundary.
      const re = new RegExp(`(^|\\r?\\n)${delimiter.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(--)?[ \\t]*(?=\\r?\\n|$)`, 'g');
      let prev: number | null = null;
      for (let hit = re.exec(body); hit; hit = re.exec(body)) {
        const at = bodyStart + hit.index;
        if (prev !== null) walk(prev, at, depth + 1);
        if (hit[2]) {
          prev = null;
          break;
        }
        prev = bodyStart + hit.index + hit[0].length;
        prev += text.startsWith('\r\n', prev) ? 2 : text.startsWith('\n', prev) ? 1 : 0;
      }
      // A multipart without its close delimiter: its last part runs to the end.
      if (prev !== null) walk(prev, end, depth + 1);
    } else if (type === 'message/rfc822' && (part.encoding === '' || part.encoding === '7bit' || part.encoding === '8bit' || part.encoding === 'binary')) {
      walk(bodyStart, end, depth + 1);
    }
  };

  walk(0, text.length, 0);
  return { parts, truncated };
}

/** Decoded attachments with their hashes; an unparseable message gives an empty list and the reason. */
export async function attachmentsOf(raw: Uint8Array): Promise<{ attachments: AttachmentInfo[]; error: string | null }> {
  try {
    const parsed = await PostalMime.parse(raw, { attachmentEncoding: 'arraybuffer', maxNestingDepth: LIMITS.maxDepth } as Parameters<typeof PostalMime.parse>[1]);
    const attachments = parsed.attachments.slice(0, LIMITS.maxParts).map((a) => {
      const content = typeof a.content === 'string' ? Buffer.from(a.content) : Buffer.from(a.content as ArrayBuffer);
      return { filename: a.filename ?? null, type: (a.mimeType ?? '').slice(0, 100), bytes: content.byteLength, sha256: createHash('sha256').update(content).digest('hex') };
    });
    return { attachments, error: null };
  } catch (err) {
    return { attachments: [], error: `the MIME structure could not be decoded (${(err as Error).message.slice(0, 120)})` };
  }
}
