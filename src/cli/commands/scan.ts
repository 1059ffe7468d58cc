/*
 * cli/commands/scan — `backstop scan [--clamd URL] [--config FILE] FILE…`,
 * the gateway's scanner on files, printed like clamdscan:
 * `FILE: clean|infected NAME|banned TEST|unscannable REASON`.
 * Exit 0 all clean, 1 some not clean, 2 an error (unreadable file, bad option).
 * A file that starts with RFC 5322 headers is scanned as a message.
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { loadConfig } from '../../config/load.ts';
import { cleanText } from '../../obs/clean.ts';
import { createScanner } from '../../scan/scanner.ts';
import { formatVerdict } from '../../scan/verdict.ts';
import { parseCommandArgs } from '../args.ts';
import { UsageError, type Command } from '../main.ts';

/** Header lines ("Name: value") up to the first blank line: good enough to tell a message from a file. */
export function looksLikeMessage(bytes: Uint8Array): boolean {
  const head = Buffer.from(bytes.subarray(0, 4096)).toString('latin1');
  const block = head.split(/\r?\n\r?\n/, 1)[0]!;
  const lines = block.split(/\r?\n/).filter((l) => !/^[ \t]/.test(l));
  return lines.length >= 2 && lines.every((l) => /^[!-9;-~]+:/.test(l)) && /^(from|date|subject|message-id|received|return-path|to|mime-version):/im.test(block);
}

export const command: Command = {
  summary: "Scan files (or whole messages) with Backstop's scanner: clamd plus the built-in policy.",
  usage: 'backstop scan [--clamd tcp://HOST:PORT|unix:PATH] [--config FILE] FILE...',
  async run(args) {
    const { values, positionals } = parseCommandArgs(args, { clamd: { type: 'string' }, config: { type: 'string', short: 'c' } });
    if (positionals.length === 0) throw new UsageError('name at least one file to scan');
    const config = loadConfig(values.config);
    if (values.clamd !== undefined) {
      if (!/^(tcp:\/\/[^\s/]+:\d+|unix:.+)$/.test(values.clamd)) throw new UsageError(`--clamd: expected tcp://HOST:PORT or unix:PATH, got "${cleanText(values.clamd, 80)}"`);
      config.clamd = values.clamd;
    }
    const scanner = createScanner(config);
    let status = 0;
    for (const file of positionals) {
      let bytes: Buffer;
      try {
        bytes = readFileSync(file);
      } catch (err) {
        console.error(`${file}: cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
        status = 2;
        continue;
      }
      const result = looksLikeMessage(bytes) ? await scanner.scanMessage(bytes) : await scanner.scanFile(basename(file), bytes);
      console.log(`${file}: ${formatVerdict(result.verdict)}`);
      if (result.verdict.kind !== 'clean' && status === 0) status = 1;
    }
    await scanner.close();
    return status;
  },
};
