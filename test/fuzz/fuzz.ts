/*
 * test/fuzz/fuzz — what every property test under test/fuzz shares: how
 * many runs (small in `npm test`, FUZZ_RUNS in `npm run fuzz`), the seed
 * (FUZZ_SEED replays a failure), the seed corpus on disk, a clock around
 * each call (a parser that takes longer than its limit on a small input is
 * a hang), and one line per property saying what ran.
 *
 * fast-check shrinks a failing input to a small one and prints it with the
 * seed and path: paste those into FUZZ_SEED/FUZZ_PATH to replay, then check
 * the shrunk input in as a named regression test (test/fuzz/regressions.test.ts).
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { TestContext } from 'node:test';
import fc from 'fast-check';

const envRuns = Number(process.env.FUZZ_RUNS ?? '');
/** Set by `npm run fuzz`: every property runs this many times instead of its CI count. */
export const LONG_RUNS = Number.isInteger(envRuns) && envRuns > 0 ? envRuns : null;
const envSeed = Number(process.env.FUZZ_SEED ?? '');
const SEED = Number.isInteger(envSeed) && process.env.FUZZ_SEED ? envSeed : undefined;
const PATH = process.env.FUZZ_PATH || undefined;

/** fast-check parameters: `ci` runs in `npm test`, FUZZ_RUNS in `npm run fuzz`; slow properties scale down by `share`. */
export function params<T>(ci: number, share = 1): fc.Parameters<T> {
  const numRuns = LONG_RUNS === null ? ci : Math.max(ci, Math.round(LONG_RUNS * share));
  return { numRuns, includeErrorInReport: true, ...(SEED !== undefined ? { seed: SEED } : {}), ...(PATH !== undefined && SEED !== undefined ? { path: PATH } : {}) };
}

/** Times calls; `worst` is the slowest seen, for the report line and the hang check. */
export class Clock {
  worst = 0;
  calls = 0;
  constructor(readonly limitMs: number) {}

  private note(started: bigint, what: string): void {
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    this.calls++;
    if (ms > this.worst) this.worst = ms;
    if (ms > this.limitMs) throw new Error(`${what} took ${ms.toFixed(0)} ms, over its ${this.limitMs} ms limit (a hang on a small input)`);
  }

  sync<T>(what: string, fn: () => T): T {
    const started = process.hrtime.bigint();
    try {
      return fn();
    } finally {
      this.note(started, what);
    }
  }

  async async<T>(what: string, fn: () => Promise<T>): Promise<T> {
    const started = process.hrtime.bigint();
    try {
      return await fn();
    } finally {
      this.note(started, what);
    }
  }
}

/** Runs a property and reports what it ran (runs, seed when fixed, slowest call). */
export async function check<Ts extends [unknown, ...unknown[]]>(
  t: TestContext,
  property: fc.IPropertyWithHooks<Ts> | fc.IAsyncPropertyWithHooks<Ts>,
  parameters: fc.Parameters<Ts>,
  clock?: Clock,
): Promise<void> {
  const started = Date.now();
  await fc.assert(property as fc.IAsyncPropertyWithHooks<Ts>, parameters);
  const line = `${parameters.numRuns} runs${parameters.seed !== undefined ? `, seed ${parameters.seed}` : ''} in ${Date.now() - started} ms${clock ? `, slowest call ${clock.worst.toFixed(1)} ms (limit ${clock.limitMs})` : ''}`;
  t.diagnostic(line);
  if (LONG_RUNS !== null) console.log(`fuzz: ${t.fullName}: ${line}`);
}

const CORPUS = new URL('./corpus/', import.meta.url);

/** The seed files of one corpus folder (test/fuzz/corpus/NAME), as bytes, sorted by name. */
export function corpus(name: string): { file: string; bytes: Buffer }[] {
  const dir = new URL(`${name}/`, CORPUS);
  return readdirSync(dir)
    .filter((f) => !f.startsWith('.') && f !== 'README.md')
    .sort()
    .map((file) => ({ file, bytes: readFileSync(new URL(file, dir)) }));
}

/**
 * A seed file changed the way mutation fuzzers change one: some of its bytes
 * overwritten, a slice cut out, another slice repeated, cut short.
 */
export function mutated(seeds: readonly Buffer[]): fc.Arbitrary<Buffer> {
  const edit = fc.oneof(
    fc.record({ kind: fc.constant('set' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
    fc.record({ kind: fc.constant('cut' as const), at: fc.nat(), length: fc.nat({ max: 64 }) }),
    fc.record({ kind: fc.constant('repeat' as const), at: fc.nat(), length: fc.nat({ max: 64 }), times: fc.integer({ min: 1, max: 20 }) }),
    fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
    fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), text: fc.constantFrom('\r\n', '\n', '\r', '\0', '--', '=', '==', ';', '"', '\\', ':', ' ', '\t', '=?utf-8?b?', '?=', 'PK\x03\x04', 'PK\x01\x02', 'PK\x05\x06', '\xff\xfe', 'begin 644 x.exe\n', '\r\n\r\n') }),
  );
  return fc.tuple(fc.constantFrom(...seeds), fc.array(edit, { minLength: 1, maxLength: 6 })).map(([seed, edits]) => {
    let b = Buffer.from(seed);
    for (const e of edits) {
      const at = b.length === 0 ? 0 : e.at % (b.length + 1);
      if (e.kind === 'set') {
        b = Buffer.from(b);
        Buffer.from(e.bytes).copy(b, Math.min(at, Math.max(0, b.length - e.bytes.length)));
      } else if (e.kind === 'cut') b = Buffer.concat([b.subarray(0, at), b.subarray(at + e.length)]);
      else if (e.kind === 'repeat') b = Buffer.concat([b.subarray(0, at), ...Array<Buffer>(e.times).fill(b.subarray(at, at + e.length)), b.subarray(at)]);
      else if (e.kind === 'truncate') b = b.subarray(0, at);
      else b = Buffer.concat([b.subarray(0, at), Buffer.from(e.text, 'latin1'), b.subarray(at)]);
    }
    return b;
  });
}

/** Bytes that look like mail more often than random bytes do: header-ish lines, boundaries, encodings. */
export const mailish: fc.Arbitrary<Buffer> = fc
  .array(
    fc.oneof(
      { weight: 3, arbitrary: fc.constantFrom('Content-Type: multipart/mixed; boundary="b"', 'Content-Type: multipart/alternative; boundary=b', 'Content-Type: message/rfc822', 'Content-Type: text/plain; charset=iso-8859-1', 'Content-Type: application/zip; name="a.zip"', 'Content-Type: multipart/report; report-type=delivery-status; boundary="b"', 'Content-Type: message/delivery-status', 'Content-Type: text/rfc822-headers', 'Content-Transfer-Encoding: base64', 'Content-Transfer-Encoding: quoted-printable', 'Content-Transfer-Encoding: x-uuencode', 'Content-Disposition: attachment; filename*0="a"; filename*1=".exe"', 'Content-Disposition: attachment; filename="=?utf-8?b?YS5leGU=?="', 'Subject: =?utf-8?q?Undeliver=C3=A9?=', 'From: MAILER-DAEMON@example.org', 'Return-Path: <>', 'Auto-Submitted: auto-replied', 'Received: from x ([192.0.2.1]) by y; Thu, 29 Apr 2015 23:34:45 +0900', 'Final-Recipient: rfc822; a@b', 'Action: failed', 'Status: 5.1.1', '--b', '--b--', '', '', 'MIME-Version: 1.0') },
      { weight: 1, arbitrary: fc.string({ maxLength: 80 }) },
      { weight: 1, arbitrary: fc.base64String({ maxLength: 80 }) },
    ),
    { maxLength: 60 },
  )
  .chain((lines) => fc.constantFrom('\r\n', '\n').map((eol) => Buffer.from(lines.join(eol), 'utf8')));
