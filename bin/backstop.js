#!/usr/bin/env node
// The `backstop` command. It runs the compiled JavaScript in dist/ (built by
// `npm ci`/`npm install` through the package's prepare script, or `npm run
// build`) when the build is complete (dist/.built) and no file under src/ is
// newer than it; otherwise the TypeScript sources through tsx's loader, so a
// checkout being edited, or an install without devDependencies, still works —
// only slower to start. BACKSTOP_FROM_SOURCE=1 forces the sources.
import { readdirSync, statSync } from 'node:fs';

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
