/*
 * bench/memory — `npm run bench:memory`: the memory of a Backstop node on the
 * embedded default store (PGlite), from /proc/PID/status, against issue 16's
 * targets (idle ≤ 200 MB, peak ≤ 400 MB); and the same node on PostgreSQL
 * beside it (when 127.0.0.1:5432 answers), which is Backstop without the
 * embedded database.
 *
 * One fresh node (`backstop serve`, a fresh data directory, a private clamd
 * and smtp-sink as the next hop): VmHWM when the SMTP port first answers (the
 * database was created: initdb and migrations), RSS after an idle wait,
 * RSS/VmHWM after N ~20 kB messages over one session, then a second node on
 * the same directory (the restart). See bench/lib/memory.ts.
 *
 * A benchmark, not a test: the targets are printed, never asserted. Every
 * process it starts is stopped in `finally`.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startClamd } from '../src/replay/clamd.ts';
import { startSmtpSink } from '../src/replay/processes.ts';
import { createTestDatabase } from '../test/helpers/pg.ts';
import { measureNode, targetLines, type NodeMemory, type Snapshot } from './lib/memory.ts';

const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '200' },
    'idle-seconds': { type: 'string', default: '30' },
    'skip-postgres': { type: 'boolean', default: false },
    output: { type: 'string', default: 'bench-memory.json' },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log(`usage: npm run bench:memory -- [--messages N] [--idle-seconds S] [--skip-postgres] [--output FILE]
  --messages N      messages sent to each fresh node, one session (default 200)
  --idle-seconds S  idle wait after start before "idle" is read (default 30)
  see bench/README.md`);
  process.exit(0);
}
const whole = (name: string, v: string, min: number) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > 100_000) throw new Error(`--${name} must be a whole number from ${min} to 100000, got "${v}"`);
  return n;
};
const MESSAGES = whole('messages', values.messages!, 1);
const IDLE_SECONDS = whole('idle-seconds', values['idle-seconds']!, 0);
const log = (s: string) => process.stderr.write(s + '\n');

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'backstop-bench-memory-'));
  const clamd = await startClamd();
  const sink = await startSmtpSink(null);
  const results: { label: string; memory?: NodeMemory; error?: string }[] = [];
  try {
    const common = { nextHop: `smtp://127.0.0.1:${sink.port}`, clamd: clamd.url, idleSeconds: IDLE_SECONDS, messages: MESSAGES, log };
    log('memory: embedded PGlite store (the default), fresh data directory');
    results.push({ label: 'embedded PGlite (default)', memory: await measureNode({ ...common, dir: join(dir, 'pglite') }) });
    if (!values['skip-postgres']) {
      let db: { url: string; drop(): Promise<void> } | null = null;
      try {
        db = await createTestDatabase('bs_bench_mem');
        log('memory: PostgreSQL store (fresh database)');
        results.push({ label: 'PostgreSQL', memory: await measureNode({ ...common, dir: join(dir, 'pg'), store: db.url }) });
      } catch (err) {
        results.push({ label: 'PostgreSQL', error: (err as Error).message.split('\n')[0]! });
      } finally {
        await db?.drop().catch(() => {});
      }
    }
  } finally {
    await sink.stop();
    await clamd.stop();
    rmSync(dir, { recursive: true, force: true });
  }

  const n = (v: number | null) => (v === null || Number.isNaN(v) ? '  n/a' : v.toFixed(0).padStart(5));
  const cell = (s: Snapshot) => `${n(s.rssMb)} ${n(s.hwmMb)}`;
  console.log(`\nmemory of one Backstop node, MB (RSS / VmHWM from /proc/PID/status; heap = V8 heap used, ext = V8 external, where PGlite's WASM memory is counted)`);
  console.log(`                              ready        idle ${String(IDLE_SECONDS).padStart(2)} s      after ${MESSAGES} msgs   idle after   restart ready  restart idle`);
  console.log(`store                       RSS  HWM    RSS  heap  ext    RSS  HWM       RSS          RSS  HWM       RSS`);
  for (const r of results) {
    if (!r.memory) {
      console.log(`${r.label.padEnd(26)} not measured: ${r.error}`);
      continue;
    }
    const m = r.memory;
    console.log(
      `${r.label.padEnd(26)}${cell(m.ready)}  ${n(m.idle.rssMb)}${n(m.idle.heapUsedMb)}${n(m.idle.externalMb)}  ${cell(m.messages.after)}     ${n(m.idleAfter.rssMb)}        ${cell(m.restart.ready)}     ${n(m.restart.idle.rssMb)}`,
    );
  }
  const pglite = results[0]?.memory;
  if (pglite) {
    const codes = Object.entries(pglite.messages.replies).map(([c, k]) => `${k}× ${c}`).join(', ');
    console.log(`\n${MESSAGES} messages to the PGlite node: ${codes} in ${pglite.messages.seconds.toFixed(1)} s`);
    console.log('targets, embedded default (issue 16):');
    for (const line of targetLines(pglite)) console.log(line);
  }
  writeFileSync(values.output!, JSON.stringify({ at: new Date().toISOString(), messages: MESSAGES, idleSeconds: IDLE_SECONDS, results }, null, 2));
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
