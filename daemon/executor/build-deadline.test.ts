/**
 * Builds count against `runfor`, on the real Docker engine: a researcher's RUN step that would
 * outlast the run's limit is stopped at it, the run ends timed_out saying why, and the half-built
 * image and its build container do not stay behind on the node. The fake-engine tests
 * (run-executor.test.ts) cover the same road in milliseconds; this one shows Docker really stops.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLog } from '../../scheduler/common/log.js';
import { aRunSpec, BUSYBOX_IMAGE, ensureBusyboxImage, testExecutorSettings } from '../../test/support/test-images.js';
import type { ContainerEngine } from '../engine/container-engine.js';
import { createDockerEngine } from '../engine/docker-engine.js';
import { executeRun, imageTagFor } from './run-executor.js';

const marker = `build-deadline-${randomBytes(4).toString('hex')}`;
const project = `secd-test/${marker}`;
let engine: ContainerEngine;
let root: string;

beforeAll(async () => {
  engine = createDockerEngine();
  await ensureBusyboxImage(engine);
  root = await mkdtemp(join(tmpdir(), 'secd-build-deadline-'));
}, 120_000);

afterAll(async () => {
  if (engine) {
    const left = await engine.inspectImage(imageTagFor(project));
    if (left) await engine.removeImage(left.id).catch(() => false);
  }
  if (root) await rm(root, { recursive: true, force: true });
});

/** The commands of every container on this Docker host, stopped ones included. */
async function containerCommands(): Promise<string> {
  const { stdout } = await promisify(execFile)('docker', ['ps', '-a', '--no-trunc', '--format', '{{.Command}}']);
  return stdout;
}

describe('a build that outlasts runfor, on Docker', () => {
  it('is stopped at runfor: the run ends timed_out with the reason and its build log, and no image or build container is left', async () => {
    const dir = join(root, 'project');
    await mkdir(dir, { recursive: true });
    // The marker makes the step new to the layer cache and names its build container.
    await writeFile(join(dir, 'Dockerfile'), `FROM ${BUSYBOX_IMAGE}\nRUN sleep 60 && echo ${marker}\n`);
    const runforMs = 3_000;

    const outcome = await executeRun(
      aRunSpec('bd1', { project, runforMs }),
      { engine, log: silentLog, now: () => new Date(), settings: testExecutorSettings(root), ensureBaseImage: () => Promise.resolve() },
      { onPhase: () => {}, local: { dir, resultsRoot: join(root, 'results') } },
    );

    const reason = 'the build ran past runfor (0.000833 h): builds count against runfor';
    expect(outcome).toMatchObject({ end: 'timed_out', reason, exitCode: null, imageId: null });
    const buildLog = await readFile(join(outcome.outputsPath!, '_secd/build.log'), 'utf8');
    expect(buildLog).toContain(`RUN sleep 60 && echo ${marker}`);
    expect(buildLog).toContain(`[secd] ${reason}`);
    expect(await engine.inspectImage(imageTagFor(project))).toBeNull();
    // Docker removes the step's container once the build is called off (it may take a moment).
    await expect.poll(containerCommands, { timeout: 30_000, interval: 250 }).not.toContain(marker);
  }, 60_000);
});
