#!/usr/bin/env node
/*
 * scripts/build — compiles src/ to dist/ (tsc -p tsconfig.build.json), copies
 * the files src/ reads at run time (SQL migrations, RDAP bootstrap files, web
 * assets, the PGlite template) beside the JavaScript, and writes dist/.built
 * last, so bin/backstop.js uses dist/ only after a whole, successful build.
 *
 * Before copying, it makes the PGlite initdb template when the one in
 * src/store/pglite-template/ is missing or was made by another PGlite or
 * other settings (scripts/pglite-template.ts; why: src/store/store.ts). It
 * is made here, at install, rather than committed: it then always fits the
 * PGlite that npm installed, and the repository carries no 4 MB binary. A
 * failure there is a warning — without a template the store runs PGlite's
 * own initdb, correct and only bigger.
 *
 * Runs as the package's `prepare` script, so `npm ci` builds it. Plain
 * JavaScript on purpose: it must run before anything is compiled.
 * Without TypeScript (an install with --omit=dev) it says so and exits 0:
 * bin/backstop.js then runs the sources through tsx, as before.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'src');
const dist = join(root, 'dist');

let tsc;
try {
  tsc = createRequire(join(root, 'package.json')).resolve('typescript/bin/tsc');
} catch {
  console.warn('backstop build: TypeScript is not installed (--omit=dev?): skipping; `backstop` will run the sources through tsx');
  process.exit(0);
}

const started = Date.now();
rmSync(join(dist, '.built'), { force: true });
try {
  execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit', cwd: root });
} catch {
  console.error('backstop build: tsc failed; dist/ is not used until a build succeeds');
  process.exit(1);
}

try {
  execFileSync(process.execPath, ['--import', 'tsx', join(root, 'scripts', 'pglite-template.ts'), '--if-stale'], { stdio: 'inherit', cwd: root });
} catch {
  console.warn('backstop build: the PGlite template could not be made; a new embedded store will run PGlite\'s own initdb (more memory at first start)');
}

let copied = 0;
(function copyAssets(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const from = join(dir, entry.name);
    if (entry.isDirectory()) copyAssets(from);
    else if (!entry.name.endsWith('.ts')) {
      const to = join(dist, relative(src, from));
      mkdirSync(dirname(to), { recursive: true });
      copyFileSync(from, to);
      copied++;
    }
  }
})(src);

if (!existsSync(join(dist, 'cli', 'main.js'))) {
  console.error('backstop build: dist/cli/main.js is missing after tsc');
  process.exit(1);
}
writeFileSync(join(dist, '.built'), `${new Date().toISOString()}\n`);
console.log(`backstop build: dist/ ready (${copied} asset files) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
