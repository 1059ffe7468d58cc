/*
 * cli/commands/customers — `backstop customers import FILE.csv | list`.
 *
 * import reads the ISP's customer export (desk/customers.ts: id,name,email,
 * phone,language,time_zone,lines), checks every row first and writes nothing
 * when any is bad (each problem: line, column, value, what was expected);
 * re-importing the same file changes nothing. The import is audited.
 * Exit 0 done, 2 bad file or environment.
 */
import { importCustomers, listCustomers } from '../../desk/customers.ts';
import { cleanText } from '../../obs/clean.ts';
import { audit } from '../../store/audit.ts';
import { operator, parseCommandArgs, parseLimit } from '../args.ts';
import { readInputText } from '../files.ts';
import { CONFIG_OPTION, withStore } from '../store.ts';
import { UsageError, type Command } from '../command.ts';


export const command: Command = {
  summary: 'Import the customers and their line identifiers from CSV, or list them.',
  usage: 'backstop customers import FILE.csv | list [--after ID] [--limit N]  [--config FILE]',
  async run(args) {
    const { values, positionals } = parseCommandArgs(args, {
      ...CONFIG_OPTION,
      limit: { type: 'string' },
      after: { type: 'string' },
    });
    const [sub, file] = positionals;
    if (sub !== 'import' && sub !== 'list') throw new UsageError('expected import or list');
    if (sub === 'import' && (!file || positionals.length !== 2)) throw new UsageError('import needs exactly one CSV file');
    const limit = parseLimit(values.limit);
    const text = sub === 'import' ? readInputText(file!) : '';
    return withStore(values.config, async (store) => {
      if (sub === 'import') {
        const r = await importCustomers(store.db, text);
        await audit(store.db, operator(), 'customers.import', file!, { ...r });
        console.log(`${r.read} read, ${r.added} added, ${r.updated} updated, ${r.unchanged} unchanged; lines ${r.linesAdded} set, ${r.linesRemoved} removed`);
        return 0;
      }
      for (const c of await listCustomers(store.db, { limit, after: values.after })) {
        const lines = c.lines.map((l) => `${l.kind}:${l.value}`).join(';');
        console.log([c.id, c.name, c.email ?? '', c.language, c.timeZone, lines].map((v) => cleanText(v, 200)).join('\t'));
      }
      return 0;
    });
  },
};
