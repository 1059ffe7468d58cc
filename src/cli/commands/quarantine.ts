/*
 * cli/commands/quarantine — `backstop quarantine list|show ID|release ID|delete ID`.
 *
 * show prints the summary and the header block, never the body (it is the
 * worm). release delivers the whole raw message, unchanged, to its original
 * recipients through the configured next hop and succeeds only on the next
 * hop's 250; every release and delete is audited.
 * Exit 0 done, 1 not found / refused, 2 error.
 */
import { releaseQuarantined } from '../../edge/release.ts';
import { headerBlock } from '../../edge/headers.ts';
import { cleanText } from '../../obs/clean.ts';
import { audit } from '../../store/audit.ts';
import { getQuarantined, listQuarantine, markDeleted } from '../../store/quarantine.ts';
import { operator, parseCommandArgs, parseLimit, subcommandWithId } from '../args.ts';
import { CONFIG_OPTION, withStore } from '../store.ts';
import type { Command } from '../command.ts';


export const command: Command = {
  summary: 'List, show, release or delete quarantined messages.',
  usage: 'backstop quarantine list [--all] [--verdict V] | show ID | release ID | delete ID  [--config FILE]',
  async run(args) {
    const { values, positionals } = parseCommandArgs(args, {
      ...CONFIG_OPTION,
      all: { type: 'boolean' },
      verdict: { type: 'string' },
      limit: { type: 'string' },
    });
    const { sub, id } = subcommandWithId(positionals, ['list', 'show', 'release', 'delete'], 'quarantine');
    const limit = parseLimit(values.limit);
    return withStore(values.config, async (store, config) => {
      if (sub === 'list') {
        const rows = await listQuarantine(store.db, { includeDone: values.all, verdict: values.verdict, limit });
        for (const r of rows) {
          const state = r.deleted_at ? 'deleted' : r.released_at ? 'released' : 'held';
          console.log([r.id, r.created_at.toISOString(), state, `${r.verdict} ${r.verdict_detail ?? ''}`.trim(), `<${r.mail_from}>`, r.rcpt_to.join(',')].map((v) => cleanText(v, 200)).join('\t'));
        }
        return 0;
      }
      const row = await getQuarantined(store.db, id!);
      if (!row) {
        console.error(`no quarantined message with id ${cleanText(id!, 80)}`);
        return 1;
      }
      if (sub === 'show') {
        const summary = {
          id: row.id, received: row.created_at.toISOString(), client: row.client_ip, helo: row.helo, sender: row.mail_from,
          recipients: row.rcpt_to.join(', '), verdict: `${row.verdict} ${row.verdict_detail ?? ''}`.trim(), size: row.size, sha256: row.sha256,
          state: row.deleted_at ? 'deleted' : row.released_at ? `released by ${row.released_by}` : 'held',
        };
        for (const [k, v] of Object.entries(summary)) console.log(`${k.padEnd(11)}${cleanText(String(v), 500)}`);
        console.log('');
        // The header block only, each line cleaned: the body is the payload.
        for (const line of headerBlock(row.raw).split(/\r?\n/)) console.log(cleanText(line, 998));
        return 0;
      }
      if (sub === 'delete') {
        if (!(await markDeleted(store.db, row.id))) {
          console.error('already deleted');
          return 1;
        }
        await audit(store.db, operator(), 'quarantine.delete', row.id, {});
        console.log(`deleted ${row.id}`);
        return 0;
      }
      const result = await releaseQuarantined(store.db, config, row.id, operator());
      console.log(`${result.ok ? 'released' : 'not released'} ${row.id}: ${result.reply}`);
      return result.ok ? 0 : 1;
    });
  },
};
