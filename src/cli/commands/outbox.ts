/*
 * cli/commands/outbox — `backstop outbox list|show ID|retry ID|cancel ID|approve ID`:
 * everything Backstop will send or has tried to send (notices, reports,
 * complaints) is a job in the store; this shows and steers them.
 * Exit 0 done, 1 not found or not in a state that allows it, 2 error.
 */
import { loadConfig } from '../../config/load.ts';
import { cleanText } from '../../obs/clean.ts';
import { audit } from '../../store/audit.ts';
import { setState } from '../../store/jobs.ts';
import { isUuid } from '../../store/quarantine.ts';
import { openStore } from '../../store/store.ts';
import { parseCommandArgs, parseLimit, subcommandWithId } from '../args.ts';
import { UsageError, type Command } from '../main.ts';

const STATES = ['queued', 'running', 'done', 'failed', 'cancelled', 'review'];

export const command: Command = {
  summary: 'Show and steer the outbox: notices, abuse reports and complaints waiting, sent or failed.',
  usage: 'backstop outbox list [--state S] [--kind K] [--limit N] | show ID | retry ID | cancel ID | approve ID  [--config FILE]',
  async run(args) {
    const { values, positionals } = parseCommandArgs(args, {
      config: { type: 'string', short: 'c' },
      state: { type: 'string' },
      kind: { type: 'string' },
      limit: { type: 'string' },
    });
    const { sub, id } = subcommandWithId(positionals, ['list', 'show', 'retry', 'cancel', 'approve'], 'job');
    if (values.state && !STATES.includes(values.state)) throw new UsageError(`--state must be one of ${STATES.join(', ')}`);
    const limit = parseLimit(values.limit);
    const config = loadConfig(values.config);
    const store = await openStore(config.store);
    try {
      if (sub === 'list') {
        let q = store.db.selectFrom('jobs').select(['id', 'kind', 'state', 'attempts', 'run_at', 'last_error']).orderBy('created_at', 'desc').limit(limit);
        if (values.state) q = q.where('state', '=', values.state);
        if (values.kind) q = q.where('kind', '=', values.kind);
        for (const j of await q.execute()) {
          console.log([j.id, j.kind, j.state, String(j.attempts), j.run_at.toISOString(), j.last_error ?? ''].map((v) => cleanText(v, 200)).join('\t'));
        }
        return 0;
      }
      const job = isUuid(id!) ? await store.db.selectFrom('jobs').selectAll().where('id', '=', id!).executeTakeFirst() : undefined;
      if (!job) {
        console.error(`no job with id ${cleanText(id!, 80)}`);
        return 1;
      }
      if (sub === 'show') {
        for (const [k, v] of Object.entries({ ...job, payload: JSON.stringify(job.payload) })) {
          console.log(`${k.padEnd(13)}${cleanText(v instanceof Date ? v.toISOString() : String(v ?? ''), 2000)}`);
        }
        return 0;
      }
      const action = sub as 'retry' | 'cancel' | 'approve';
      if (!(await setState(store.db, job.id, action))) {
        console.error(`cannot ${action} a job that is ${job.state}`);
        return 1;
      }
      await audit(store.db, `cli:${process.env.SUDO_USER ?? process.env.USER ?? 'unknown'}`, `outbox.${action}`, job.id, { kind: job.kind });
      console.log(`${action} ${job.id}`);
      return 0;
    } finally {
      await store.close();
    }
  },
};
