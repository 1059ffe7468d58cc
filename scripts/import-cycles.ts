/*
 * scripts/import-cycles — finds import cycles among the TypeScript modules
 * under a folder (default src/), with the TypeScript compiler's own parser.
 *
 * Every relative module specifier counts as an edge: `import`, `import type`,
 * `export … from`, and `import('…')` with a literal string. Type-only and lazy
 * imports count too: the project's standard is "no import cycles", and a
 * type-only circle is still two modules that cannot be understood apart.
 * It reads files as text and never runs them; bare specifiers (packages,
 * node:) are not ours and are skipped.
 *
 * `node --import tsx scripts/import-cycles.ts [DIR…]` (default src) prints
 * one cycle a line (a → b → a) and exits 1 when there is any;
 * test/structure/no-cycles.test.ts keeps the tree at none.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...tsFiles(path));
    else if (/\.ts$/.test(name) && !/\.d\.ts$/.test(name)) out.push(path);
  }
  return out;
}

/** The relative module specifiers one file names, statically or as a literal dynamic import. */
export function specifiers(source: string, fileName = 'x.ts'): string[] {
  const sf = ts.createSourceFile(fileName, source, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const found: string[] = [];
  const visit = (node: ts.Node) => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      found.push(node.moduleSpecifier.text);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const [arg] = node.arguments;
      if (arg && ts.isStringLiteralLike(arg)) found.push(arg.text);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      found.push(node.argument.literal.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found.filter((s) => s.startsWith('.'));
}

/** Module graph: file (relative to root) → the files under root it imports; `dirs` (under root) are the folders read. */
export function importGraph(rootDir: string, dirs: readonly string[] = ['.']): Map<string, string[]> {
  const root = resolve(rootDir); // no trailing slash: edges are kept by prefix
  const graph = new Map<string, string[]>();
  for (const file of dirs.flatMap((d) => tsFiles(resolve(root, d)))) {
    const deps = specifiers(readFileSync(file, 'utf8'), file)
      .map((s) => resolve(dirname(file), s))
      .filter((p) => p.startsWith(root + '/') && /\.ts$/.test(p))
      .map((p) => relative(root, p));
    graph.set(relative(root, file), [...new Set(deps)].sort());
  }
  return graph;
}

/**
 * Every elementary cycle, each once, as a path that starts at its smallest
 * file name and ends where it began: a depth-first walk from each start node
 * that only visits nodes greater than it, so each cycle is found from one
 * place. At most `max` are listed (a tangle can have very many).
 */
export function findCycles(graph: Map<string, string[]>, max = 1000): string[][] {
  const cycles: string[][] = [];
  const nodes = [...graph.keys()].sort();
  for (const start of nodes) {
    const stack = [start];
    const onStack = new Set([start]);
    const walk = (node: string) => {
      for (const next of graph.get(node) ?? []) {
        if (cycles.length >= max) return;
        if (next === start) cycles.push([...stack, start]);
        else if (next > start && !onStack.has(next) && graph.has(next)) {
          stack.push(next);
          onStack.add(next);
          walk(next);
          stack.pop();
          onStack.delete(next);
        }
      }
    };
    walk(start);
  }
  return cycles;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const dirs = process.argv.length > 2 ? process.argv.slice(2) : ['src'];
  const cycles = findCycles(importGraph(process.cwd(), dirs));
  for (const c of cycles) console.log(c.join(' → '));
  console.log(`${cycles.length} import cycle(s) in ${dirs.join(', ')}`);
  process.exitCode = cycles.length ? 1 : 0;
}
