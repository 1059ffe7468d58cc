/*
 * desk/zones — times in the customer's and the reporter's zones: the time a
 * forward or notice shows the customer (timeInZone), and the instant behind a
 * wall-clock time a reporter gave on the form or a desk agent in the console
 * (validZone, instantIn). Pure functions over Intl; one module because the
 * form, the console, the forward, the notice and the portal all need them.
 * Trusts nothing: a zone that is not a valid IANA name or ±HH:MM offset is
 * refused (validZone) or shown as UTC (timeInZone), never passed on.
 */

/** The IANA zone names this runtime knows, UTC first (the form offers them as suggestions). */
export const ZONES: readonly string[] = (() => {
  try {
    return ['UTC', ...(Intl as unknown as { supportedValuesOf(k: string): string[] }).supportedValuesOf('timeZone').filter((z) => z !== 'UTC')];
  } catch {
    return ['UTC'];
  }
})();

const OFFSET = /^[+-](0\d|1[0-4]):?[0-5]\d$/;

/** A zone the form and the console accept: an IANA name this runtime knows, or an offset ±HH:MM up to 14 h. */
export function validZone(zone: string): boolean {
  if (OFFSET.test(zone)) return true;
  if (!ZONES.includes(zone)) return false;
  try {
    new Intl.DateTimeFormat('en', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/** A wall-clock time in a zone (IANA name or ±HH:MM) → the instant. */
export function instantIn(date: string, time: string, zone: string): Date | null {
  const [y, mo, d] = date.split('-').map(Number) as [number, number, number];
  const [h, mi, s] = time.split(':').map(Number) as [number, number, number | undefined];
  const wall = Date.UTC(y, mo - 1, d, h, mi, s ?? 0);
  const check = new Date(wall);
  if (check.getUTCFullYear() !== y || check.getUTCMonth() !== mo - 1 || check.getUTCDate() !== d) return null;
  if (OFFSET.test(zone)) {
    const sign = zone.startsWith('-') ? -1 : 1;
    const digits = zone.slice(1).replace(':', '');
    return new Date(wall - sign * (Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2))) * 60_000);
  }
  // The zone's offset at the guessed instant, then again at the corrected one (DST changes).
  const offsetAt = (ms: number) => {
    const parts = new Intl.DateTimeFormat('en-US', { timeZone: zone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' }).formatToParts(new Date(ms));
    const g = (t: string) => Number(parts.find((p) => p.type === t)?.value);
    return Date.UTC(g('year'), g('month') - 1, g('day'), g('hour'), g('minute'), g('second')) - ms;
  };
  let at = wall - offsetAt(wall);
  at = wall - offsetAt(at);
  return new Date(at);
}

/** The reported time in the customer's zone, e.g. "2026-03-02 09:13:14 CET"; UTC when the zone is not a valid IANA name. */
export function timeInZone(at: Date, zone: string): { when: string; zone: string } {
  let tz = 'UTC';
  try {
    new Intl.DateTimeFormat('en', { timeZone: zone });
    tz = zone;
  } catch {
    tz = 'UTC';
  }
  const parts = new Intl.DateTimeFormat('en-CA', { timeZone: tz, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23', timeZoneName: 'short' }).formatToParts(at);
  const get = (t: string) => parts.find((p) => p.type === t)?.value ?? '';
  return { when: `${get('year')}-${get('month')}-${get('day')} ${get('hour')}:${get('minute')}:${get('second')} ${get('timeZoneName')}`, zone: tz };
}
