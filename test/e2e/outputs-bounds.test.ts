/**
 * Finding 4 of the security review, for real on Docker: a run's outputs cannot stall or fill its node.
 * Two 8 GiB sparse files (8 GiB of zeros each on the wire) are listed in seconds, not streamed to the
 * end; a cancel that comes while the outputs are read stops the read at once and delivers what came
 * whole (an engine that never answers too); a node under its disk watermark starts no run, and one that falls under it while collecting
 * fails the run naming the node, its free space and the watermark.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, statfs, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLog } from '../../scheduler/common/log.js';
import { aRunSpec, busyboxProject, ensureBusyboxImage, testExecutorSettings } from '../support/test-images.js';
import type { ContainerEngine } from '../../daemon/engine/container-engine.js';
import { createDockerEngine } from '../../daemon/engine/docker-engine.js';
import type { ExecutorSettings } from '../../daemon/executor/executor-deps.js';
import type { RunBoundsSettings } from '../../daemon/executor/run-delivery.js';
import { executeRun, imageTagFor } from '../../daemon/executor/run-executor.js';
import type { RunOutcome } from '../../scheduler/contract/run-spec.js';

const marker = randomBytes(4).toString('hex');
const projects: string[] = [];
let engine: ContainerEngine;
let root: string;

beforeAll(async () => {
  engine = createDockerEngine();
  await ensureBusyboxImage(engine);
  root = await mkdtemp(join(tmpdir(), 'secd-outputs-bounds-'));
}, 120_000);

afterAll(async () => {
  for (const project of projects) {
    const left = await engine.inspectImage(imageTagFor(project)).catch(() => null);
    if (left) await engine.removeImage(left.id).catch(() => false);
  }
  if (root) await rm(root, { recursive: true, force: true });
});

/** The engine, its archive read back at about 1 MiB/s: a collection that lasts long enough to be interrupted. */
function slowArchives(inner: ContainerEngine, onRead: () => void): ContainerEngine {
  return new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop !== 'readArchive') return Reflect.get(target, prop, receiver) as unknown;
      return async (id: string, p: string) => {
        const tar = await target.readArchive(id, p);
        if (tar === null) return null;
        onRead();
        const slow = new Transform({
          transform(chunk: Buffer, _enc, done) {
            setTimeout(() => done(null, chunk), Math.ceil(chunk.length / 1024));
          },
        });
        tar.on('error', (err: Error) => slow.destroy(err));
        slow.on('close', () => (tar as NodeJS.ReadableStream & { destroy(): void }).destroy());
        return tar.pipe(slow);
      };
    },
  });
}

async function run(
  name: string,
  script: string,
  over: { settings?: ExecutorSettings & RunBoundsSettings; engine?: ContainerEngine; signal?: AbortSignal } = {},
): Promise<{ outcome: RunOutcome; ms: number; runJson: { outputs: { left_out: unknown[] } } | null; delivered: string[] }> {
  const project = `secd-test/bounds-${name}-${marker}`;
  projects.push(project);
  const dir = join(root, name);
  await mkdir(dir, { recursive: true });
  for (const [file, text] of Object.entries(busyboxProject(script))) await writeFile(join(dir, file), text);
  const t0 = Date.now();
  const outcome = await executeRun(
    aRunSpec(`ob-${name}`, { project }),
    {
      engine: over.engine ?? engine,
      log: silentLog,
      now: () => new Date(),
      settings: over.settings ?? testExecutorSettings(join(root, `${name}-node`)),
      ensureBaseImage: () => Promise.resolve(),
    },
    { onPhase: () => {}, local: { dir, resultsRoot: join(root, `${name}-results`) }, ...(over.signal ? { signal: over.signal } : {}) },
  );
  const ms = Date.now() - t0;
  const out = outcome.outputsPath;
  const runJson = out ? (JSON.parse(await readFile(join(out, '_secd/run.json'), 'utf8')) as { outputs: { left_out: unknown[] } }) : null;
  const delivered = out ? (await readdir(out)).filter((n) => n !== '_secd').sort() : [];
  return { outcome, ms, runJson, delivered };
}

describe('outputs that would stall or fill the node, on Docker', () => {
  it('two 8 GiB sparse files are listed within seconds, not streamed, and neither is delivered', async () => {
    const { outcome, ms, runJson, delivered } = await run(
      'sparse',
      'echo kept > /outputs/a-small.txt; truncate -s 8G /outputs/sparse1.bin; truncate -s 8G /outputs/sparse2.bin\n',
    );
    expect(outcome.end).toBe('succeeded');
    // Unbounded, this read 16 GiB of zeros (73-106 s); the read bound here is 10 MiB (caps of 1 and 4 MiB).
    expect(ms).toBeLessThan(30_000);
    const leftOut = runJson!.outputs.left_out as Array<{ path: string; reason: string; size?: number }>;
    expect(leftOut.length).toBeGreaterThanOrEqual(1);
    // Reading stops at the first sparse file the archive reaches; the one after it is never looked at.
    expect(leftOut[0]).toMatchObject({ reason: 'file_too_large', size: 8 * 2 ** 30 });
    expect(leftOut[0]!.path).toMatch(/^sparse[12]\.bin$/);
    expect(delivered.filter((n) => n.startsWith('sparse'))).toEqual([]);
    // dockerd lists a folder in its own order: the small file comes back whenever it came before the stop.
    expect(delivered.every((n) => n === 'a-small.txt')).toBe(true);
  }, 120_000);

  it('a cancel while the outputs are read stops the read promptly and delivers the files that came whole', async () => {
    const stop = new AbortController();
    const slow = slowArchives(engine, () => setTimeout(() => stop.abort('cancelled by the test'), 1500));
    const settings = { ...testExecutorSettings(join(root, 'cancel-node')), maxOutputFileBytes: 1 << 20, maxOutputTotalBytes: 64 << 20 };
    const { outcome, ms, runJson, delivered } = await run(
      'cancel',
      'i=0; while [ $i -lt 40 ]; do dd if=/dev/zero of=/outputs/f$i.bin bs=256k count=1 2>/dev/null; i=$((i+1)); done\n',
      { engine: slow, settings, signal: stop.signal },
    );
    // 10 MiB at ~1 MiB/s would take ten seconds; the cancel came after 1.5.
    expect(ms).toBeLessThan(8000);
    expect(outcome.end).toBe('succeeded');
    expect(outcome.reason).toBe('succeeded; collecting the outputs was stopped by the cancel (cancelled by the test)');
    expect(delivered.length).toBeGreaterThan(0);
    expect(delivered.length).toBeLessThan(40);
    for (const f of delivered) expect((await readFile(join(outcome.outputsPath!, f))).length).toBe(256 * 1024);
    expect(runJson!.outputs.left_out).toContainEqual({ path: '.', reason: 'unreadable' });
  }, 120_000);

  it('an engine that never answers the archive request is held to the same stop', async () => {
    const stop = new AbortController();
    const silent = new Proxy(engine, {
      get(target, prop, receiver) {
        if (prop !== 'readArchive') return Reflect.get(target, prop, receiver) as unknown;
        return () => {
          setTimeout(() => stop.abort('cancelled by the test'), 1000);
          return new Promise<never>(() => {});
        };
      },
    });
    const { outcome, ms, runJson, delivered } = await run('silent', 'echo x > /outputs/x.txt\n', { engine: silent, signal: stop.signal });
    expect(ms).toBeLessThan(8000);
    expect(outcome.reason).toBe('succeeded; collecting the outputs was stopped by the cancel (cancelled by the test)');
    expect(delivered).toEqual([]);
    expect(runJson!.outputs.left_out).toEqual([{ path: '.', reason: 'unreadable' }]);
  }, 120_000);

  it('a node under its disk watermark starts no run, and one that falls under it while collecting fails the run', async () => {
    const free = await statfs(tmpdir()).then((s) => s.bavail * s.bsize);
    const full = { ...testExecutorSettings(join(root, 'full-node')), diskWatermarkBytes: free * 4 };
    const refused = await run('full', 'echo never > /outputs/x.txt\n', { settings: full });
    expect(refused.outcome.end).toBe('failed');
    expect(refused.outcome.reason).toMatch(/^not started: node gpu-test has [\d.]+ GiB free in \S+full-node\/work, under its disk watermark of [\d.]+ GiB$/);
    expect(refused.delivered).toEqual([]);

    // The watermark rises once the archive is being read: the node's real free space is then under it.
    let reading = false;
    const filling = { ...testExecutorSettings(join(root, 'filling-node')), maxOutputTotalBytes: 64 << 20 } as ExecutorSettings & RunBoundsSettings;
    Object.defineProperty(filling, 'diskWatermarkBytes', { get: () => (reading ? free * 4 : 0), enumerable: true });
    const slow = slowArchives(engine, () => (reading = true));
    const { outcome, ms } = await run(
      'filling',
      'i=0; while [ $i -lt 40 ]; do dd if=/dev/zero of=/outputs/f$i.bin bs=256k count=1 2>/dev/null; i=$((i+1)); done\n',
      { engine: slow, settings: filling },
    );
    expect(ms).toBeLessThan(8000);
    expect(outcome.end).toBe('failed');
    expect(outcome.reason).toMatch(
      /^collecting the outputs stopped: node gpu-test has [\d.]+ GiB free in \S+filling-node\/work, under its disk watermark of [\d.]+ GiB \(the run had succeeded\)$/,
    );
  }, 120_000);
});
