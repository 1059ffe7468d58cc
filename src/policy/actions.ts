/*
 * policy/actions — from a verdict to what the gateway does, and what it says.
 *
 * Pure: no I/O. The SMTP reply for every outcome is decided here so that the
 * words a sender sees are reviewed in one place (and tested in a table).
 * There is no bounce and no strip-and-deliver: the only outcomes act on the
 * whole message inside the SMTP session (R1, R5).
 */
import type { Action } from '../config/schema.ts';
import type { Verdict } from '../scan/verdict.ts';
import { cleanText } from '../obs/clean.ts';

export type Outcome = { action: 'deliver' } | { action: Action; reply: { code: number; message: string } };

export interface ActionSettings {
  infected: Action;
  banned: Action;
  unscannable: Action;
}

export function decide(verdict: Verdict, settings: ActionSettings): Outcome {
  if (verdict.kind === 'clean') return { action: 'deliver' };
  const action = settings[verdict.kind];
  return { action, reply: replyFor(action, verdict) };
}

function what(verdict: Exclude<Verdict, { kind: 'clean' }>): string {
  switch (verdict.kind) {
    case 'infected':
      return `virus found: ${cleanText(verdict.name, 120)}`;
    case 'banned':
      return `forbidden content: ${cleanText(verdict.test, 120)}`;
    case 'unscannable':
      return 'message could not be scanned';
  }
}

function replyFor(action: Action, verdict: Exclude<Verdict, { kind: 'clean' }>): { code: number; message: string } {
  switch (action) {
    case 'reject':
      // RFC 3463 5.7.1: delivery not authorized, message refused.
      return { code: 550, message: `5.7.1 Message refused, ${what(verdict)}` };
    case 'tempfail':
      // RFC 3463 4.3.0 for our own trouble (scanner down, limit hit); 4.7.1 when policy says "not now".
      return verdict.kind === 'unscannable'
        ? { code: 451, message: '4.3.0 Message could not be scanned now, please try again later' }
        : { code: 451, message: `4.7.1 Message deferred, ${what(verdict)}` };
    case 'discard':
    case 'quarantine':
      // The sender is told nothing that helps a worm author probe the filter.
      return { code: 250, message: '2.0.0 Ok' };
  }
}
