/**
 * The fake engine keeps the port's promises the way the Docker adapter does (container-engine.test.ts
 * holds the adapter to them on the real engine): builds, limits, cancels, outputs read back, and a
 * daemon that dies and the next one that finds its containers.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { extractOutputsArchive } from '../../daemon/results/outputs-archive.js';
import { aRunSpec, commandRequest } from '../support/test-images.js';
import { FakeContainerEngine } from './fake-container-engine.js';

const IMAGE = 'secd-project/lab/x:latest';
let root: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'secd-fake-engine-'));
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

async function withImage(engine: FakeContainerEngine): Promise<FakeContainerEngine> {
  const built = await engine.buildImage({ contextDir: root, tag: IMAGE, onLog: () => {} });
  if (!built.ok) throw new Error(built.reason);
  return engine;
}

const request = (runId: string, timeoutMs = 60_000) => ({ ...commandRequest(aRunSpec(runId), IMAGE, ['true']), name: `secd-${runId}`, timeoutMs });

describe('the fake container engine', () => {
  it('builds as scripted: a failure ends the log with its error, a hung build ends when cancelled', async () => {
    const engine = new FakeContainerEngine().scriptBuild({ outcome: 'fail', reason: 'unknown instruction: RUNN', log: ['Step 1/2 : FROM x'] }, { outcome: 'hang' });
    const lines: string[] = [];

    const failed = await engine.buildImage({ contextDir: root, tag: IMAGE, onLog: (l) => lines.push(l) });
    const ac = new AbortController();
    const hung = engine.buildImage({ contextDir: root, tag: IMAGE, onLog: () => {}, signal: ac.signal });
    ac.abort();

    expect(failed).toEqual({ ok: false, code: 'build_failed', reason: 'unknown instruction: RUNN' });
    expect(lines).toEqual(['Step 1/2 : FROM x', 'ERROR: unknown instruction: RUNN']);
    expect(await hung).toEqual({ ok: false, code: 'cancelled', reason: 'build cancelled' });
    expect(engine.images().size).toBe(0);
  });

  it('stops a container that runs on at its limit, with what it printed and wrote', async () => {
    const engine = (await withImage(new FakeContainerEngine())).scriptContainer({ log: 'epoch 1\n', outputs: { 'model/weights.txt': '0.93' } });
    const dest = join(root, 'collected');
    let log = '';

    const result = await engine.runContainer(request('r1', 20), {
      onLog: (b) => (log += b.toString()),
      onExited: async (id) => {
        await extractOutputsArchive((await engine.readArchive(id, '/outputs/.'))!, dest, { maxFileBytes: 1024, maxTotalBytes: 1024 });
      },
    });

    expect(result).toMatchObject({ end: 'timed_out', exitCode: 143 });
    expect(log).toBe('epoch 1\n');
    expect(await readFile(join(dest, 'model', 'weights.txt'), 'utf8')).toBe('0.93');
    expect(engine.containers()).toEqual([]);
    expect(engine.volumes()).toEqual(['secd-outputs-r1']);
  });

  it('a daemon that dies hears nothing more; the next one adopts its container and reads its whole log', async () => {
    const first = (await withImage(new FakeContainerEngine())).scriptContainer({ log: 'before the restart\n' });
    let started!: () => void;
    const running = new Promise<void>((resolve) => (started = resolve));
    const lost = first.runContainer(request('r2'), { onLog: () => {}, onStarted: () => started() });
    await running;
    first.halt();
    const settled = await Promise.race([lost.then(() => 'settled'), new Promise((resolve) => setTimeout(() => resolve('pending'), 20))]);

    const next = first.reconnect();
    const [found] = await next.findRunContainers();
    let log = '';
    const adopting = next.adoptContainer(found!.id, { timeoutMs: 60_000, stopGraceMs: 1000, keepContainer: false }, { onLog: (b) => (log += b.toString()) });
    next.exitContainer('r2', 3);

    expect(settled).toBe('pending');
    expect(found).toMatchObject({ runId: 'r2', state: 'running' });
    expect(await adopting).toMatchObject({ end: 'exited', exitCode: 3 });
    expect(log).toBe('before the restart\n');
    expect(next.containers()).toEqual([]);
  });
});
