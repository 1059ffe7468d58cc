/*
 * cli/commands/config — `backstop config check [--config FILE]`: validates a
 * configuration the way `serve` would and prints the effective result, so an
 * operator finds every mistake before a restart rather than after.
 */
import { stringify } from 'yaml';
import { loadConfig } from '../../config/load.ts';
import { parseCommandArgs } from '../args.ts';
import { UsageError, type Command } from '../main.ts';

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

export const command: Command = {
  summary: 'Validate a configuration file and print the effective configuration (secrets masked).',
  usage: 'backstop config check [--config FILE]',
  async run(args) {
    const { values, positionals } = parseCommandArgs(args, { config: { type: 'string', short: 'c' } });
    if (positionals[0] !== 'check' || positionals.length !== 1) throw new UsageError('expected the subcommand "check"');
    const config = loadConfig(values.config);
    process.stdout.write(stringify(maskSecrets(config)));
    return 0;
  },
};
