/*
 * web/html — the one way the console writes HTML: a tagged template in which
 * every interpolation is escaped unless it is already SafeHtml (made by this
 * module). Arrays are joined, null/undefined/false render as nothing.
 *
 * Trusts nothing it interpolates: subjects, addresses, header blocks and file
 * names came in a message and are written by whoever wrote the worm. Besides
 * the HTML metacharacters it neutralises control characters (CR, LF outside
 * <pre>-meant text, NUL…) and the bidirectional overrides/isolates that make
 * "gpj.exe" read as "exe.jpg" (Trojan-Source style), so what the postmaster
 * reads is what the bytes say.
 *
 * Must never: hand back a string that a caller could concatenate unescaped
 * into markup (SafeHtml is a class, not a string); put a value into a script,
 * a style, or an event-handler attribute (there are none: the CSP forbids
 * inline script, and nothing here writes one).
 */

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;', '`': '&#96;' };

// C0 controls except TAB and LF, DEL, C1 controls, bidi marks/embeddings/overrides/isolates, BOM, line/paragraph separators.
const UNSAFE_INLINE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]/g;
const NEWLINES = /\r\n|\r|\n/g;

/** Marks a fragment as markup. Only this module and trusted constants make these. */
export class SafeHtml {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

/** The visible stand-in for a character we will not render: U+FFFD reads as "something was here". */
const REPLACEMENT = '\ufffd';

/**
 * Escapes one value for element content or a double-quoted attribute.
 * Line breaks become spaces (a header value must never look like two lines);
 * use `preText` for text meant to keep its lines.
 */
export function escapeHtml(value: unknown): string {
  return String(value)
    .replace(NEWLINES, ' ')
    .replace(/\t/g, ' ')
    .replace(UNSAFE_INLINE, REPLACEMENT)
    .replace(/[&<>"'`]/g, (c) => ESCAPES[c]!);
}

/** For a <pre> block: keeps line structure (CRLF → LF), neutralises everything else like escapeHtml. */
export function preText(value: string): SafeHtml {
  const text = value
    .replace(NEWLINES, '\n')
    .replace(UNSAFE_INLINE, REPLACEMENT)
    .replace(/[&<>"'`]/g, (c) => ESCAPES[c]!);
  return new SafeHtml(text);
}

function render(value: unknown): string {
  if (value === null || value === undefined || value === false) return '';
  if (value instanceof SafeHtml) return value.value;
  if (Array.isArray(value)) return value.map(render).join('');
  return escapeHtml(value);
}

/** html`<td>${subject}</td>`: escapes every interpolation. */
export function html(strings: TemplateStringsArray, ...values: unknown[]): SafeHtml {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) out += render(values[i]) + strings[i + 1]!;
  return new SafeHtml(out);
}

/** A constant piece of markup written in this codebase (never a value from a request or a message). */
export function trusted(markup: string): SafeHtml {
  return new SafeHtml(markup);
}

/**
 * A peer-supplied string for a table cell: escaped, cut to `max` characters
 * (a 10 kB subject must not make a row a screen tall), the full value kept in
 * a title attribute up to 2,000 characters so it can still be read.
 */
export function clip(value: string | null | undefined, max = 80): SafeHtml {
  if (value === null || value === undefined || value === '') return html`<span class="none">—</span>`;
  if (value.length <= max) return html`${value}`;
  return html`<span title="${value.slice(0, 2000)}">${value.slice(0, max - 1)}…</span>`;
}

/** ISO-8601 in UTC, to the second: postmasters compare times across logs of many machines. */
export function utc(date: Date | string | null | undefined): string {
  if (!date) return '';
  const d = typeof date === 'string' ? new Date(date) : date;
  return Number.isNaN(d.getTime()) ? '' : d.toISOString().replace('T', ' ').replace(/\.\d{3}Z$/, 'Z');
}

/** A span for people: "2 h 13 min", "3 d 4 h", "45 min", "under 1 min" (two units at most; a desk plans in hours, not seconds). */
export function duration(ms: number): string {
  const min = Math.floor(Math.abs(ms) / 60_000);
  if (min < 1) return 'under 1 min';
  const d = Math.floor(min / 1440);
  const h = Math.floor((min % 1440) / 60);
  const m = min % 60;
  if (d > 0) return h ? `${d} d ${h} h` : `${d} d`;
  if (h > 0) return m ? `${h} h ${m} min` : `${h} h`;
  return `${m} min`;
}

/** When `at` is, seen from `now`: "in 2 h 13 min" or "2 h 13 min ago". */
export function fromNow(at: Date | string, now: Date): string {
  const ms = new Date(at).getTime() - now.getTime();
  return ms >= 0 ? `in ${duration(ms)}` : `${duration(ms)} ago`;
}

/** 1536 → "1.5 kB". */
export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} kB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

/** Query-string builder for links: every value percent-encoded. */
export function qs(params: Record<string, string | number | undefined | null>): string {
  const parts = Object.entries(params)
    .filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`);
  return parts.length ? `?${parts.join('&')}` : '';
}
