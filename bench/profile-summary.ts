/**
 * Summarises a V8 CPU profile (node --cpu-prof): self time by function and by package, heaviest first, and the
 * inclusive time of Mayfly's own functions (the samples in which each is on the stack: what it costs with
 * everything it calls synchronously). With REQUESTS=<n> the times are also given in µs per request.
 *   node --experimental-strip-types bench/profile-summary.ts <file.cpuprofile> [top]
 */
import { readFile } from 'node:fs/promises';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const [file, top = '25'] = process.argv.slice(2);
if (!file) throw new Error('usage: profile-summary.ts <file.cpuprofile> [top]');
const profile = JSON.parse(await readFile(file, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parentOf = new Map<number, number>();
for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id);
const inclusive = new Map<string, number>();
const self = new Map<string, number>();
const packages = new Map<string, number>();
let total = 0;
profile.samples.forEach((id, i) => {
  const node = byId.get(id);
  const delta = profile.timeDeltas[i] ?? 0;
  if (!node) return;
  total += delta;
  const key = frameName(node);
  self.set(key, (self.get(key) ?? 0) + delta);
  // Each of Mayfly's functions on this sample's stack counts it once, however deep it recurses.
  const onStack = new Set<string>();
  for (let at: number | undefined = id; at !== undefined; at = parentOf.get(at)) {
    const frame = byId.get(at);
    if (frame?.callFrame.url.includes('/src/')) onStack.add(frameName(frame));
  }
  for (const name of onStack) inclusive.set(name, (inclusive.get(name) ?? 0) + delta);
  const { functionName, url } = node.callFrame;
  const pkg = url.includes('node_modules/')
    ? (/node_modules\/((@[^/]+\/)?[^/]+)/.exec(url)?.[1] ?? 'node_modules')
    : url.startsWith('node:') || url === ''
      ? functionName.startsWith('(')
        ? functionName
        : 'node internals'
      : url.includes('/src/')
        ? 'mayfly src'
        : 'other';
  packages.set(pkg, (packages.get(pkg) ?? 0) + delta);
});

function frameName(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  const where = url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/(src|bench|test)\//, '$1/');
  return `${functionName || '(anonymous)'} ${where}:${lineNumber + 1}`;
}

const requests = Number(process.env.REQUESTS ?? 0);
const show = (map: Map<string, number>, n: number) =>
  [...map.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([k, v]) => {
      const perRequest = requests > 0 ? `${(v / requests).toFixed(1).padStart(7)} µs/req  ` : '';
      return `${((100 * v) / total).toFixed(1).padStart(5)}%  ${perRequest}${k}`;
    })
    .join('\n');
console.log(
  `total ${(total / 1e6).toFixed(2)} s sampled\n\nby package:\n${show(packages, 15)}\n\n` +
    `by function (self):\n${show(self, Number(top))}\n\nMayfly's functions (inclusive):\n${show(inclusive, Number(top))}`,
);
