import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { findCycles, importGraph, specifiers } from '../../scripts/import-cycles.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

test('no import cycles in src, test, bench or scripts (type-only and lazy imports count)', () => {
  const graph = importGraph(ROOT, ['src', 'test', 'bench', 'scripts']);
  // The walk saw the tree: the dispatcher and its lazily loaded commands are in the graph.
  assert.ok(graph.size > 100, `only ${graph.size} modules read`);
  assert.ok(graph.get('src/cli/main.ts')?.includes('src/cli/commands/serve.ts'), 'main → commands/serve edge missing');
  const cycles = findCycles(graph);
  assert.deepEqual(cycles.map((c) => c.join(' → ')), []);
});

test('specifiers: static, type-only, re-exports, literal dynamic imports and import types; not packages', () => {
  const source = [
    "import { a } from './a.ts';",
    "import type { B } from '../b.ts';",
    "export { c } from './c.ts';",
    "export * from './d.ts';",
    "const e = () => import('./e.ts');",
    "type F = import('./f.ts').F;",
    "import ts from 'typescript';",
    "import { x } from 'node:fs';",
    "const g = (name: string) => import(`./formats/${name}.ts`);",
  ].join('\n');
  assert.deepEqual(specifiers(source), ['./a.ts', '../b.ts', './c.ts', './d.ts', './e.ts', './f.ts']);
});

test('findCycles: each elementary cycle once, from its smallest node; none in a tree or a diamond', () => {
  const g = (edges: Record<string, string[]>) => new Map(Object.entries(edges));
  const cases: [string, Map<string, string[]>, string[][]][] = [
    ['none in a chain', g({ a: ['b'], b: ['c'], c: [] }), []],
    ['none in a diamond', g({ a: ['b', 'c'], b: ['d'], c: ['d'], d: [] }), []],
    ['a self-import', g({ a: ['a'] }), [['a', 'a']]],
    ['a pair, once', g({ a: ['b'], b: ['a'] }), [['a', 'b', 'a']]],
    ['the desk four', g({ forward: ['intake'], intake: ['incidents'], incidents: ['notice'], notice: ['forward'] }), [['forward', 'intake', 'incidents', 'notice', 'forward']]],
    ['two sharing a node', g({ a: ['b', 'c'], b: ['a'], c: ['a'] }), [['a', 'b', 'a'], ['a', 'c', 'a']]],
  ];
  for (const [name, graph, want] of cases) assert.deepEqual(findCycles(graph), want, name);
});
