/*
 * cli/commands/classify — `backstop classify FILE.eml…`: the gateway's own
 * bounce/notice classifier (backscatter/classify.ts) and, given what marks
 * our mail, its verdict (backscatter/verdict.ts), on files.
 *
 * Prints per file the class and format, the verdict with its inputs, and the
 * fields extracted (all already cleaned by the classifier), or one JSON
 * object a line with --json. Exit 0 when every file was read, 2 otherwise.
 */
import { readFileSync } from 'node:fs';
import { parseKeyFile } from '../../backscatter/batv.ts';
import { classify, type Classification } from '../../backscatter/classify.ts';
import { bounceVerdict, type VerdictContext, type VerdictResult } from '../../backscatter/verdict.ts';
import { cleanText } from '../../obs/clean.ts';
import { parseCommandArgs } from '../args.ts';
import { readEachFile } from '../files.ts';
import { UsageError, type Command } from '../command.ts';

function keysFrom(file: string): Buffer[] {
  // One secret a line, current first (blank lines and # comments skipped).
  const keys = readFileSync(file, 'utf8')
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => Buffer.from(l, 'utf8'));
  if (keys.length === 0) throw new UsageError(`${file}: no key`);
  return keys;
}

function show(file: string, c: Classification, v: VerdictResult): string {
  const lines = [`${file}: ${c.class}${c.format ? ` (${c.format})` : ''} verdict=${v.verdict}`];
  const add = (k: string, val: string | null | undefined) => {
    if (val) lines.push(`  ${k}: ${val}`);
  };
  add('why', c.reasons.join('; '));
  add('verdict inputs', v.reasons.join('; '));
  add('subject', c.subject);
  add('from', c.from);
  add('return-path', c.returnPath);
  add('reporting-mta', c.reportingMta);
  for (const r of c.recipients) add('recipient', [r.finalRecipient, r.action, r.status, r.remoteMta && `remote ${r.remoteMta}`, r.diagnostic].filter(Boolean).join(' | '));
  if (c.mentionsVirus) add('virus', c.virusName ?? '(mentioned, not named)');
  if (c.original) {
    add('original', `from ${c.original.source}`);
    add('  message-id', c.original.messageId);
    add('  envelope sender', c.original.envelopeSender);
    add('  header from', c.original.headerFrom);
    add('  subject', c.original.subject);
    c.original.received.forEach((r, i) => add(`  received[${i}]`, r));
  }
  add('truncated', c.truncated);
  return lines.join('\n');
}

export const command: Command = {
  summary: 'Classify messages as bounce, delay, virus notice, challenge, auto-reply, read receipt or normal, with the backscatter verdict.',
  usage: 'backstop classify [--relay HOST]... [--stamp-key-file F] [--batv-key-file F --batv-domain D... --rcpt ADDR...] [--json] FILE...',
  async run(args) {
    const { values, positionals } = parseCommandArgs(args, {
      relay: { type: 'string', multiple: true },
      'stamp-key-file': { type: 'string' },
      'batv-key-file': { type: 'string' },
      'batv-domain': { type: 'string', multiple: true },
      rcpt: { type: 'string', multiple: true },
      json: { type: 'boolean' },
    });
    if (positionals.length === 0) throw new UsageError('name at least one message file');
    const ctx: VerdictContext = { stampKeys: values['stamp-key-file'] ? keysFrom(values['stamp-key-file']) : [], ourRelays: values.relay ?? [] };
    if (values['batv-key-file']) {
      if (!values['batv-domain']?.length || !values.rcpt?.length) throw new UsageError('--batv-key-file needs --batv-domain and --rcpt (the bounce\'s envelope recipient)');
      ctx.batv = { ring: parseKeyFile(readFileSync(values['batv-key-file'], 'utf8')), domains: values['batv-domain'], rcpts: values.rcpt, now: Date.now() };
    }
    let status = 0;
    for (const file of positionals) {
      const bytes = readEachFile(file);
      if (!bytes) {
        status = 2;
        continue;
      }
      const c = await classify(bytes);
      const v = bounceVerdict(c, ctx);
      console.log(values.json ? JSON.stringify({ file, ...c, verdict: v.verdict, verdictReasons: v.reasons }) : show(cleanText(file, 300), c, v));
    }
    return status;
  },
};
