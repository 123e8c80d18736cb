/**
 * Finding 4 of the security review, the part that holds while a run writes: with node.yml
 * `outputs_volume: tmpfs` a run's /outputs is a filesystem of the outputs total cap, so an oversized
 * write fails in the run with ENOSPC instead of filling the node; what fit is delivered, and the
 * volume and the holder that kept it mounted are gone afterwards. `quota` is asked of Docker itself:
 * where Docker's root is not XFS with pquota (this machine) the node says so at start and a run fails
 * naming the setting; where it is, the same oversized write is cut at the cap.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLog } from '../../scheduler/common/log.js';
import { aRunSpec, BUSYBOX_IMAGE, busyboxProject, ensureBusyboxImage, testExecutorSettings } from '../support/test-images.js';
import type { ContainerEngine } from '../../daemon/engine/container-engine.js';
import { createDockerEngine } from '../../daemon/engine/docker-engine.js';
import { HOLDER_LABEL } from '../../daemon/engine/outputs-volume.js';
import { outputsVolumeName } from '../../daemon/executor/container-profile.js';
import type { ExecutorSettings } from '../../daemon/executor/executor-deps.js';
import { outputsVolumeProblem } from '../../daemon/executor/outputs-cap.js';
import { executeRun, imageTagFor } from '../../daemon/executor/run-executor.js';

const MiB = 2 ** 20;
const marker = randomBytes(4).toString('hex');
const projects: string[] = [];
const docker = new Docker();
let engine: ContainerEngine;
let root: string;

beforeAll(async () => {
  engine = createDockerEngine();
  await ensureBusyboxImage(engine);
  root = await mkdtemp(join(tmpdir(), 'secd-outputs-cap-'));
}, 120_000);

afterAll(async () => {
  for (const project of projects) {
    const left = await engine.inspectImage(imageTagFor(project)).catch(() => null);
    if (left) await engine.removeImage(left.id).catch(() => false);
  }
  if (root) await rm(root, { recursive: true, force: true });
});

// Writes 512 KiB, then tries 8 MiB into a 4 MiB /outputs; says what dd said and whether a holder ran.
const OVERSIZED = [
  'dd if=/dev/zero of=/outputs/small.bin bs=512k count=1 2>/dev/null',
  'dd if=/dev/zero of=/outputs/big.bin bs=1M count=8 || echo "dd exit $?"',
  'df -k /outputs | tail -1',
].join('\n');

async function run(name: string, settings: Partial<ExecutorSettings>, whileRunning?: () => Promise<void>) {
  const project = `secd-test/cap-${name}-${marker}`;
  projects.push(project);
  const dir = join(root, name);
  await mkdir(dir, { recursive: true });
  const script = whileRunning ? `${OVERSIZED}\nsleep 3\n` : `${OVERSIZED}\n`;
  for (const [file, text] of Object.entries(busyboxProject(script))) await writeFile(join(dir, file), text);
  const spec = aRunSpec(`cap-${name}-${marker}`, { project });
  let seen: Promise<void> | null = null;
  const outcome = await executeRun(
    spec,
    {
      engine,
      log: silentLog,
      now: () => new Date(),
      settings: testExecutorSettings(join(root, `${name}-node`), { maxOutputFileBytes: 16 * MiB, maxOutputTotalBytes: 4 * MiB, ...settings }),
      ensureBaseImage: () => Promise.reject(new Error('the test names the holder image')),
    },
    {
      onPhase: (phase) => {
        if (phase === 'running' && whileRunning) seen = whileRunning();
      },
      local: { dir, resultsRoot: join(root, `${name}-results`) },
    },
  );
  await seen;
  const out = outcome.outputsPath;
  const runLog = out ? await readFile(join(out, '_secd/run.log'), 'utf8') : '';
  const sizes: Record<string, number> = {};
  if (out) for (const f of (await readdir(out)).filter((n) => n !== '_secd')) sizes[f] = (await stat(join(out, f))).size;
  return { spec, outcome, runLog, sizes };
}

async function holdersOf(volume: string): Promise<Docker.ContainerInfo[]> {
  return docker.listContainers({ all: true, filters: { label: [`${HOLDER_LABEL}=${volume}`] } });
}

async function volumeExists(name: string): Promise<boolean> {
  return docker
    .getVolume(name)
    .inspect()
    .then(() => true, () => false);
}

describe('outputs_volume caps /outputs while the run writes, on Docker', () => {
  it('tmpfs: an 8 MiB write into a 4 MiB /outputs fails in the run with ENOSPC; what fit comes back; nothing is left behind', async () => {
    let holderWhileRunning: Docker.ContainerInfo[] = [];
    const volume = outputsVolumeName(`cap-tmpfs-${marker}`);
    const { outcome, runLog, sizes } = await run('tmpfs', { outputsVolume: 'tmpfs', outputsHolderImage: BUSYBOX_IMAGE }, async () => {
      holderWhileRunning = await holdersOf(volume);
    });
    expect(outcome.end).toBe('succeeded');
    expect(runLog).toContain('No space left on device');
    expect(runLog).toMatch(/dd exit 1/);
    // The filesystem the run saw was the cap's size (df -k: 4096 blocks of 1 KiB).
    expect(runLog).toMatch(/^tmpfs\s+4096\s/m);
    expect(sizes['small.bin']).toBe(512 * 1024);
    expect(sizes['big.bin']).toBeGreaterThan(0);
    expect(sizes['small.bin']! + sizes['big.bin']!).toBeLessThanOrEqual(4 * MiB);
    // A holder kept the tmpfs mounted while the run ran (so its files outlived its container) ...
    expect(holderWhileRunning.map((h) => h.State)).toEqual(['running']);
    expect(holderWhileRunning[0]!.Labels['secd.run']).toBeUndefined();
    // ... and neither it nor the volume is left once the run is delivered.
    expect(await holdersOf(volume)).toEqual([]);
    expect(await volumeExists(volume)).toBe(false);
  }, 120_000);

  it('disk (the default): the same write is not capped while it runs, only when read back', async () => {
    const { outcome, runLog, sizes } = await run('disk', {});
    expect(outcome.end).toBe('succeeded');
    expect(runLog).not.toContain('No space left on device');
    expect(sizes['small.bin']).toBe(512 * 1024);
    // 8.5 MiB written, the read-back cap of 4 MiB leaves the big file out.
    expect(sizes['big.bin']).toBeUndefined();
  }, 120_000);

  it('quota: the node asks Docker; where Docker cannot, the node refuses to start and a run fails naming the setting', async () => {
    const problem = await outputsVolumeProblem('quota', engine);
    const { outcome, runLog, sizes } = await run('quota', { outputsVolume: 'quota' });
    if (problem === null) {
      // Docker's root is XFS with pquota here: the quota holds like the tmpfs.
      expect(outcome.end).toBe('succeeded');
      expect(runLog).toContain('No space left on device');
      expect(Object.values(sizes).reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(4 * MiB);
    } else {
      expect(problem).toMatch(/^outputs_volume: quota, but Docker cannot cap volumes by quota here \(Docker says: .*quota.*\); put Docker's root/);
      expect(outcome.end).toBe('failed');
      expect(outcome.reason).toMatch(/^could not make the run's quota-capped outputs volume \(node gpu-test, outputs_volume: quota\): .*quota/);
      expect(await volumeExists(outputsVolumeName(`cap-quota-${marker}`))).toBe(false);
    }
  }, 120_000);
});
