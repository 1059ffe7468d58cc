/*
 * cli/commands/config — `backstop config check [--config FILE]`: validates a
 * configuration the way `serve` would and prints the effective result, so an
 * operator finds every mistake before a restart rather than after.
 */
import { stringify } from 'yaml';
import { maskSecrets } from '../../config/mask.ts';
import { parseCommandArgs } from '../args.ts';
import { CONFIG_OPTION, commandConfig } from '../store.ts';
import { UsageError, type Command } from '../command.ts';

export const command: Command = {
  summary: 'Validate a configuration file and print the effective configuration (secrets masked).',
  usage: 'backstop config check [--config FILE]',
  async run(args) {
    const { values, positionals } = parseCommandArgs(args, CONFIG_OPTION);
    if (positionals[0] !== 'check' || positionals.length !== 1) throw new UsageError('expected the subcommand "check"');
    const config = commandConfig(values.config);
    process.stdout.write(stringify(maskSecrets(config)));
    return 0;
  },
};
