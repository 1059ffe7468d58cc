/*
 * config/mask — a configuration (or any part of one) made fit to print: the
 * values of keys that name a secret, password or key, and the userinfo in
 * URLs (postgres://user:secret@host), are replaced by `*****`. Used by
 * `backstop config check` and the console's settings page, so both show the
 * same thing. It never changes its input; it returns a masked copy.
 */

/** Userinfo in URLs (postgres://user:secret@host) is masked in anything printed. */
export function maskSecrets(value: unknown): unknown {
  if (typeof value === 'string') return value.replace(/(\/\/[^/:@\s]+):[^@\s]+@/, '$1:*****@');
  if (Array.isArray(value)) return value.map(maskSecrets);
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, /secret|password|key$/i.test(k) && typeof v === 'string' ? '*****' : maskSecrets(v)]),
    );
  }
  return value;
}
