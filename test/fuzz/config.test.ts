/*
 * Fuzzing the configuration loader (src/config/load.ts, schema.ts) with
 * fast-check: the YAML text of a full seed configuration
 * (test/fuzz/corpus/config) mutated byte-wise, and the parsed seed with one
 * value replaced by one of the wrong type or one unknown key added.
 *
 * Properties: loadConfig returns a Config or throws ConfigError, nothing
 * else, in time; a YAML syntax error names a line the file has; a wrong value
 * is reported under its own key path; an unknown key is named.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import fc from 'fast-check';
import { parse as parseYaml } from 'yaml';
import { ConfigError, loadConfig, parseConfig } from '../../src/config/load.ts';
import { check, Clock, corpus, mutated, params } from './fuzz.ts';

const seeds = corpus('config');
const dir = mkdtempSync(join(tmpdir(), 'bs-fuzz-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('loadConfig: mutated YAML gives a Config or a ConfigError, in time; a YAML error names a line the file has', async (t) => {
  const clock = new Clock(2000);
  const file = join(dir, 'backstop.yaml');
  await check(
    t,
    fc.property(mutated(seeds.map((s) => s.bytes)), (bytes) => {
      writeFileSync(file, bytes);
      try {
        clock.sync('loadConfig', () => loadConfig(file));
      } catch (err) {
        assert.ok(err instanceof ConfigError, `not a ConfigError: ${(err as Error)?.stack ?? String(err)}`);
        assert.ok(err.problems.length > 0);
        const yaml = err.problems.find((p) => p.startsWith('not valid YAML'));
        if (yaml) {
          const m = /line (\d+)/.exec(yaml);
          assert.ok(m, `the YAML error names its line: ${yaml}`);
          const lines = bytes.toString('utf8').split(/\r\n|\r|\n/).length;
          assert.ok(Number(m[1]) >= 1 && Number(m[1]) <= lines, `line ${m[1]} of ${lines}: ${yaml}`);
        }
      }
    }),
    params(300),
    clock,
  );
});

/** Every path to a scalar (or array element) in a parsed YAML document. */
function leaves(value: unknown, path: (string | number)[] = []): (string | number)[][] {
  if (Array.isArray(value)) return value.flatMap((v, i) => leaves(v, [...path, i]));
  if (value && typeof value === 'object') return Object.entries(value).flatMap(([k, v]) => leaves(v, [...path, k]));
  return [path];
}
function objects(value: unknown, path: string[] = []): string[][] {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return [];
  return [path, ...Object.entries(value).flatMap(([k, v]) => objects(v, [...path, k]))];
}
function setAt(root: unknown, path: (string | number)[], value: unknown): unknown {
  const copy = structuredClone(root) as Record<string | number, unknown>;
  let node = copy;
  for (const key of path.slice(0, -1)) node = node[key] as Record<string | number, unknown>;
  node[path[path.length - 1]!] = value;
  return copy;
}

const seed = parseYaml(seeds.find((s) => s.file === 'full.yaml')!.bytes.toString('utf8')) as Record<string, unknown>;

test('parseConfig: a value of the wrong type is reported under its own key path', async (t) => {
  parseConfig(seed); // the seed itself is valid
  const paths = leaves(seed);
  await check(
    t,
    // An object where a scalar belongs, or a scalar of another type: never valid for any field here.
    fc.property(fc.constantFrom(...paths), fc.constantFrom<unknown>({ wrong: true }, [[1]], -7.5), (path, wrong) => {
      const original = path.reduce<unknown>((n, k) => (n as Record<string | number, unknown>)[k], seed);
      if (typeof wrong === 'number' && typeof original === 'number') wrong = 'not a number';
      assert.throws(
        () => parseConfig(setAt(seed, path, wrong), 'fuzz.yaml'),
        (err: unknown) => {
          assert.ok(err instanceof ConfigError, String(err));
          // The key named may be the field or, for an array element, the element's index under the field.
          const key = path.join('.');
          assert.ok(err.problems.some((p) => p.startsWith(`${key}:`) || p.startsWith(`${path.slice(0, -1).join('.')}:`)), `${key} not named in:\n${err.message}`);
          return true;
        },
      );
    }),
    params(200),
  );
});

test('parseConfig: an unknown key anywhere is named with its path', async (t) => {
  const paths = objects(seed);
  await check(
    t,
    fc.property(fc.constantFrom(...paths), fc.stringMatching(/^[a-z][a-zA-Z]{2,12}$/), (path, key) => {
      const target = path.reduce<Record<string, unknown>>((n, k) => n[k] as Record<string, unknown>, seed);
      fc.pre(!(key in target));
      const raw = setAt(seed, [...path, key], 1);
      assert.throws(
        () => parseConfig(raw, 'fuzz.yaml'),
        (err: unknown) => {
          assert.ok(err instanceof ConfigError, String(err));
          assert.ok(err.problems.some((p) => p.includes([...path, key].join('.')) && /unknown key/.test(p)), `${[...path, key].join('.')} not named in:\n${err.message}`);
          return true;
        },
      );
    }),
    params(200),
  );
});
