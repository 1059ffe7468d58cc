/*
 * cli/args — the options of one subcommand, parsed with Node's own parseArgs
 * and reported as a UsageError (exit 2) that names the bad option.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from './command.ts';

export function parseCommandArgs<T extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: T) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message.replace(/\. To specify .*$/s, ''));
  }
}

/** `SUB [ID]`: the subcommand must be one of `allowed`; every one but `list` takes exactly one id. */
export function subcommandWithId(positionals: string[], allowed: readonly string[], what: string): { sub: string; id: string | undefined } {
  const [sub, id] = positionals;
  if (!sub || !allowed.includes(sub)) throw new UsageError(`expected ${allowed.slice(0, -1).join(', ')} or ${allowed.at(-1)}`);
  if (sub !== 'list' && (!id || positionals.length !== 2)) throw new UsageError(`${sub} needs exactly one ${what} id`);
  return { sub, id };
}

/** `--limit N`: a whole number from 1 to 10000, 100 when absent. */
export function parseLimit(value: string | undefined): number {
  const limit = value === undefined ? 100 : Number(value);
  if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw new UsageError('--limit must be a whole number from 1 to 10000');
  return limit;
}

/** Who runs this command, for the audit log: `cli:USER` (the sudo user behind root when there is one). */
export function operator(): string {
  return `cli:${process.env.SUDO_USER || process.env.USER || 'unknown'}`;
}
