#!/usr/bin/env node
// The `backstop` command. It runs the compiled JavaScript in dist/ (built by
// `npm ci`/`npm install` through the package's prepare script, or `npm run
// build`) when the build is complete (dist/.built) and no file under src/ is
// newer than it; otherwise the TypeScript sources through tsx's loader, so a
// checkout being edited, or an install without devDependencies, still works —
// only slower to start. BACKSTOP_FROM_SOURCE=1 forces the sources.
//
// V8's young generation first (issue 16, bench/README.md "bench:memory"): V8 lets
// each of its two semi-spaces grow to 16 MB, and what a node allocates while it
// loads its modules and starts the embedded store leaves them large and resident.
// 2 MB each measured ~60–90 MB less RSS for a fresh idle node. It must be set
// before anything is loaded, so before the config is read: a flag on the command
// line or in NODE_OPTIONS (`--max-semi-space-size=N`) wins over this default.
//
// Then WebAssembly, which here is the embedded store's PostgreSQL (PGlite): V8
// compiles each function with Liftoff, its baseline compiler, on first call,
// and recompiles the hot ones with TurboFan on its worker threads. TurboFan's
// scratch memory is malloc'ed on those threads and freed after each function,
// but glibc keeps the freed pages in the threads' arenas for the life of the
// process: ~75 MB of an idle node's RSS (gdb's `call malloc_trim(0)` on one gives
// them back). Liftoff alone measured the same CPU per PGlite transaction on
// this machine (bench/README.md "bench:memory"), so TurboFan is off for WASM;
// JavaScript is not affected. `node --no-liftoff-only bin/backstop.js …` keeps it.
import v8 from 'node:v8';
import { readdirSync, statSync } from 'node:fs';

const given = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)];
const MAX_SEMI_SPACE_MB = 2;
if (!given.some((a) => a.startsWith('--max-semi-space-size'))) {
  v8.setFlagsFromString(`--max-semi-space-size=${MAX_SEMI_SPACE_MB}`);
}
if (!given.some((a) => /^--(no-)?liftoff-only$/.test(a))) v8.setFlagsFromString('--liftoff-only');

const root = new URL('../', import.meta.url);

/** The newest modification time of any file under dir (a few hundred stat calls: about a millisecond). */
function newest(dir) {
  let max = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = new URL(entry.name + (entry.isDirectory() ? '/' : ''), dir);
    max = Math.max(max, entry.isDirectory() ? newest(path) : statSync(path).mtimeMs);
  }
  return max;
}

function distIsFresh() {
  if (process.env.BACKSTOP_FROM_SOURCE === '1') return false;
  try {
    return newest(new URL('src/', root)) <= statSync(new URL('dist/.built', root)).mtimeMs;
  } catch {
    return false;
  }
}

let main;
if (distIsFresh()) {
  ({ main } = await import('../dist/cli/main.js'));
} else {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import('../src/cli/main.ts'));
}
process.exitCode = await main(process.argv.slice(2));
