import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';

const DIR = new URL('../../src/cli/commands/', import.meta.url);

// The project's standard: one shared way for CLI commands to open the store (src/cli/store.ts).
test('no CLI command loads the configuration or opens the store by itself: cli/store.ts does', () => {
  const files = readdirSync(DIR).filter((f) => f.endsWith('.ts'));
  assert.ok(files.length >= 10, `only ${files.length} command modules found`);
  const own: string[] = [];
  for (const file of files) {
    const text = readFileSync(new URL(file, DIR), 'utf8');
    for (const [what, re] of [
      ['loadConfig(', /\bloadConfig\s*\(/],
      ['openStore(', /\bopenStore\s*\(/],
      ['$BACKSTOP_CONFIG', /BACKSTOP_CONFIG/],
    ] as const) {
      if (re.test(text)) own.push(`${file}: ${what}`);
    }
  }
  assert.deepEqual(own, [], 'use commandConfig/withStore from src/cli/store.ts');
});
