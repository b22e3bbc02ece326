/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time per function and per
 * package/area, so a hot path can be checked against the last profile.
 *
 *   npx tsx bench/cpuprofile-summary.ts <file.cpuprofile> [--top 25]
 */
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: Node[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Which part of the system a frame belongs to. */
export function areaOf(url: string, fn: string): string {
  if (!url) return fn === '(garbage collector)' ? 'gc' : fn === '(idle)' || fn === '(program)' ? fn : 'native';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/')[0]}`;
  // The gateway's own code: src/ under tsx, dist/ once compiled (what npm start and the bench run).
  const src = /\/(?:src|dist)\/(.+)$/.exec(url);
  if (src) return `gateway:${src[1]!.split('/')[0]}`;
  return 'other';
}

export function summarise(profile: Profile): { totalMs: number; byFunction: Map<string, number>; byArea: Map<string, number> } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const byFunction = new Map<string, number>();
  const byArea = new Map<string, number>();
  let total = 0;
  for (const [id, us] of selfUs) {
    const n = byId.get(id)!;
    const { functionName, url, lineNumber } = n.callFrame;
    const file = url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/(src|dist)\//, '$1/');
    const key = `${functionName || '(anonymous)'} ${file}:${lineNumber + 1}`;
    byFunction.set(key, (byFunction.get(key) ?? 0) + us / 1000);
    const area = areaOf(url, functionName);
    byArea.set(area, (byArea.get(area) ?? 0) + us / 1000);
    if (functionName !== '(idle)') total += us / 1000;
  }
  return { totalMs: total, byFunction, byArea };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: cpuprofile-summary <file.cpuprofile> [--top N]');
    process.exit(64);
  }
  const top = Number(process.argv[process.argv.indexOf('--top') + 1]) || 25;
  const { totalMs, byFunction, byArea } = summarise(JSON.parse(readFileSync(file, 'utf8')) as Profile);
  const rows = (m: Map<string, number>, n: number) =>
    [...m].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, v]) => `${v.toFixed(1).padStart(9)} ms ${((100 * v) / totalMs).toFixed(1).padStart(5)}%  ${k}`);
  console.log(`busy ${totalMs.toFixed(0)} ms\n\nby area:\n${rows(byArea, 30).join('\n')}\n\nby function:\n${rows(byFunction, top).join('\n')}`);
}
