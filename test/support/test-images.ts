/**
 * What node tests run: a tiny image for tests that need a shell but not Python (a static busybox on
 * `scratch`, built once per machine: no registry is reachable here) and the test projects built on it,
 * a run spec with every field a test does not care about filled in, the container request of one
 * command under the secd profile, and executor settings rooted in a test's folder.
 */
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ContainerEngine, ContainerRequest } from '../../daemon/engine/container-engine.js';
import { containerRequestFor } from '../../daemon/executor/container-profile.js';
import type { ExecutorSettings } from '../../daemon/executor/executor-deps.js';
import type { RunOutcome, RunSpec } from '../../scheduler/contract/run-spec.js';

/** The tag test projects start `FROM`. */
export const BUSYBOX_IMAGE = 'secd-test/busybox:1';

/** Build BUSYBOX_IMAGE unless it exists. Needs Debian's busybox-static at /bin/busybox. */
export async function ensureBusyboxImage(engine: ContainerEngine): Promise<void> {
  if (await engine.imageExists(BUSYBOX_IMAGE)) return;
  const dir = await mkdtemp(join(tmpdir(), 'secd-busybox-'));
  try {
    await copyFile('/bin/busybox', join(dir, 'busybox'));
    await writeFile(
      join(dir, 'Dockerfile'),
      'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\nCMD ["/bin/sh"]\n',
    );
    const lines: string[] = [];
    const built = await engine.buildImage({ contextDir: dir, tag: BUSYBOX_IMAGE, onLog: (l) => lines.push(l) });
    if (!built.ok) throw new Error(`could not build ${BUSYBOX_IMAGE}: ${built.reason}\n${lines.join('\n')}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A Dockerfile for test projects: busybox and a shell script. */
export function busyboxProject(script: string, secdYml?: string): Record<string, string> {
  return {
    Dockerfile: `FROM ${BUSYBOX_IMAGE}\nCOPY run.sh /run.sh\nCMD ["/bin/sh", "/run.sh"]\n`,
    'run.sh': script,
    ...(secdYml === undefined ? {} : { 'secd.yml': secdYml }),
  };
}

/** A run spec for `runId`: no GPU, no cache, no datasets, a minute of runfor, results kept local. */
export function aRunSpec(runId: string, over: Partial<RunSpec> = {}): RunSpec {
  return {
    runId,
    project: 'secd-test/project',
    commit: 'c'.repeat(40),
    source: '/dev/null',
    user: 'tester',
    signer: null,
    runforMs: 60_000,
    gpus: [],
    cacheDir: null,
    mountPath: '/cache',
    env: {},
    warnings: [],
    createdAt: '2026-03-05T14:00:00.000Z',
    ...over,
  };
}

/** A run outcome as a node reports it (a success unless `over` says otherwise). */
export function aRunOutcome(over: Partial<RunOutcome> = {}): RunOutcome {
  return {
    end: 'succeeded',
    reason: 'succeeded',
    exitCode: 0,
    imageId: null,
    branch: 'secd-x',
    outputsPath: 'outputs/x',
    startedAt: null,
    finishedAt: '2026-01-01T00:00:00.000Z',
    ...over,
  };
}

/** The limits of a command request; a test names only what it tests. */
export interface CommandLimits {
  memoryBytes?: number;
  pidsLimit?: number;
  stopGraceMs?: number;
}

/** The secd profile's container request for `spec`, running `cmd` in `image` instead of the image's CMD. */
export function commandRequest(spec: RunSpec, image: string, cmd: string[], limits: CommandLimits = {}): ContainerRequest {
  const req = containerRequestFor(spec, { cacheHostDir: null }, {
    imageId: image,
    memoryBytes: limits.memoryBytes ?? 256 * 2 ** 20,
    pidsLimit: limits.pidsLimit ?? 128,
    stopGraceMs: limits.stopGraceMs ?? 1000,
  });
  return { ...req, create: { ...req.create, Cmd: cmd } };
}

/** Executor settings for a node whose folders live under `root`, with small caps. */
export function testExecutorSettings(root: string, over: Partial<ExecutorSettings> = {}): ExecutorSettings {
  return {
    nodeId: 'gpu-test',
    workDir: join(root, 'work'),
    cacheRoot: join(root, 'caches'),
    memoryBytes: 256 * 2 ** 20,
    pidsLimit: 128,
    stopGraceMs: 1000,
    maxOutputFileBytes: 1 << 20,
    maxOutputTotalBytes: 4 << 20,
    maxLogBytes: 1 << 20,
    datasetRoot: null,
    ...over,
  };
}
