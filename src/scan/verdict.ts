/*
 * scan/verdict — the closed set of things a scan can conclude.
 *
 * Every path through the scanner ends in exactly one of these. Timeouts,
 * exceptions, limits and scanner errors become `unscannable`, never `clean`:
 * a message we could not look at is not a message we looked at.
 */
export type Verdict =
  | { kind: 'clean' }
  | { kind: 'infected'; name: string; engine: 'clamd' | 'builtin' }
  | { kind: 'banned'; test: string }
  | { kind: 'unscannable'; reason: string };

export type VerdictKind = Verdict['kind'];

/** A verdict that is not clean: what a finding concludes. */
export type Concern = Exclude<Verdict, { kind: 'clean' }>;

export const clean: Verdict = { kind: 'clean' };
export const infected = (name: string, engine: 'clamd' | 'builtin' = 'clamd'): Concern => ({ kind: 'infected', name, engine });
export const banned = (test: string): Concern => ({ kind: 'banned', test });
export const unscannable = (reason: string): Concern => ({ kind: 'unscannable', reason });

/** The detail that names what was found: malware name, failed test, or why it could not be scanned. */
export function verdictDetail(v: Verdict): string | null {
  switch (v.kind) {
    case 'clean':
      return null;
    case 'infected':
      return v.name;
    case 'banned':
      return v.test;
    case 'unscannable':
      return v.reason;
  }
}

/** `clean`, `infected NAME`, `banned TEST`, `unscannable REASON` — the form `backstop scan` prints. */
export function formatVerdict(v: Verdict): string {
  const detail = verdictDetail(v);
  return detail === null ? v.kind : `${v.kind} ${detail}`;
}

/**
 * When several checks disagree the most serious wins: infected beats banned
 * beats unscannable beats clean. (An infected finding is certain; a message that
 * is both banned and partly unscannable is still refused as banned.)
 */
const SEVERITY: Record<VerdictKind, number> = { clean: 0, unscannable: 1, banned: 2, infected: 3 };
export function worst(a: Verdict, b: Verdict): Verdict {
  return SEVERITY[b.kind] > SEVERITY[a.kind] ? b : a;
}
