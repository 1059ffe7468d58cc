/*
 * cli/commands/replay — `backstop replay`: a Mydoom-style outbreak replayed
 * against a real Backstop node, real clamd and a real next hop, ending in the
 * mission's scoreboard (printed, and written as JSON). Exit 0 only when every
 * line holds. Needs a PostgreSQL server it may create a database on
 * (BACKSTOP_REPLAY_PG, default the local one): the operator's commands run
 * beside the node on one store. `--nodes N` runs N nodes on that store, the
 * sources spread over them, and adds the per-node and exactly-once lines;
 * `--kill-node` SIGKILLs one of them mid-wave and restarts it.
 */
import { startClamd } from '../../replay/clamd.ts';
import { REPLAY_MODES, type ReplayMode } from '../../replay/front.ts';
import { replayOptionsProblem, runReplay } from '../../replay/run.ts';
import { parseCommandArgs } from '../args.ts';
import { UsageError, type Command } from '../command.ts';

export const command: Command = {
  summary: 'Replay a mail worm outbreak against a fresh Backstop node and print the scoreboard.',
  usage: 'backstop replay [--mode direct|postfix-proxy|milter] [--nodes N [--kill-node]] [--size small|large] [--seed N] [--concurrency N] [--output FILE] [--keep]',
  async run(args) {
    const { values } = parseCommandArgs(args, {
      mode: { type: 'string', default: 'direct' },
      size: { type: 'string', default: 'small' },
      seed: { type: 'string', default: '2004' },
      concurrency: { type: 'string', default: '20' },
      output: { type: 'string', default: 'replay-scoreboard.json' },
      keep: { type: 'boolean', default: false },
      nodes: { type: 'string', default: '1' },
      'kill-node': { type: 'boolean', default: false },
    });
    if (!(REPLAY_MODES as readonly string[]).includes(values.mode)) throw new UsageError(`--mode must be one of ${REPLAY_MODES.join(', ')}`);
    if (values.size !== 'small' && values.size !== 'large') throw new UsageError('--size must be small or large');
    const seed = Number(values.seed);
    const concurrency = Number(values.concurrency);
    if (!Number.isInteger(seed) || seed < 0) throw new UsageError('--seed must be a non-negative whole number');
    if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 500) throw new UsageError('--concurrency must be a whole number from 1 to 500');
    const nodes = /^\d+$/.test(values.nodes) ? Number(values.nodes) : NaN;
    const problem = replayOptionsProblem({ nodes, mode: values.mode as ReplayMode, killNode: values['kill-node'] });
    if (problem) throw new UsageError(problem);

    const t0 = performance.now();
    const clamd = await startClamd();
    try {
      const outcome = await runReplay({
        mode: values.mode as ReplayMode,
        size: values.size,
        seed,
        concurrency,
        clamdUrl: clamd.url,
        output: values.output,
        keep: values.keep,
        nodes,
        killNode: values['kill-node'],
        log: (line) => console.error(`[${((performance.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${line}`),
      });
      const width = Math.max(...outcome.lines.map((l) => l.name.length));
      console.log(`\nBackstop outbreak replay — scoreboard (--mode ${outcome.mode}${nodes > 1 ? `, --nodes ${nodes}${values['kill-node'] ? ', --kill-node' : ''}` : ''})`);
      for (const line of outcome.lines) console.log(`  ${line.holds ? 'ok  ' : 'FAIL'}  ${line.name.padEnd(width)}  ${String(line.value).padStart(8)}  (${line.expectation})`);
      for (const note of outcome.notes) console.log(`  note: ${note}`);
      const s = outcome.scoreboard;
      console.log(`\n  ${s.messages} messages (${s.infectedSent} worm, ${s.legitSent} legitimate in, ${s.outboundSent} of our users' out, ${s.realBouncesSent} real bounces of those, ${s.backscatterSent} backscatter) from ${s.sourceIps} infected sources outside and ${s.customersInfected} infected customers`);
      console.log(`  ${s.messagesPerSecond.toFixed(1)} messages/s, p50 ${s.p50Ms.toFixed(1)} ms, p99 ${s.p99Ms.toFixed(1)} ms end of DATA to reply${s.nodePeakRssMb !== undefined ? `; node peak RSS ${s.nodePeakRssMb} MB` : ''}`);
      console.log(JSON.stringify(s));
      if (values.output) console.error(`scoreboard written to ${values.output}`);
      return outcome.passed ? 0 : 1;
    } finally {
      await clamd.stop();
    }
  },
};
