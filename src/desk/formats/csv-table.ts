/*
 * desk/formats/csv-table — the common part of the desk's own CSV formats
 * (static assignments, CGNAT blocks): csv-parse reads the file (RFC 4180
 * quoting, BOM), a zod schema checks each row, and every problem is reported
 * with its line, column, value and what was expected — nothing is imported
 * from a file with any bad row.
 */
import { parse as parseCsv } from 'csv-parse/sync';
import { z } from 'zod';

export interface CsvProblem {
  line: number;
  column: string;
  value: string;
  expected: string;
}

export class CsvFormatError extends Error {
  constructor(readonly what: string, readonly problems: CsvProblem[]) {
    super(
      `${problems.length} problem(s) in the ${what} file, nothing imported:\n` +
        problems
          .slice(0, 20)
          .map((p) => `  line ${p.line}, column ${p.column}: ${JSON.stringify(p.value.slice(0, 80))} — expected ${p.expected}`)
          .join('\n'),
    );
  }
}

/** An instant: ISO 8601 with a zone (Z or ±hh:mm), or a bare date meaning 00:00 UTC. */
export const instant = z
  .string()
  .trim()
  .refine((v) => /^\d{4}-\d{2}-\d{2}$/.test(v) || (/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/i.test(v) && !Number.isNaN(Date.parse(v.replace(' ', 'T')))), 'an ISO 8601 time with a zone (2026-01-31T12:00:00Z) or a date')
  .transform((v) => new Date(/^\d{4}-\d{2}-\d{2}$/.test(v) ? `${v}T00:00:00Z` : v.replace(' ', 'T')));

export const optionalInstant = z.union([z.literal('').transform(() => null), instant]);

export const customerId = z.string().trim().regex(/^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$/, 'a customer id');

/**
 * The text with every line break an editor shows as one (CRLF, LF, a lone CR) made LF. Left to
 * itself, csv-parse guesses the delimiter from the first break it meets and counts CR and LF apart
 * inside quotes: a file with mixed endings then merges rows, and its errors name lines the file
 * does not have (found by test/fuzz/leases.test.ts).
 */
export function unixLines(text: string): string {
  return text.replace(/\r\n?/g, '\n');
}

/** Reads the file and checks every row against `row`; throws CsvFormatError listing all problems. */
export function readCsvTable<S extends z.ZodType>(what: string, text: string, columns: readonly string[], row: S): { line: number; value: z.output<S> }[] {
  let records: { record: Record<string, string>; info: { lines: number } }[];
  try {
    records = parseCsv(unixLines(text), { columns: (h: string[]) => h.map((c) => c.trim().toLowerCase()), info: true, bom: true, skip_empty_lines: true });
  } catch (err) {
    const e = err as Error & { lines?: number };
    throw new CsvFormatError(what, [{ line: e.lines ?? 0, column: '-', value: '', expected: `well-formed CSV (${e.message})` }]);
  }
  const header = records.length > 0 ? Object.keys(records[0]!.record) : (text.replace(/^\ufeff/, '').split(/\r?\n/, 1)[0] ?? '').split(',').map((c) => c.trim().toLowerCase());
  const missing = columns.filter((c) => !header.includes(c));
  if (missing.length) throw new CsvFormatError(what, missing.map((c) => ({ line: 1, column: c, value: '', expected: `a header row with the columns ${columns.join(',')}` })));
  const problems: CsvProblem[] = [];
  const out: { line: number; value: z.output<S> }[] = [];
  for (const { record, info } of records) {
    const raw = Object.fromEntries(columns.map((c) => [c, record[c] ?? '']));
    const parsed = row.safeParse(raw);
    if (!parsed.success) {
      for (const issue of parsed.error.issues) {
        const column = String(issue.path[0] ?? '-');
        problems.push({ line: info.lines, column, value: raw[column] ?? '', expected: issue.message });
      }
    } else out.push({ line: info.lines, value: parsed.data });
  }
  if (problems.length) throw new CsvFormatError(what, problems);
  return out;
}
