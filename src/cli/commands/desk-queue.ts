/*
 * cli/commands/desk-queue — `backstop desk-queue list|show ID|assign ID
 * CUSTOMER|dismiss ID --reason TEXT`: the abuse desk's queue of reports
 * nobody could be named for (R8), worked from a shell as on the console's
 * report page, through the same desk/queue functions: `assign` files the
 * report against the customer (evidence on their incident, the forward job),
 * `dismiss` takes it out of the queue with a reason; both audited under the
 * operator's name (cli:USER). `show` prints the report and attribute()'s
 * answer now for its address, time and port (leases imported since may
 * name the customer; `backstop attribute` asks with another time or port).
 *
 * Everything printed came from a reporter or a worm: every value is cleaned
 * (controls, bidi overrides) before it reaches the terminal.
 * Exit 0 done, 1 not found or refused, 2 error (a missing or over-long reason
 * is the operator's input: 2).
 */
import { attribute } from '../../desk/attribute.ts';
import { incidentSettings } from '../../desk/incidents.ts';
import { deskQueue } from '../../desk/intake.ts';
import { assignReport, dismissReport, getReport, type QueueRefusal } from '../../desk/queue.ts';
import { cleanText } from '../../obs/clean.ts';
import { operator, parseCommandArgs, parseLimit } from '../args.ts';
import { CONFIG_OPTION, withStore } from '../store.ts';
import { UsageError, type Command } from '../command.ts';

const iso = (d: Date | null | undefined) => (d ? d.toISOString() : '-');
const SUBS = ['list', 'show', 'assign', 'dismiss'];

export const command: Command = {
  summary: 'Work the abuse desk\'s queue of reports nobody could be named for: list, show, assign to a customer, dismiss with a reason.',
  usage: 'backstop desk-queue list [--limit N] | show ID | assign ID CUSTOMER | dismiss ID --reason TEXT  [--config FILE]',
  async run(args) {
    const { values, positionals } = parseCommandArgs(args, {
      ...CONFIG_OPTION,
      limit: { type: 'string' },
      reason: { type: 'string' },
    });
    const [sub, id, customer] = positionals;
    if (!sub || !SUBS.includes(sub)) throw new UsageError('expected list, show ID, assign ID CUSTOMER or dismiss ID --reason TEXT');
    const want = { list: 1, show: 2, assign: 3, dismiss: 2 }[sub as 'list'];
    if (positionals.length !== want) throw new UsageError(sub === 'list' ? 'list takes no arguments' : sub === 'assign' ? 'assign needs a report id and a customer id' : `${sub} needs exactly one report id`);
    if (values.reason !== undefined && sub !== 'dismiss') throw new UsageError('--reason applies to dismiss only');
    if (sub === 'dismiss' && values.reason === undefined) throw new UsageError('dismiss needs --reason TEXT (why the report leaves the queue)');
    if (values.limit !== undefined && sub !== 'list') throw new UsageError('--limit applies to list only');
    const limit = parseLimit(values.limit);
    return withStore(values.config, async (store, config) => {
      const db = store.db;
      if (sub === 'list') {
        const queue = await deskQueue(db, limit);
        for (const r of queue.reports) {
          const address = r.ip ? `${r.ip}${r.port !== null ? ` port ${r.port}` : ''}` : '-';
          console.log([r.id, iso(r.receivedAt), `${r.via}/${r.kind}`, address, `${iso(r.observedAt)}${r.zoneless && r.observedAt ? ' (no zone)' : ''}`, r.reason ?? '-'].map((v) => cleanText(v, 200)).join('\t'));
        }
        if (queue.total > queue.reports.length) console.error(`(${queue.total} in the queue, the newest ${queue.reports.length} shown)`);
        return 0;
      }

      const refused = (r: QueueRefusal) => {
        console.error(r.why === 'unknown-report' ? `no report with id ${cleanText(id!, 80)}` : `refused: ${cleanText(r.refused, 300)}`);
        return r.why === 'bad-reason' ? 2 : 1;
      };
      if (sub === 'assign') {
        const r = await assignReport(db, id!, customer!, operator(), undefined, { settings: incidentSettings(config.desk) });
        if (!r.ok) return refused(r);
        console.log(`${id}: assigned to ${cleanText(r.customerId, 200)}, incident ${r.incidentId} (${r.opened ? 'opened' : 'joined'}), forward queued`);
        return 0;
      }
      if (sub === 'dismiss') {
        const r = await dismissReport(db, id!, values.reason!, operator());
        if (!r.ok) return refused(r);
        console.log(`${id}: dismissed (${cleanText(r.reason, 200)})`);
        return 0;
      }

      const r = await getReport(db, id!);
      if (!r) {
        console.error(`no report with id ${cleanText(id!, 80)}`);
        return 1;
      }
      const fields: [string, string][] = [
        ['id', r.id],
        ['state', r.state === 'unattributed' ? 'in the queue' : r.state],
        ['received', iso(r.receivedAt)],
        ['via', `${r.via} (${r.kind}${r.feedbackType ? `, ${r.feedbackType}` : ''})`],
        ['reporter', r.reporter],
        ['address', r.ip ? `${r.ip}${r.port !== null ? ` port ${r.port}` : ''}` : '-'],
        ['observed', r.observedAt ? `${iso(r.observedAt)}${r.zoneless ? ' (no zone given: read as UTC)' : ''} from ${r.timeSource}` : '-'],
        ['why queued', r.reason ?? '-'],
        ['malware', r.malware.join(', ') || '-'],
        ['summary', r.summary],
      ];
      if (r.assignedAt) fields.push(['assigned', `to ${r.customerId} by ${r.assignedBy} at ${iso(r.assignedAt)}`]);
      else if (r.customerId) fields.push(['attributed', `to ${r.customerId} when it arrived`]);
      if (r.incidentId) fields.push(['incident', r.incidentId]);
      if (r.dismissedAt) fields.push(['dismissed', `by ${r.dismissedBy} at ${iso(r.dismissedAt)}: ${r.dismissReason}`]);
      if (r.state === 'unattributed' && r.ip) {
        const a = await attribute(db, { ip: r.ip, at: r.observedAt, ...(r.port !== null ? { port: r.port } : {}), zoneless: r.zoneless });
        fields.push(['attribute now', a.kind === 'customer' ? `customer ${a.customerId} (${a.via})` : a.kind === 'ambiguous' ? `ambiguous: ${a.reason}` : 'unknown']);
      }
      for (const [k, v] of fields) console.log(`${k.padEnd(15)}${cleanText(v, 2000)}`);
      if (r.headers) {
        console.log('headers:');
        for (const line of r.headers.split(/\r?\n/)) if (line) console.log(`  ${cleanText(line, 998)}`);
      }
      return 0;
    });
  },
};
