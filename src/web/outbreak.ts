/*
 * web/outbreak — decides whether a malware name is breaking out: its rate in
 * the last few minutes against its own rate in the hour before. Pure: the
 * dashboard counts, this judges, a table-driven test pins the edges.
 *
 * A name never seen in the baseline is judged against a floor of one message
 * per baseline window (a brand-new worm at 5 a minute is an outbreak; one
 * stray detection is not, hence minRecent). Ratios are of per-minute rates,
 * so the two windows may differ in length.
 */

export interface OutbreakSettings {
  /** The recent window, minutes. */
  recentMinutes: number;
  /** The baseline window just before it, minutes. */
  baselineMinutes: number;
  /** At least this many detections in the recent window. */
  minRecent: number;
  /** The recent rate must be at least this many times the baseline rate. */
  factor: number;
}

export const OUTBREAK_DEFAULTS: OutbreakSettings = { recentMinutes: 10, baselineMinutes: 60, minRecent: 5, factor: 5 };

export interface NameCounts {
  name: string;
  /** Detections in the recent window. */
  recent: number;
  /** Detections in the baseline window. */
  baseline: number;
}

export interface Outbreak extends NameCounts {
  /** Messages per minute in the recent window. */
  recentRate: number;
  /** How many times the baseline rate (with its floor) the recent rate is. */
  ratio: number;
}

/** The names breaking out, the steepest rise first. */
export function outbreaks(counts: readonly NameCounts[], s: OutbreakSettings = OUTBREAK_DEFAULTS): Outbreak[] {
  const floor = 1 / s.baselineMinutes;
  return counts
    .flatMap((c) => {
      const recentRate = c.recent / s.recentMinutes;
      const ratio = recentRate / Math.max(c.baseline / s.baselineMinutes, floor);
      return c.recent >= s.minRecent && ratio >= s.factor ? [{ ...c, recentRate, ratio }] : [];
    })
    .sort((a, b) => b.ratio - a.ratio || b.recent - a.recent || (a.name < b.name ? -1 : 1));
}
