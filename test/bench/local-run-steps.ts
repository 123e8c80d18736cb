/**
 * Where `secd run` of a project spends its time, step by step, against a bare
 * `docker build -q && docker run --rm --network none` of the same folder (warm image cache).
 *
 * In one process it times the CLI's module loading, config, and each ContainerEngine call of
 * runLocalProject (the engine wrapped in a timing proxy, with the hooks' created/started/exited
 * moments), and collects `docker events` for the run's containers and volumes (the outputs volume's
 * permission container shows there). It also times whole `secd run` and `secd --help` processes.
 *
 * Run: npm run build && node dist/test/bench/local-run-steps.js [example dir]
 */
import { execFile, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../../..');
const CLI = join(ROOT, 'dist/daemon/cli.js');
/** Where the embedded defaults put `.secd/` (the CLI's cwd), outside the project as a researcher's shell would be. */
const WORK = await mkdtemp(join(tmpdir(), 'secd-run-bench-cwd-'));
process.on('exit', () => rmSync(WORK, { recursive: true, force: true }));

export interface Step {
  name: string;
  startMs: number;
  endMs: number;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error('median of no samples');
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function timed(cmd: string, args: string[], cwd?: string): Promise<number> {
  const t0 = performance.now();
  await run(cmd, args, { cwd, maxBuffer: 2 ** 26 });
  return performance.now() - t0;
}

/** Wall time of `secd --help` (a new node process), `n` times. */
export async function cliStartMs(n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(await timed(process.execPath, [CLI, '--help']));
  return out;
}

/** Wall time of `secd run <dir>` in a fresh copy of the project each time. */
export async function secdRunMs(example: string, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const dir = await freshCopy(example);
    try {
      out.push(await timed(process.execPath, [CLI, 'run', dir], WORK));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  return out;
}

/** Wall time of the bare baseline: `docker build -q` then `docker run --rm --network none`. */
export async function bareDockerMs(example: string, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const { stdout } = await run('docker', ['build', '-q', example]);
    await run('docker', ['run', '--rm', '--network', 'none', stdout.trim()]);
    out.push(performance.now() - t0);
  }
  return out;
}

async function freshCopy(example: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'secd-run-bench-'));
  await cp(example, dir, { recursive: true, filter: (src) => !src.includes('/outputs') });
  return dir;
}

/** One `secd run` in this process, each step timed from t0 (before its modules load). */
export async function stepsOfOneRun(example: string): Promise<{ steps: Step[]; events: string[]; totalMs: number }> {
  const steps: Step[] = [];
  const t0 = performance.now();
  const at = () => performance.now() - t0;
  const step = async <T>(name: string, f: () => Promise<T> | T): Promise<T> => {
    const startMs = at();
    try {
      return await f();
    } finally {
      steps.push({ name, startMs, endMs: at() });
    }
  };
  const mods = await step('import (engine, config, local-run)', async () => ({
    engine: await import('../../daemon/engine/docker-engine.js'),
    config: await import('../../daemon/config/up-config.js'),
    local: await import('../../daemon/wiring/local-run.js'),
    log: await import('../../scheduler/common/log.js'),
  }));
  const dir = await freshCopy(example);
  const events = spawn('docker', ['events', '--format', '{{.TimeNano}} {{.Type}} {{.Action}} {{.Actor.Attributes.name}}'], { stdio: ['ignore', 'pipe', 'ignore'] });
  let eventText = '';
  events.stdout.on('data', (c: Buffer) => (eventText += c.toString('utf8')));
  await new Promise((r) => setTimeout(r, 300));
  const wallT0 = Date.now() - at();
  try {
    const config = await step('config', () => mods.config.loadUpConfig(null, WORK));
    const engine = timingProxy(await step('engine', () => mods.engine.createDockerEngine()), step, at, steps);
    const result = await step('runLocalProject (all)', () =>
      mods.local.runLocalProject(dir, config, { engine, log: mods.log.silentLog, out: { line: () => {}, raw: () => {} } }),
    );
    if (!result.ok) throw new Error(`secd run refused: ${result.reason}`);
    if (result.outcome.end !== 'succeeded') throw new Error(`secd run ended ${result.outcome.end}: ${result.outcome.reason}`);
  } finally {
    await new Promise((r) => setTimeout(r, 300));
    events.kill();
    await rm(dir, { recursive: true, force: true });
  }
  const lines = eventText
    .split('\n')
    .filter((l) => l.trim() !== '' && /secd|volume/.test(l))
    .map((l) => {
      const [nano, ...rest] = l.split(' ');
      return `${(Number(BigInt(nano!) / 1_000_000n) - wallT0).toFixed(0).padStart(6)} ms  ${rest.join(' ')}`;
    });
  return { steps: steps.sort((a, b) => a.startMs - b.startMs), events: lines, totalMs: at() };
}

/** The engine with every method (and the run hooks' moments) recorded as steps. */
function timingProxy<E extends object>(engine: E, step: <T>(name: string, f: () => Promise<T> | T) => Promise<T>, at: () => number, steps: Step[]): E {
  return new Proxy(engine, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        const hooks = args[1] as Record<string, unknown> | undefined;
        if (prop === 'runContainer' && hooks) {
          const mark = (name: string) => steps.push({ name: `  runContainer: ${name}`, startMs: at(), endMs: at() });
          const onCreated = hooks.onCreated as ((id: string) => Promise<void>) | undefined;
          const onStarted = hooks.onStarted as ((id: string) => void) | undefined;
          const onExited = hooks.onExited as ((id: string) => Promise<void>) | undefined;
          args[1] = {
            ...hooks,
            onCreated: async (id: string) => {
              mark('created');
              await onCreated?.(id);
            },
            onStarted: (id: string) => {
              mark('started');
              onStarted?.(id);
            },
            onExited: async (id: string) => {
              mark('exited');
              const s = at();
              await onExited?.(id);
              steps.push({ name: '  runContainer: onExited (outputs read-back)', startMs: s, endMs: at() });
            },
          };
        }
        return step(`engine.${String(prop)}`, () => (value as (...a: unknown[]) => unknown).apply(target, args));
      };
    },
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const example = resolve(process.argv[2] ?? join(ROOT, 'examples/small-docker'));
  await bareDockerMs(example, 1); // warm the image cache
  await secdRunMs(example, 1);
  const one = await stepsOfOneRun(example);
  process.stdout.write(`secd run of ${example}, in process, steps (ms from start):\n`);
  for (const s of one.steps) process.stdout.write(`  ${s.startMs.toFixed(0).padStart(6)} .. ${s.endMs.toFixed(0).padStart(6)}  ${(s.endMs - s.startMs).toFixed(0).padStart(5)} ms  ${s.name}\n`);
  process.stdout.write(`docker events (ms from start):\n${one.events.map((l) => `  ${l}`).join('\n')}\n`);
  const help = await cliStartMs(5);
  const secd = await secdRunMs(example, 5);
  const bare = await bareDockerMs(example, 5);
  process.stdout.write(
    `secd --help: median ${median(help).toFixed(0)} ms\nsecd run: median ${median(secd).toFixed(0)} ms; bare docker build -q && run: median ${median(bare).toFixed(0)} ms; difference ${(median(secd) - median(bare)).toFixed(0)} ms\n`,
  );
}
