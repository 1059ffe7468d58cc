/*
 * desk/lifecycle — the incident state machine (R9, RFC 6561 §5–§7), pure.
 *
 *   suspected ──notice-sent──▶ notified ──grace-expired──▶ restricted
 *   restricted ──attest (self-release, budget > 0)──▶ attested ──(at once)──▶ probation
 *   restricted ──desk-release──▶ probation
 *   probation ──probation-expired──▶ closed
 *   probation ──evidence (recurrence)──▶ restricted, one fewer self-release
 *   any open state ──hold──▶ evidence-hold ──unhold (desk)──▶ the state it came from
 *   any open state ──close (desk)──▶ closed
 *
 * `next(state, event, context)` answers the new state and the effects the
 * adapter (desk/incidents.ts) must carry out — send the notice, schedule a
 * timer, publish the enforcement set — or a refusal with the reason. It
 * never reads a clock: times come in the context, so a whole lifecycle runs
 * under a fake clock. Evidence in suspected/notified/restricted only adds to
 * the file (no transition); in probation it is a recurrence.
 *
 * `attested` is a moment, not a resting state: the attestation is recorded
 * and the same step goes on to probation (both are in the history).
 */
import type { IncidentState, RestrictionLevel } from '../store/schema.ts';

export type { IncidentState, RestrictionLevel };

export const STATES: readonly IncidentState[] = ['suspected', 'notified', 'restricted', 'attested', 'probation', 'closed', 'evidence-hold'];

export type IncidentEvent = 'evidence' | 'notice-sent' | 'grace-expired' | 'attest' | 'desk-release' | 'probation-expired' | 'hold' | 'unhold' | 'close';

export const EVENTS: readonly IncidentEvent[] = ['evidence', 'notice-sent', 'grace-expired', 'attest', 'desk-release', 'probation-expired', 'hold', 'unhold', 'close'];

/** Events only a person at the desk may cause (the CLI and console); the rest come from timers, evidence and the portal. */
export const DESK_EVENTS: readonly IncidentEvent[] = ['desk-release', 'hold', 'unhold', 'close'];

export interface LifecycleContext {
  now: Date;
  graceMs: number;
  probationMs: number;
  level: RestrictionLevel;
  /** Self-releases the customer has left on this incident. */
  selfReleasesLeft: number;
  /** The state evidence-hold came from (for unhold). */
  heldFrom?: IncidentState | null;
  /** When the grace period ends (grace-expired before it is refused: a stale timer). */
  graceUntil?: Date | null;
  probationUntil?: Date | null;
}

export type Effect =
  | { kind: 'send-notice'; reason: 'opened' | 'restricted' | 'recurrence' }
  | { kind: 'schedule-grace'; at: Date }
  | { kind: 'schedule-probation-end'; at: Date }
  | { kind: 'restrict'; level: RestrictionLevel }
  | { kind: 'release' }
  | { kind: 'spend-self-release' }
  | { kind: 'issue-portal-token' }
  | { kind: 'revoke-portal-token' };

export type Outcome = { state: IncidentState; effects: Effect[]; via?: IncidentState } | { refused: string };

const OPEN_FOR_HOLD: readonly IncidentState[] = ['suspected', 'notified', 'restricted', 'attested', 'probation'];

/** Whether a state fences the line in (the enforcement set holds its addresses). */
export function isRestricted(state: IncidentState, heldFrom?: IncidentState | null): boolean {
  // A hold keeps whatever the line had: it freezes the incident, it does not release it.
  return state === 'restricted' || (state === 'evidence-hold' && heldFrom === 'restricted');
}

export function next(state: IncidentState, event: IncidentEvent, ctx: LifecycleContext): Outcome {
  if (state === 'closed') return { refused: 'the incident is closed; new evidence opens a new one' };
  switch (event) {
    case 'evidence':
      if (state === 'probation') {
        return {
          state: 'restricted',
          effects: [{ kind: 'restrict', level: ctx.level }, { kind: 'send-notice', reason: 'recurrence' }, { kind: 'issue-portal-token' }],
        };
      }
      // suspected, notified, restricted, attested, evidence-hold: the evidence joins the file.
      return { state, effects: [] };
    case 'notice-sent':
      if (state !== 'suspected') return { refused: `notice-sent applies to a suspected incident, not ${state}` };
      return { state: 'notified', effects: [{ kind: 'schedule-grace', at: new Date(ctx.now.getTime() + ctx.graceMs) }] };
    case 'grace-expired':
      if (state !== 'notified') return { refused: `grace-expired applies to a notified incident, not ${state}` };
      if (ctx.graceUntil && ctx.now < ctx.graceUntil) return { refused: `the grace period runs until ${ctx.graceUntil.toISOString()}` };
      return { state: 'restricted', effects: [{ kind: 'restrict', level: ctx.level }, { kind: 'send-notice', reason: 'restricted' }] };
    case 'attest':
      if (state !== 'restricted') return { refused: `attestation applies to a restricted line, not ${state}` };
      if (ctx.selfReleasesLeft <= 0) return { refused: 'no self-release left: only the abuse desk can release this line' };
      return {
        state: 'probation',
        via: 'attested',
        effects: [{ kind: 'spend-self-release' }, { kind: 'release' }, { kind: 'revoke-portal-token' }, { kind: 'schedule-probation-end', at: new Date(ctx.now.getTime() + ctx.probationMs) }],
      };
    case 'desk-release':
      if (state !== 'restricted' && state !== 'notified' && state !== 'suspected') return { refused: `desk-release applies to a suspected, notified or restricted incident, not ${state}` };
      return {
        state: 'probation',
        effects: [...(state === 'restricted' ? [{ kind: 'release' } as Effect] : []), { kind: 'revoke-portal-token' }, { kind: 'schedule-probation-end', at: new Date(ctx.now.getTime() + ctx.probationMs) }],
      };
    case 'probation-expired':
      if (state !== 'probation') return { refused: `probation-expired applies to an incident in probation, not ${state}` };
      if (ctx.probationUntil && ctx.now < ctx.probationUntil) return { refused: `probation runs until ${ctx.probationUntil.toISOString()}` };
      return { state: 'closed', effects: [{ kind: 'revoke-portal-token' }] };
    case 'hold':
      if (!OPEN_FOR_HOLD.includes(state)) return { refused: `cannot hold an incident that is ${state}` };
      return { state: 'evidence-hold', effects: [] };
    case 'unhold': {
      if (state !== 'evidence-hold') return { refused: `unhold applies to an incident on evidence-hold, not ${state}` };
      const back = ctx.heldFrom && OPEN_FOR_HOLD.includes(ctx.heldFrom) ? ctx.heldFrom : 'suspected';
      // Timers that fired during the hold were refused; start the one the state needs again.
      const effects: Effect[] = [];
      if (back === 'notified') effects.push({ kind: 'schedule-grace', at: new Date(ctx.now.getTime() + ctx.graceMs) });
      if (back === 'probation') effects.push({ kind: 'schedule-probation-end', at: new Date(ctx.now.getTime() + ctx.probationMs) });
      if (back === 'suspected') effects.push({ kind: 'send-notice', reason: 'opened' });
      return { state: back === 'attested' ? 'probation' : back, effects };
    }
    case 'close': {
      const effects: Effect[] = [{ kind: 'revoke-portal-token' }];
      if (isRestricted(state, ctx.heldFrom)) effects.unshift({ kind: 'release' });
      return { state: 'closed', effects };
    }
  }
}

/** The events of `events` that `next` accepts in this state and context (the desk's buttons; the portal's one). */
export function allowedEvents(state: IncidentState, ctx: LifecycleContext, events: readonly IncidentEvent[] = EVENTS): IncidentEvent[] {
  return events.filter((event) => !('refused' in next(state, event, ctx)));
}

/** Whether the portal offers the attestation button for this incident. */
export function canSelfRelease(state: IncidentState, selfReleasesLeft: number): boolean {
  return state === 'restricted' && selfReleasesLeft > 0;
}
