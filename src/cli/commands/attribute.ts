/*
 * cli/commands/attribute — `backstop attribute IP [TIME] [--port N]`: who
 * held the address then (desk/attribute.ts).
 *
 * TIME is ISO 8601. With a zone (Z, +02:00) it is exact; without one it is
 * read as UTC but flagged zoneless, and a change of holder within 14 h of it
 * makes the answer ambiguous. Without TIME only a static address has an
 * answer. Output: the customer id on the first line, then details (exit 0);
 * or `unknown` (exit 1); or `ambiguous: <reason>` (exit 1).
 */
import { attribute, canonicalIp, getCustomer, parseTime } from '../../desk/attribute.ts';
import { cleanText } from '../../obs/clean.ts';
import { parseCommandArgs } from '../args.ts';
import { CONFIG_OPTION, withStore } from '../store.ts';
import { UsageError, type Command } from '../command.ts';

export const command: Command = {
  summary: 'Who held an IP address at a time (customer id, unknown, or ambiguous with the reason).',
  usage: 'backstop attribute IP [TIME] [--port N]  [--config FILE]',
  async run(args) {
    const { values, positionals } = parseCommandArgs(args, {
      ...CONFIG_OPTION,
      port: { type: 'string', short: 'p' },
    });
    const [ipText, timeText] = positionals;
    if (!ipText || positionals.length > 2) throw new UsageError('expected IP and an optional TIME');
    let ip: string;
    try {
      ip = canonicalIp(ipText);
    } catch {
      throw new UsageError(`not an IP address: ${cleanText(ipText, 60)}`);
    }
    const time = timeText === undefined ? null : parseTime(timeText);
    if (timeText !== undefined && !time) throw new UsageError(`TIME must be ISO 8601, e.g. 2026-11-22T18:05:00Z (got ${cleanText(timeText, 60)})`);
    let port: number | undefined;
    if (values.port !== undefined) {
      port = Number(values.port);
      if (!/^\d{1,5}$/.test(values.port) || port > 65535) throw new UsageError('--port must be a port number from 0 to 65535');
    }
    return withStore(values.config, async (store) => {
      const a = await attribute(store.db, { ip, at: time?.at ?? null, port, zoneless: time?.zoneless ?? false });
      if (a.kind === 'unknown') {
        console.log('unknown');
        return 1;
      }
      if (a.kind === 'ambiguous') {
        console.log(`ambiguous: ${a.reason}`);
        return 1;
      }
      console.log(a.customerId);
      const c = await getCustomer(store.db, a.customerId);
      const details: [string, string][] = [
        ['via', a.via],
        ['valid', `${a.validFrom?.toISOString() ?? '-'} .. ${a.validTo?.toISOString() ?? 'open'}`],
        ['asked', `${ip}${port !== undefined ? ` port ${port}` : ''} at ${time ? time.at.toISOString() + (time.zoneless ? ' (no zone given: read as UTC)' : '') : 'now'}`],
      ];
      if (c) details.push(['name', c.name], ['email', c.email ?? ''], ['language', c.language], ['time zone', c.timeZone]);
      for (const [k, v] of details) console.log(`${k.padEnd(10)}${cleanText(v, 300)}`);
      return 0;
    });
  },
};
