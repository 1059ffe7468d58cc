/*
 * cli/files — reading the files named on a subcommand's command line, with
 * one wording for each way it fails:
 *   - one of several (scan, classify): the file is skipped with
 *     `FILE: cannot read: CODE` on stderr, the rest are still done, and the
 *     command exits 2 (as clamdscan does);
 *   - the one input of an import (customers, leases): a UsageError naming
 *     the file, before the store is opened, so nothing is half-done.
 * File names are the operator's own and printed as given.
 */
import { readFileSync } from 'node:fs';
import { UsageError } from './command.ts';

/** The bytes of one of several input files, or null after saying on stderr why it cannot be read. */
export function readEachFile(file: string): Buffer | null {
  try {
    return readFileSync(file);
  } catch (err) {
    console.error(`${file}: cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    return null;
  }
}

/** The text of a command's one input file; a file that cannot be read is a UsageError (exit 2). */
export function readInputText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${file}: ${(err as Error).message}`);
  }
}
