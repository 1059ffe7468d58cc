/*
 * cli/commands/incident — `backstop incident list|show ID|transition ID EVENT|tick`:
 * the abuse desk's incidents (R9). `transition` is the desk's hand on the
 * lifecycle (desk-release, hold, unhold, close, or any event the lifecycle
 * allows), audited under the operator's name; `tick` runs the desk's jobs
 * that are due now (notices, grace and probation timers, enforcement) once,
 * for a node without a running worker or for a look at what is pending.
 * `tick --now TIME` runs them as of TIME instead (ISO 8601): the jobs due
 * by then fire, with TIME as their clock — a grace period ends early. It is
 * the desk's fake clock for a rehearsal (the outbreak replay uses it); on a
 * live desk it restricts customers before their notice said it would.
 * Exit 0 done, 1 not found or refused by the lifecycle, 2 error.
 */
import { deskRuntime } from '../../desk/runtime.ts';
import { getIncident, incidentSettings, listIncidents, tick, transition } from '../../desk/incidents.ts';
import { EVENTS, type IncidentEvent } from '../../desk/lifecycle.ts';
import { cleanText } from '../../obs/clean.ts';
import { operator, parseCommandArgs, parseLimit } from '../args.ts';
import { CONFIG_OPTION, withStore } from '../store.ts';
import { UsageError, type Command } from '../command.ts';

const iso = (d: Date | string | null | undefined) => (d ? new Date(d).toISOString() : '-');

export const command: Command = {
  summary: 'Show and steer the abuse desk\'s incidents: list, show, transition (desk-release, hold, unhold, close…), tick the timers.',
  usage: 'backstop incident list [--open] [--limit N] | show ID | transition ID EVENT | tick [--now TIME]  [--config FILE]',
  async run(args) {
    const { values, positionals } = parseCommandArgs(args, {
      ...CONFIG_OPTION,
      open: { type: 'boolean' },
      limit: { type: 'string' },
      now: { type: 'string' },
    });
    const [sub, id, event] = positionals;
    if (!sub || !['list', 'show', 'transition', 'tick'].includes(sub)) throw new UsageError('expected list, show ID, transition ID EVENT or tick');
    if ((sub === 'show' || sub === 'transition') && !id) throw new UsageError(`${sub} needs an incident id`);
    if (sub === 'transition' && (!event || !(EVENTS as readonly string[]).includes(event))) throw new UsageError(`EVENT must be one of ${EVENTS.join(', ')}`);
    if (values.now !== undefined && sub !== 'tick') throw new UsageError('--now applies to tick only');
    // No --now: the store's clock, as a serving node's worker runs them.
    const at = values.now === undefined ? undefined : new Date(values.now);
    if (values.now !== undefined && (!/^\d{4}-\d{2}-\d{2}T/.test(values.now) || Number.isNaN(at!.getTime()))) throw new UsageError('--now must be an ISO 8601 time such as 2026-03-04T12:00:00Z');
    const limit = parseLimit(values.limit);
    return withStore(values.config, async (store, config) => {
      const db = store.db;
      if (sub === 'list') {
        for (const i of await listIncidents(db, { open: values.open === true, limit })) {
          console.log([i.id, i.customer_id, i.state, iso(i.state_since), i.restriction_level ?? '-', `self-releases:${i.self_releases_left}`].map((v) => cleanText(String(v), 120)).join('\t'));
        }
        return 0;
      }
      if (sub === 'tick') {
        // With --now the handlers' clock is the tick's: a notice, timer or publish it runs is dated TIME.
        const runtime = deskRuntime(config, db, undefined, at ? () => at : undefined);
        if (!runtime) {
          console.error('desk: is not configured');
          return 2;
        }
        const r = await tick(db, runtime.handlers, at, `cli-${process.pid}`);
        console.log(`ran ${r.ran}, failed ${r.failed}`);
        for (const e of r.errors) console.error(cleanText(e, 300));
        return r.failed ? 1 : 0;
      }
      const found = await getIncident(db, id!);
      if (!found) {
        console.error(`no incident with id ${cleanText(id!, 80)}`);
        return 1;
      }
      if (sub === 'show') {
        const i = found.incident;
        const contact = i.contact_snapshot as Record<string, unknown>;
        for (const [k, v] of Object.entries({ id: i.id, customer: i.customer_id, state: i.state, held_from: i.held_from ?? '-', opened: iso(i.opened_at), since: iso(i.state_since), grace_until: iso(i.grace_until), probation_until: iso(i.probation_until), restriction: i.restriction_level ?? '-', self_releases: i.self_releases_left, recurrences: i.recurrences, contact: `${contact.name ?? ''} <${contact.email ?? ''}> ${contact.language ?? ''} ${contact.time_zone ?? ''}`, portal_link: i.portal_token_hash ? `valid until ${iso(i.portal_token_expires)}` : 'none' })) {
          console.log(`${k.padEnd(16)}${cleanText(String(v), 300)}`);
        }
        console.log('history:');
        for (const e of found.events) console.log(`  ${iso(e.at)}\t${cleanText(e.kind, 40)}\t${e.from_state ?? '-'} -> ${e.to_state ?? '-'}\t${cleanText(e.actor, 80)}`);
        console.log('evidence:');
        for (const e of found.evidence) console.log(`  ${iso(e.observed_at)}\t${e.source}\t${e.ip}\t${cleanText((e.malware ?? []).join(', ') || e.summary, 200)}`);
        return 0;
      }
      const actor = operator();
      const r = await transition(db, found.incident.id, event as IncidentEvent, actor, undefined, incidentSettings(config.desk));
      if (!r.ok) {
        console.error(`refused: ${r.refused}`);
        return 1;
      }
      console.log(`${found.incident.id}: ${r.from} -> ${r.state}`);
      return 0;
    });
  },
};
