/*
 * cli/commands/rdap — `backstop rdap refresh`: keeps the RDAP bootstrap files
 * (which registry serves which address range) current. Backstop ships a copy,
 * so abuse-contact lookup works offline; this replaces it with IANA's latest
 * under dataDir/rdap, where every node configured with "builtin" reads it.
 */
import { IANA_BOOTSTRAP, refreshBootstrapFiles } from '../../notify/lookup.ts';
import { parseCommandArgs } from '../args.ts';
import { CONFIG_OPTION, commandConfig } from '../store.ts';
import { UsageError, type Command } from '../command.ts';

export const command: Command = {
  summary: "Refresh the RDAP bootstrap files from IANA (or the given URLs/files) into the data directory.",
  usage: 'backstop rdap refresh [--config FILE] [--ipv4 URL|FILE] [--ipv6 URL|FILE]',
  async run(args) {
    const { values, positionals } = parseCommandArgs(args, {
      ...CONFIG_OPTION,
      ipv4: { type: 'string' },
      ipv6: { type: 'string' },
    });
    if (positionals[0] !== 'refresh' || positionals.length !== 1) throw new UsageError('expected the subcommand "refresh"');
    const config = commandConfig(values.config);
    const sources = { ipv4: values.ipv4 ?? IANA_BOOTSTRAP.ipv4, ipv6: values.ipv6 ?? IANA_BOOTSTRAP.ipv6 };
    try {
      const counts = await refreshBootstrapFiles(config.dataDir, sources);
      console.log(`rdap bootstrap refreshed in ${config.dataDir}/rdap: ${counts.ipv4} IPv4 and ${counts.ipv6} IPv6 service entries`);
      return 0;
    } catch (err) {
      console.error(`backstop rdap refresh: ${(err as Error).message}; the files in use were kept. Check the network or pass --ipv4/--ipv6 with a reachable URL or a downloaded file.`);
      return 2;
    }
  },
};
