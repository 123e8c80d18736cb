/**
 * Adoption after a restart on the real engine, attacked: any container can carry `secd.run=<a run id>`
 * (`docker run --label`, an image's `LABEL`, a build step's container), so a node that restarts must
 * take over only the container its journal recorded, and leave a look-alike alone.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLog } from '../../scheduler/common/log.js';
import type { RunOutcome } from '../../scheduler/contract/run-spec.js';
import { aRunSpec, BUSYBOX_IMAGE, commandRequest, ensureBusyboxImage, testExecutorSettings } from '../../test/support/test-images.js';
import type { ContainerEngine } from '../engine/container-engine.js';
import { createDockerEngine } from '../engine/docker-engine.js';
import { outputsVolumeName } from '../executor/container-profile.js';
import { runContainerName } from '../executor/run-executor.js';
import { runWorkspace, saveJournal, saveSpec } from '../executor/run-workspace.js';
import { NodeRuns } from './node-runs.js';

const runId = `spoofed-${randomBytes(4).toString('hex')}`;
let engine: ContainerEngine;
let root: string;

beforeAll(async () => {
  engine = createDockerEngine();
  await ensureBusyboxImage(engine);
  root = await mkdtemp(join(tmpdir(), 'secd-node-adoption-'));
}, 120_000);

afterAll(async () => {
  if (engine) {
    for (const c of await engine.findRunContainers()) if (c.runId === runId) await engine.removeContainer(c.id);
    await engine.removeVolume(outputsVolumeName(runId));
  }
  if (root) await rm(root, { recursive: true, force: true });
});

describe('a node restarted while its run container runs', () => {
  it('adopts the container its journal recorded, and neither adopts nor removes a newer one carrying the same labels', async () => {
    const spec = aRunSpec(runId, { project: 'secd-test/adopt' });
    const settings = testExecutorSettings(root);
    const ws = runWorkspace(settings.workDir, runId);
    await saveSpec(ws, spec);

    // The first daemon started the run's container and journaled its id, then died.
    let started!: (id: string) => void;
    const running = new Promise<string>((resolve) => (started = resolve));
    const genuineReq = commandRequest(spec, BUSYBOX_IMAGE, ['sh', '-c', 'sleep 2; exit 7']);
    const first = engine.runContainer({ ...genuineReq, name: runContainerName(runId), keepContainer: true }, { onLog: () => {}, onStarted: (id) => started(id) });
    const genuine = await running;
    await saveJournal(ws, { stamp: '2026-03-05_14.07.09', phase: 'running', buildStartedAt: null, buildMs: null, imageId: null, ended: null, containerId: genuine });

    // Someone starts a look-alike with the run's labels; the engine lists it first (newest first).
    let spoofStarted!: (id: string) => void;
    const spoofRunning = new Promise<string>((resolve) => (spoofStarted = resolve));
    const spoofReq = commandRequest(spec, BUSYBOX_IMAGE, ['sh', '-c', 'sleep 30; exit 9']);
    void engine.runContainer({ ...spoofReq, name: null, keepContainer: true }, { onLog: () => {}, onStarted: (id) => spoofStarted(id) }).catch(() => undefined);
    const spoof = await spoofRunning;
    expect((await engine.findRunContainers()).filter((c) => c.runId === runId).map((c) => c.id)).toEqual([spoof, genuine]);

    const runs = new NodeRuns({ executor: { engine, log: silentLog, now: () => new Date(), settings, ensureBaseImage: async () => {} }, workDir: settings.workDir, log: silentLog });
    const results = new Map<string, RunOutcome>();
    runs.attach({ phase: () => {}, result: (id, outcome) => results.set(id, outcome) });
    await runs.recover();
    await runs.idle();
    await first;

    expect(results.get(runId)).toMatchObject({ end: 'failed', reason: 'the container exited with code 7', exitCode: 7 });
    const left = (await engine.findRunContainers()).filter((c) => c.runId === runId);
    expect(left.map((c) => [c.id, c.state])).toEqual([[spoof, 'running']]);
  }, 60_000);
});
