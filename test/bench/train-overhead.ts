/**
 * Benchmark: what does secd add to a training run? examples/pytorch (a small CNN on 7,000 generated
 * digits, on the CPU) through `secd run`, against the same folder by hand with `docker build -q` and
 * `docker run --rm --network none` of the image it built, side by side in alternating order, several
 * rounds after one warm-up of each (so both find the project's layers cached). Each round starts
 * cold for the example: a fresh copy of the folder and, for `secd run`, a fresh working folder, so
 * neither has the @secd.cache of an earlier round and both generate the digits (`secd run` has no
 * datasets) and preprocess them. Prints the medians of both wall times, the overhead and the ratio,
 * and the script's own time (its metrics.json `seconds`) on each side, so that what secd adds around
 * the container (build, start, stop, outputs read back: wall minus the script's own time) shows even
 * when neighbours' load makes the training itself vary by seconds. Goal (issue 10): within 2 %.
 *
 * Needs secd/base:torch: built here when missing (about 6 minutes and 380 MB the first time).
 * Run: npm run build && npm run bench:train-overhead [-- rounds]   (default 5)
 */
import { execFile } from 'node:child_process';
import { readdir, readFile, cp, mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { createDockerEngine } from '../../daemon/engine/docker-engine.js';
import { ensureBaseImage } from '../../daemon/ops/base-image.js';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../../..');
const CLI = join(ROOT, 'dist/daemon/cli.js');
const EXAMPLE = join(ROOT, 'examples/pytorch');
const ROUNDS = Number(process.argv[2] ?? 5);
/** The copies' folder name, and so the project name of secd's image (removed at the end). */
const PROJECT = 'secd-train-bench';

/** One side's round: its wall time and the seconds the training script reported itself. */
interface Sample {
  wallS: number;
  scriptS: number;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** The example's metrics line (its last JSON line of output). */
function scriptSeconds(stdout: string): number {
  const line = stdout.trim().split('\n').reverse().find((l) => l.startsWith('{"test_accuracy"'));
  if (!line) throw new Error(`the training printed no metrics line:\n${stdout.slice(-2000)}`);
  return (JSON.parse(line) as { seconds: number }).seconds;
}

/** A fresh copy of the example, always named PROJECT (so secd's one image per project is reused). */
async function freshCopy(): Promise<string> {
  const dir = join(await mkdtemp(join(tmpdir(), 'secd-train-bench-')), PROJECT);
  await cp(EXAMPLE, dir, { recursive: true, filter: (src) => !src.includes('/outputs') });
  return dir;
}

/** `secd run <copy>` from a fresh working folder (its .secd/cache starts empty). */
async function throughSecd(): Promise<Sample> {
  const dir = await freshCopy();
  const cwd = await mkdtemp(join(tmpdir(), 'secd-train-bench-cwd-'));
  try {
    const t0 = performance.now();
    const { stdout } = await run(process.execPath, [CLI, 'run', dir], { cwd, maxBuffer: 2 ** 26 });
    const wallS = (performance.now() - t0) / 1000;
    const [folder] = await readdir(join(dir, 'outputs'));
    const metrics = JSON.parse(await readFile(join(dir, 'outputs', folder!, 'metrics.json'), 'utf8')) as { seconds: number };
    if (!stdout.includes('succeeded')) throw new Error(`secd run did not succeed:\n${stdout.slice(-2000)}`);
    return { wallS, scriptS: metrics.seconds };
  } finally {
    await rm(dirname(dir), { recursive: true, force: true });
    await rm(cwd, { recursive: true, force: true });
  }
}

/** The hand-written baseline; returns the image it built too, to remove at the end. */
async function byHand(): Promise<Sample & { image: string }> {
  const dir = await freshCopy();
  try {
    const t0 = performance.now();
    const { stdout: id } = await run('docker', ['build', '-q', dir], { maxBuffer: 2 ** 26 });
    const { stdout } = await run('docker', ['run', '--rm', '--network', 'none', id.trim()], { maxBuffer: 2 ** 26 });
    return { wallS: (performance.now() - t0) / 1000, scriptS: scriptSeconds(stdout), image: id.trim() };
  } finally {
    await rm(dirname(dir), { recursive: true, force: true });
  }
}

const built = await ensureBaseImage(createDockerEngine(), {
  variant: 'torch',
  cacheDir: join(tmpdir(), 'secd-test-torch-work', 'work', 'base-image'),
  onProgress: (line) => process.stderr.write(`${line}\n`),
});
if (!built.ok) throw new Error(`secd/base:torch could not be built: ${built.reason}`);

process.stderr.write('warming up (one of each)...\n');
const images = new Set<string>([(await byHand()).image]);
await throughSecd();
const secd: Sample[] = [];
const bare: Sample[] = [];
for (let i = 0; i < ROUNDS; i++) {
  // Alternate which goes first, so a neighbour's load on the machine falls on both alike.
  const order = i % 2 === 0 ? ['secd', 'bare'] : ['bare', 'secd'];
  for (const side of order) {
    if (side === 'secd') secd.push(await throughSecd());
    else {
      const sample = await byHand();
      images.add(sample.image);
      bare.push(sample);
    }
  }
  process.stderr.write(`round ${i + 1}/${ROUNDS}: secd run ${secd.at(-1)!.wallS.toFixed(1)} s, by hand ${bare.at(-1)!.wallS.toFixed(1)} s\n`);
}
for (const image of [...images, `secd-project/${PROJECT}:latest`]) await run('docker', ['rmi', image]).catch(() => undefined);

const s = (xs: Sample[], k: keyof Sample) => median(xs.map((x) => x[k]));
const outside = (xs: Sample[]) => median(xs.map((x) => x.wallS - x.scriptS));
const list = (xs: Sample[]) => xs.map((x) => x.wallS.toFixed(1)).join(' ');
const signed = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(2)} s`;
const overhead = s(secd, 'wallS') - s(bare, 'wallS');
const paired = median(secd.map((x, i) => x.wallS - bare[i]!.wallS));
process.stdout.write(
  [
    `train-overhead: examples/pytorch on the CPU, ${ROUNDS} rounds, ${cpus().length} cores, load average ${loadavg()[0]!.toFixed(1)}, ${new Date().toISOString().slice(0, 10)}`,
    `  secd run                              median ${s(secd, 'wallS').toFixed(2)} s; script's own ${s(secd, 'scriptS').toFixed(2)} s, outside it ${outside(secd).toFixed(2)} s  [${list(secd)}]`,
    `  docker build -q && docker run --rm    median ${s(bare, 'wallS').toFixed(2)} s; script's own ${s(bare, 'scriptS').toFixed(2)} s, outside it ${outside(bare).toFixed(2)} s  [${list(bare)}]`,
    `  overhead ${signed(overhead)}, ratio ${(s(secd, 'wallS') / s(bare, 'wallS')).toFixed(3)} (goal: within 2 %); median of the rounds' differences ${signed(paired)}`,
    `  outside the script (build, container start and stop, outputs): secd ${signed(outside(secd) - outside(bare))} over by hand`,
    '',
  ].join('\n'),
);
