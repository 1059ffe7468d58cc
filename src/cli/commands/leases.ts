/*
 * cli/commands/leases — `backstop leases import --format F FILE | status`.
 *
 * import hands FILE to the parser src/desk/formats/<F>.ts and merges what it
 * yields (desk/leases.ts): lease formats (isc-dhcpd, kea-csv, radius-detail)
 * export parse(text) → LeaseRecord[]; the desk's own CSV formats
 * (static-csv, cgnat-csv) export importText(db, text, source). Safe to run
 * from cron on a growing file: re-reading adds nothing twice. status lists
 * the latest runs with their counts or error.
 * Exit 0 done, 2 bad file, unknown format or environment.
 */
import { resolve } from 'node:path';
import { importLeaseRecords, leaseImportStatus, type ImportCounts, type ImportSource, type LeaseRecord } from '../../desk/leases.ts';
import { cleanText } from '../../obs/clean.ts';
import type { Db } from '../../store/store.ts';
import { parseCommandArgs, parseLimit } from '../args.ts';
import { readInputText } from '../files.ts';
import { CONFIG_OPTION, withStore } from '../store.ts';
import { UsageError, type Command } from '../command.ts';

export const FORMATS = ['isc-dhcpd', 'kea-csv', 'radius-detail', 'static-csv', 'cgnat-csv'] as const;

interface FormatModule {
  parse?: (text: string) => LeaseRecord[];
  importText?: (db: Db, text: string, source: ImportSource) => Promise<ImportCounts>;
}

async function loadFormat(format: string): Promise<FormatModule> {
  if (!(FORMATS as readonly string[]).includes(format)) throw new UsageError(`--format must be one of ${FORMATS.join(', ')}`);
  try {
    return (await import(`../../desk/formats/${format}.ts`)) as FormatModule;
  } catch (err) {
    const e = err as Error & { code?: string };
    if (e.code === 'ERR_MODULE_NOT_FOUND' && e.message.includes(`${format}.ts`)) {
      throw new Error(`the ${format} parser is not installed in this build (src/desk/formats/${format}.ts is missing)`);
    }
    throw err;
  }
}

export const command: Command = {
  summary: 'Import lease, static-assignment or CGNAT files (idempotent), or show the import runs.',
  usage: `backstop leases import --format ${FORMATS.join('|')} FILE | status [--limit N]  [--config FILE]`,
  async run(args) {
    const { values, positionals } = parseCommandArgs(args, {
      ...CONFIG_OPTION,
      format: { type: 'string', short: 'f' },
      limit: { type: 'string' },
    });
    const [sub, file] = positionals;
    if (sub !== 'import' && sub !== 'status') throw new UsageError('expected import or status');
    const limit = parseLimit(values.limit ?? '20');
    let text = '';
    let mod: FormatModule | null = null;
    if (sub === 'import') {
      if (!values.format) throw new UsageError('import needs --format');
      if (!file || positionals.length !== 2) throw new UsageError('import needs exactly one FILE');
      mod = await loadFormat(values.format);
      text = readInputText(file);
    }
    return withStore(values.config, async (store) => {
      if (sub === 'import') {
        const source = { format: values.format!, file: resolve(file!) };
        const t0 = performance.now();
        let counts: ImportCounts;
        if (mod!.importText) counts = await mod!.importText(store.db, text, source);
        else if (mod!.parse) counts = await importLeaseRecords(store.db, mod!.parse(text), source);
        else throw new Error(`src/desk/formats/${values.format}.ts exports neither parse nor importText`);
        const ms = performance.now() - t0;
        console.log(`${counts.read} read, ${counts.added} added, ${counts.unchanged} unchanged, ${counts.closed} closed (${(ms / 1000).toFixed(2)} s)`);
        return 0;
      }
      for (const r of await leaseImportStatus(store.db, limit)) {
        const state = r.error ? `error: ${r.error.split('\n')[0]}` : r.finishedAt ? 'ok' : 'running';
        console.log(
          [r.startedAt.toISOString(), r.format, r.file, `read ${r.read}`, `added ${r.added}`, `unchanged ${r.unchanged}`, `closed ${r.closed}`, state].map((v) => cleanText(v, 300)).join('\t'),
        );
      }
      return 0;
    });
  },
};
