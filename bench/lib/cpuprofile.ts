/*
 * bench/lib/cpuprofile — a V8 .cpuprofile (node --cpu-prof) summarised as
 * text: top functions by self time, and self time per source file (package
 * for node_modules), so "where does the time go" fits on a screen.
 *
 * Self time of a node = its hit count × the mean sampling interval
 * ((endTime - startTime) / samples).
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

function where(url: string): string {
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  const src = url.search(/\/(src|bench|test)\//);
  if (src >= 0) return url.slice(src + 1);
  return url || '(native/vm)';
}

/**
 * `window`: only samples taken between these two CLOCK_MONOTONIC times in µs
 * (process.hrtime.bigint() / 1000n in any process on the machine: V8's
 * profile clock is the same one on Linux), e.g. the load and not start-up.
 */
export function summariseProfile(file: string, top = 40, window?: { fromUs: number; toUs: number }): string {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as { nodes: ProfileNode[]; startTime: number; endTime: number; samples: number[]; timeDeltas: number[] };
  const us = (profile.endTime - profile.startTime) / Math.max(1, profile.samples.length);
  if (window) {
    const hits = new Map<number, number>();
    let t = profile.startTime;
    profile.samples.forEach((id, i) => {
      t += profile.timeDeltas[i] ?? 0;
      if (t >= window.fromUs && t <= window.toUs) hits.set(id, (hits.get(id) ?? 0) + 1);
    });
    for (const n of profile.nodes) n.hitCount = hits.get(n.id) ?? 0;
  }
  let total = 0;
  const byFn = new Map<string, number>();
  const byFile = new Map<string, number>();
  for (const n of profile.nodes) {
    const t = (n.hitCount ?? 0) * us;
    const f = n.callFrame;
    if (t === 0 || f.functionName === '(idle)') continue;
    total += t;
    const key = `${f.functionName || '(anonymous)'}  ${where(f.url)}${f.url ? `:${f.lineNumber + 1}` : ''}`;
    byFn.set(key, (byFn.get(key) ?? 0) + t);
    const w = f.url ? where(f.url) : f.functionName;
    byFile.set(w, (byFile.get(w) ?? 0) + t);
  }
  const fmt = (m: Map<string, number>, n: number) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, t]) => `${(t / 1000).toFixed(0).padStart(7)} ms ${((100 * t) / total).toFixed(1).padStart(5)}%  ${k}`)
      .join('\n');
  // Who calls the heaviest functions: self time by the chain of up to 4 callers.
  const parent = new Map<number, ProfileNode>();
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n);
  const name = (n: ProfileNode) => `${n.callFrame.functionName || '(anon)'}@${where(n.callFrame.url)}`;
  const heavy = [...byFn.entries()].sort((a, b) => b[1] - a[1]).slice(0, 12).map(([k]) => k);
  const chains = new Map<string, Map<string, number>>();
  for (const n of profile.nodes) {
    const t = (n.hitCount ?? 0) * us;
    const f = n.callFrame;
    const key = `${f.functionName || '(anonymous)'}  ${where(f.url)}${f.url ? `:${f.lineNumber + 1}` : ''}`;
    if (t === 0 || !heavy.includes(key)) continue;
    const up: string[] = [];
    for (let p = parent.get(n.id); p && up.length < 4; p = parent.get(p.id)) up.push(name(p));
    const m = chains.get(key) ?? new Map<string, number>();
    m.set(up.join(' < '), (m.get(up.join(' < ')) ?? 0) + t);
    chains.set(key, m);
  }
  void byId;
  const callers = heavy
    .map((k) => `${k}\n${[...(chains.get(k) ?? new Map()).entries()].sort((a, b) => b[1] - a[1]).slice(0, 4).map(([c, t]) => `    ${(t / 1000).toFixed(0).padStart(6)} ms  < ${c}`).join('\n')}`)
    .join('\n');
  return `${(total / 1000).toFixed(0)} ms busy (idle left out)\n-- self time by function --\n${fmt(byFn, top)}\n-- self time by file/package --\n${fmt(byFile, 25)}\n-- callers of the heaviest --\n${callers}`;
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(summariseProfile(process.argv[2]!, Number(process.argv[3] ?? 40)));
