/*
 * test/helpers/skewed-clock — loaded into a `backstop serve` child with
 * NODE_OPTIONS=--import, it moves that process's wall clock by
 * BACKSTOP_TEST_CLOCK_OFFSET_MS (Date.now(), new Date()), as a host whose NTP
 * is off would. Timers (setTimeout) and the monotonic clock are untouched,
 * as on such a host. Test-only: nothing in src/ reads it, so no production
 * node can be skewed by an environment variable.
 */
const offset = Number(process.env.BACKSTOP_TEST_CLOCK_OFFSET_MS ?? '0');
if (!Number.isFinite(offset)) throw new Error('BACKSTOP_TEST_CLOCK_OFFSET_MS must be a number of milliseconds');
const RealDate = Date;
class SkewedDate extends RealDate {
  constructor(...args) {
    if (args.length === 0) super(RealDate.now() + offset);
    else super(...args);
  }
  static now() {
    return RealDate.now() + offset;
  }
}
globalThis.Date = SkewedDate;
