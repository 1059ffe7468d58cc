/*
 * cli/command — what a `backstop` subcommand is, and the error that says its
 * input was wrong. The subcommands (./commands/*) and the dispatcher
 * (./main.ts) both import this module and never each other, so main can load
 * a subcommand lazily without the subcommand depending back on main.
 * It trusts nothing and does nothing: types and one error class.
 */

export interface Command {
  summary: string;
  usage: string;
  /** The exit code: 0 success, 1 a negative answer (not clean, not found), 2 an error. */
  run(args: string[]): Promise<number>;
}

/** Bad options or arguments: main prints the message with the command's usage, exit 2. */
export class UsageError extends Error {}
