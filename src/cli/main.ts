/*
 * cli/main — the one `backstop` command.
 *
 * Each subcommand lives in its own module under ./commands and is loaded only
 * when it runs, so `backstop scan` does not pay for the web server's imports.
 * Exit codes: 0 success, 1 a negative answer (not clean, not found), 2 an error
 * in the input or the environment; errors are one line on stderr that says
 * what was wrong and what to do.
 */
import { UsageError, type Command } from './command.ts';

/** Lazily loaded subcommands; each role adds its own line. */
const COMMANDS: Record<string, () => Promise<{ command: Command }>> = {
  serve: () => import('./commands/serve.ts'),
  scan: () => import('./commands/scan.ts'),
  quarantine: () => import('./commands/quarantine.ts'),
  config: () => import('./commands/config.ts'),
  replay: () => import('./commands/replay.ts'),
  outbox: () => import('./commands/outbox.ts'),
  classify: () => import('./commands/classify.ts'),
  batv: () => import('./commands/batv.ts'),
  user: () => import('./commands/user.ts'),
  rdap: () => import('./commands/rdap.ts'),
  customers: () => import('./commands/customers.ts'),
  leases: () => import('./commands/leases.ts'),
  attribute: () => import('./commands/attribute.ts'),
  incident: () => import('./commands/incident.ts'),
  'desk-queue': () => import('./commands/desk-queue.ts'),
  init: () => import('./commands/init.ts'),
};

function help(): string {
  return [
    'usage: backstop <command> [options]',
    '',
    'commands:',
    ...Object.keys(COMMANDS).sort().map((name) => `  ${name}`),
    '',
    'Run `backstop <command> --help` for the options of one command.',
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(help());
    return name ? 0 : 2;
  }
  if (name === '--version' || name === 'version') {
    const { version } = await import('../version.ts');
    console.log(version);
    return 0;
  }
  const load = COMMANDS[name];
  if (!load) {
    console.error(`backstop: unknown command "${name}"\n\n${help()}`);
    return 2;
  }
  const { command } = await load();
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(`${command.summary}\n\nusage: ${command.usage}`);
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (err) {
    // A usage error adds the usage; a bad configuration, a store that cannot be opened or anything else is its message alone.
    console.error(`backstop ${name}: ${(err as Error).message}${err instanceof UsageError ? `\nusage: ${command.usage}` : ''}`);
    return 2;
  }
}
