/*
 * cli/commands/outbox — `backstop outbox list|show ID|retry ID…|cancel ID…|approve ID…`:
 * everything Backstop will send or has tried to send (notices, reports,
 * complaints) is a job in the store; this shows and steers them.
 * retry, cancel and approve take several ids in one process (an operator
 * approving a morning's held complaints should not start a process for each):
 * each id is done on its own and reported on its own line, and one failing
 * does not stop the rest.
 * A job whose worker died after handing its mail to the relay was sent again
 * under the same Message-ID: `list` marks it `possible-duplicate` (with the
 * node and worker that sent it last), `list --possible-duplicates` shows only
 * those.
 * Exit 0 done (every id), 1 some id not found or not in a state that allows
 * it, 2 error.
 */
import { cleanText } from '../../obs/clean.ts';
import { audit } from '../../store/audit.ts';
import { setState } from '../../store/jobs.ts';
import { isUuid } from '../../store/quarantine.ts';
import type { Db } from '../../store/store.ts';
import { operator, parseCommandArgs, parseLimit, subcommandWithId } from '../args.ts';
import { CONFIG_OPTION, withStore } from '../store.ts';
import { UsageError, type Command } from '../command.ts';

const STATES = ['queued', 'running', 'sending', 'done', 'failed', 'cancelled', 'review'];

export const command: Command = {
  summary: 'Show and steer the outbox: notices, abuse reports and complaints waiting, sent or failed.',
  usage: 'backstop outbox list [--state S] [--kind K]… [--limit N] [--possible-duplicates] | show ID | retry ID… | cancel ID… | approve ID…  [--config FILE]',
  async run(args) {
    const { values, positionals } = parseCommandArgs(args, {
      ...CONFIG_OPTION,
      state: { type: 'string' },
      // Repeatable: one listing of several kinds is one process, not one each.
      kind: { type: 'string', multiple: true },
      limit: { type: 'string' },
      'possible-duplicates': { type: 'boolean' },
    });
    const { sub, ids } = outboxSubcommand(positionals);
    if (values.state && !STATES.includes(values.state)) throw new UsageError(`--state must be one of ${STATES.join(', ')}`);
    const limit = parseLimit(values.limit);
    return withStore(values.config, async (store) => {
      if (sub === 'list') {
        let q = store.db.selectFrom('jobs').select(['id', 'kind', 'state', 'attempts', 'run_at', 'last_error', 'sent_by', 'possible_duplicate']).orderBy('created_at', 'desc').limit(limit);
        if (values.state) q = q.where('state', '=', values.state);
        if (values.kind?.length) q = q.where('kind', 'in', values.kind);
        if (values['possible-duplicates']) q = q.where('possible_duplicate', '=', true);
        for (const j of await q.execute()) {
          console.log([j.id, j.kind, j.state, String(j.attempts), j.run_at.toISOString(), j.last_error ?? '', j.sent_by ?? '', j.possible_duplicate ? 'possible-duplicate' : ''].map((v) => cleanText(v, 200)).join('\t'));
        }
        return 0;
      }
      if (sub === 'show') {
        const job = await findJob(store.db, ids[0]!);
        if (!job) return 1;
        for (const [k, v] of Object.entries({ ...job, payload: JSON.stringify(job.payload) })) {
          console.log(`${k.padEnd(13)}${cleanText(v instanceof Date ? v.toISOString() : String(v ?? ''), 2000)}`);
        }
        return 0;
      }
      const action = sub as 'retry' | 'cancel' | 'approve';
      let failed = 0;
      // One id after another: each is its own state change and audit record, so a failure leaves the others done.
      for (const id of ids) {
        const job = await findJob(store.db, id);
        if (!job) {
          failed += 1;
          continue;
        }
        if (!(await setState(store.db, job.id, action))) {
          console.error(`cannot ${action} ${job.id}: it is ${job.state}`);
          failed += 1;
          continue;
        }
        await audit(store.db, operator(), `outbox.${action}`, job.id, { kind: job.kind });
        console.log(`${action} ${job.id}`);
      }
      return failed === 0 ? 0 : 1;
    });
  },
};

const MULTI = ['retry', 'cancel', 'approve'];
/** Ids one call takes: as many as one listing shows (--limit's maximum). */
const MAX_IDS = 10_000;

/** `list`, `show ID`, or `retry|cancel|approve ID [ID…]`. */
function outboxSubcommand(positionals: string[]): { sub: string; ids: string[] } {
  const [sub, ...ids] = positionals;
  if (!sub || !MULTI.includes(sub)) {
    const one = subcommandWithId(positionals, ['list', 'show', ...MULTI], 'job');
    return { sub: one.sub, ids: one.id === undefined ? [] : [one.id] };
  }
  if (ids.length === 0) throw new UsageError(`${sub} needs at least one job id`);
  if (ids.length > MAX_IDS) throw new UsageError(`${sub} takes at most ${MAX_IDS} job ids at once`);
  return { sub, ids };
}

/** The job with this id; when there is none, says so on stderr (the id cleaned: it is the operator's input). */
async function findJob(db: Db, id: string) {
  const job = isUuid(id) ? await db.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirst() : undefined;
  if (!job) console.error(`no job with id ${cleanText(id, 80)}`);
  return job;
}
