/*
 * cli/store — the one way a `backstop` subcommand finds its configuration and
 * opens the store the nodes share: load the configuration (--config FILE, else
 * $BACKSTOP_CONFIG, else the embedded defaults, as `serve` does), open the
 * store (migrations included), run the command's work, and close the store
 * whatever happens. It catches nothing: a ConfigError, a UsageError or a store
 * that cannot be opened reaches cli/main, which turns it into one line on
 * stderr and exit 2, the same for every command.
 * It must never leave a store open (a PGlite directory stays locked, a pool
 * keeps the process alive).
 */
import { loadConfig } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import type { Store } from '../store/store.ts';

/** `--config FILE` (`-c FILE`), the option of every subcommand that reads the configuration: its value goes to commandConfig or withStore. */
export const CONFIG_OPTION = { config: { type: 'string', short: 'c' } } as const;

/** The configuration a subcommand runs on: the file named by --config, else $BACKSTOP_CONFIG, else the embedded defaults. */
export function commandConfig(configPath: string | undefined): Config {
  return loadConfig(configPath ?? process.env.BACKSTOP_CONFIG);
}

/** Loads the configuration, opens its store, runs `fn` on both and closes the store, also when `fn` throws. */
export async function withStore<T>(configPath: string | undefined, fn: (store: Store, config: Config) => Promise<T>): Promise<T> {
  return withConfigStore(commandConfig(configPath), fn);
}

/** The same on a configuration already loaded (serve reads it first to know whether it is a cluster's primary). */
export async function withConfigStore<T>(config: Config, fn: (store: Store, config: Config) => Promise<T>): Promise<T> {
  // Loaded here, not at the top: commands that only read the configuration (scan, config check) do not pay for pg and Kysely.
  const { openStore } = await import('../store/store.ts');
  const store = await openStore(config.store);
  try {
    return await fn(store, config);
  } finally {
    await store.close();
  }
}
