/*
 * config/load — reads the YAML file, validates it against the schema and
 * explains every problem at once: the key, the value found, what was expected.
 * A bad file stops start-up; nothing runs on half a configuration.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { z } from 'zod';
import { configSchema, type Config } from './schema.ts';

export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly problems: string[],
  ) {
    super(`invalid configuration in ${source}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let node = root;
  for (const key of path) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<PropertyKey, unknown>)[key];
  }
  return node;
}

function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

export function formatIssues(raw: unknown, issues: readonly z.core.$ZodIssue[]): string[] {
  return issues.map((issue) => {
    if (issue.code === 'unrecognized_keys') {
      const where = issue.path.length ? `${issue.path.join('.')}.` : '';
      return `${issue.keys.map((k) => where + k).join(', ')}: unknown key; check the spelling against the README's configuration reference`;
    }
    const key = issue.path.length ? issue.path.join('.') : '(top level)';
    return `${key}: got ${describeValue(valueAt(raw, issue.path))}: ${issue.message}`;
  });
}

/** Validates an already-parsed object (tests and the embedded defaults use this). */
export function parseConfig(raw: unknown, source = 'configuration'): Config {
  const result = configSchema.safeParse(raw ?? {});
  if (!result.success) throw new ConfigError(source, formatIssues(raw, result.error.issues));
  return result.data;
}

// yaml is loaded when a file is read, not at import: a command on the embedded defaults (`backstop scan FILE`)
// starts ~30 ms sooner (issue 16's CLI start). For Node the package is CommonJS whichever way it is loaded, so
// this is the same module instance an `import` elsewhere gets.
const yaml = () => createRequire(import.meta.url)('yaml') as typeof import('yaml');

export function loadConfig(file?: string): Config {
  // The embedded defaults accept mail for localhost only, into ./data/maildir:
  // enough to try Backstop with swaks, never an open relay.
  if (!file) return parseConfig({ domains: ['localhost'] }, 'built-in defaults');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [`cannot read the file: ${(err as Error).message}`]);
  }
  let raw: unknown;
  try {
    raw = yaml().parse(text);
  } catch (err) {
    throw new ConfigError(file, [`not valid YAML: ${(err as Error).message.split('\n')[0]}`]);
  }
  return parseConfig(raw, file);
}
