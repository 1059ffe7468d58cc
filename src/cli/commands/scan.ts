/*
 * cli/commands/scan — `backstop scan [--clamd URL] [--config FILE] FILE…`:
 * the gateway's own scanner on files, one line per file as clamdscan prints
 * them: `FILE: clean|infected NAME|banned TEST|unscannable REASON`.
 *
 * A file named *.eml, or one that starts with RFC 5322 header fields, is
 * scanned as a message (MIME walk, every part); anything else as one file.
 * Exit status as clamdscan's: 0 all clean, 1 some not clean, 2 an error — a
 * file that cannot be read, a bad option, or a clamd that does not answer
 * PING (checked once, first: "unscannable" for every file would hide that
 * the scanner itself is missing).
 *
 * File names are the operator's own and printed as given; verdict texts are
 * already cleaned by the scanner.
 */
import { basename } from 'node:path';
import { cleanText } from '../../obs/clean.ts';
import { ClamdClient } from '../../scan/clamd.ts';
import { createScanner } from '../../scan/scanner.ts';
import { formatVerdict } from '../../scan/verdict.ts';
import { parseCommandArgs } from '../args.ts';
import { readEachFile } from '../files.ts';
import { CONFIG_OPTION, commandConfig } from '../store.ts';
import { UsageError, type Command } from '../command.ts';

/**
 * Header fields ("Name: value", RFC 5322 2.2) up to the first blank line, at
 * least two of them and one a field every message has: good enough to tell
 * a message from a file that merely starts with a colon.
 */
export function looksLikeMessage(bytes: Uint8Array, fileName = ''): boolean {
  if (/\.eml$/i.test(fileName)) return true;
  const head = Buffer.from(bytes.buffer, bytes.byteOffset, Math.min(bytes.length, 8192)).toString('latin1');
  const block = head.split(/\r?\n\r?\n/, 1)[0]!;
  const lines = block.split(/\r?\n/).filter((l) => !/^[ \t]/.test(l));
  // An mbox "From " line may precede the headers.
  if (lines[0]?.startsWith('From ')) lines.shift();
  return (
    lines.length >= 2 &&
    lines.every((l) => /^[!-9;-~]+:/.test(l)) &&
    /^(from|date|subject|message-id|received|return-path|to|mime-version|delivered-to):/im.test(block)
  );
}

export const command: Command = {
  summary: "Scan files (or whole messages) with Backstop's scanner: clamd plus the built-in policy.",
  usage: 'backstop scan [--clamd tcp://HOST:PORT|unix:PATH] [--config FILE] FILE...',
  async run(args) {
    const { values, positionals } = parseCommandArgs(args, { clamd: { type: 'string' }, ...CONFIG_OPTION });
    if (positionals.length === 0) throw new UsageError('name at least one file to scan');
    const config = commandConfig(values.config);
    if (values.clamd !== undefined) {
      if (!/^(tcp:\/\/[^\s/]+:\d+|unix:.+)$/.test(values.clamd)) throw new UsageError(`--clamd: expected tcp://HOST:PORT or unix:PATH, got "${cleanText(values.clamd, 80)}"`);
      config.clamd = values.clamd;
    }
    if (config.clamd && !(await new ClamdClient(config.clamd, Math.min(config.scan.clamdTimeoutMs, 5000)).ping())) {
      console.error(`backstop scan: clamd at ${config.clamd} does not answer PING; is clamd running? (or leave out --clamd to use the built-in policy only)`);
      return 2;
    }
    const scanner = createScanner(config);
    let status = 0;
    try {
      for (const file of positionals) {
        const bytes = readEachFile(file);
        if (!bytes) {
          status = 2;
          continue;
        }
        const result = looksLikeMessage(bytes, file) ? await scanner.scanMessage(bytes) : await scanner.scanFile(basename(file), bytes);
        console.log(`${file}: ${formatVerdict(result.verdict)}`);
        if (result.verdict.kind !== 'clean' && status === 0) status = 1;
      }
    } finally {
      await scanner.close();
    }
    return status;
  },
};
