/*
 * cli/args — the options of one subcommand, parsed with Node's own parseArgs
 * and reported as a UsageError (exit 2) that names the bad option.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from './main.ts';

export function parseCommandArgs<T extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: T) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message.replace(/\. To specify .*$/s, ''));
  }
}
