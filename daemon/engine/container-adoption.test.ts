/**
 * Adoption on the real engine: a daemon that restarts takes over the run container its journal
 * recorded (by id; a label alone proves nothing, see daemon/node/node-runs-adoption.test.ts) as
 * runContainer would have seen it (limit counted from the container's own start,
 * output read back with `docker logs`, removed at the end), running or already ended.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { aRunSpec, BUSYBOX_IMAGE, commandRequest, ensureBusyboxImage } from '../../test/support/test-images.js';
import type { ContainerEngine, ContainerRequest } from './container-engine.js';
import { createDockerEngine } from './docker-engine.js';
import { outputsVolumeName } from '../executor/container-profile.js';
import { LogCapture } from '../executor/log-capture.js';

const suffix = randomBytes(4).toString('hex');
const runIds: string[] = [];
let engine: ContainerEngine;

function requestFor(script: string): ContainerRequest {
  const runId = `adopt-${suffix}-${runIds.length}`;
  runIds.push(runId);
  return commandRequest(aRunSpec(runId, { project: 'secd-test/adopt' }), BUSYBOX_IMAGE, ['sh', '-c', script]);
}

beforeAll(async () => {
  engine = createDockerEngine();
  await ensureBusyboxImage(engine);
}, 120_000);

afterAll(async () => {
  if (!engine) return;
  for (const c of await engine.findRunContainers()) if (runIds.includes(c.runId)) await engine.removeContainer(c.id);
  for (const runId of runIds) await engine.removeVolume(outputsVolumeName(runId));
});

describe('adopting a run container after a restart', () => {
  it('hands a new container\'s id to onCreated while it is only created, before it starts', async () => {
    const req = requestFor('echo ran');
    const seen: Array<[string, string | undefined]> = [];
    const result = await engine.runContainer(req, {
      onLog: () => {},
      onCreated: async (id) => void seen.push([id, (await engine.findRunContainers()).find((c) => c.id === id)?.state]),
    });

    expect(result).toMatchObject({ end: 'exited', exitCode: 0 });
    expect(seen).toEqual([[result.containerId, 'created']]);
  });

  it('takes over a running container, waits for it, reads its whole log back and removes it', async () => {
    const req = requestFor('echo before-the-restart; sleep 1; echo after-the-restart; echo to-stderr >&2');
    const runId = req.create.Labels['secd.run']!;
    // The first daemon keeps its container, as a daemon that stopped would leave it.
    let started!: (id: string) => void;
    const running = new Promise<string>((resolve) => (started = resolve));
    const first = engine.runContainer({ ...req, keepContainer: true }, { onLog: () => {}, onStarted: (id) => started(id) });
    const id = await running;

    const log = new LogCapture();
    const onStarted: string[] = [];
    const adopted = await engine.adoptContainer(id, { timeoutMs: 30_000, stopGraceMs: 1000, keepContainer: false }, {
      onLog: (b) => log.append(b),
      onStarted: (c) => onStarted.push(c),
    });
    await first;

    expect(adopted).toMatchObject({ end: 'exited', exitCode: 0, containerId: id, reason: null });
    expect(onStarted).toEqual([id]);
    expect(log.toString().split('\n').sort()).toEqual(['', 'after-the-restart', 'before-the-restart', 'to-stderr']);
    expect((await engine.findRunContainers()).map((c) => c.runId)).not.toContain(runId);
  });

  it('stops an adopted container at the limit counted from its own start, not from the adoption', async () => {
    const req = requestFor('echo started; sleep 30');
    let started!: (id: string) => void;
    const running = new Promise<string>((resolve) => (started = resolve));
    const first = engine.runContainer({ ...req, keepContainer: true }, { onLog: () => {}, onStarted: (id) => started(id) });
    const id = await running;
    await new Promise((resolve) => setTimeout(resolve, 1200));

    const adopted = await engine.adoptContainer(id, { timeoutMs: 1000, stopGraceMs: 1000, keepContainer: false }, { onLog: () => {} });
    await first;

    expect(adopted).toMatchObject({ end: 'timed_out', exitCode: 143 });
  });

  it('a container only created when its daemon died is started by the adopter, and its whole log read back', async () => {
    const req = requestFor('echo from-the-adopter');
    let made!: (id: string) => void;
    const created = new Promise<string>((resolve) => (made = resolve));
    // The first daemon dies in onCreated: its container is made, journaled, and never started.
    const first = engine.runContainer({ ...req, keepContainer: true }, {
      onLog: () => {},
      onCreated: async (id) => {
        made(id);
        throw new Error('the daemon died here');
      },
    });
    await expect(first).rejects.toThrow('the daemon died here');
    const id = await created;
    expect((await engine.findRunContainers()).find((c) => c.id === id)?.state).toBe('created');

    const log = new LogCapture();
    const phases: string[] = [];
    const adopted = await engine.adoptContainer(id, { timeoutMs: 30_000, stopGraceMs: 1000, keepContainer: false }, { onLog: (c) => log.append(c), onStarted: () => phases.push('running') });

    expect(adopted).toMatchObject({ end: 'exited', exitCode: 0, containerId: id });
    expect(log.toBuffer().toString()).toBe('from-the-adopter\n');
    expect(phases).toEqual(['running']);
    expect((await engine.findRunContainers()).find((c) => c.id === id)).toBeUndefined();
  });

  it('says why before it stops a container at its limit, and stops it even when noting that fails', async () => {
    const req = requestFor('sleep 30');
    const said: string[] = [];
    const result = await engine.runContainer({ ...req, timeoutMs: 500 }, {
      onLog: () => {},
      onStopping: async (why) => {
        said.push(why);
        throw new Error('the journal could not be written');
      },
    });

    expect(said).toEqual(['timed_out']);
    expect(result).toMatchObject({ end: 'timed_out', exitCode: 143 });
  });

  it('delivers a container that ended while no daemon watched it, and says so when one is gone', async () => {
    const req = requestFor('echo finished-alone; exit 3');
    const kept = await engine.runContainer({ ...req, keepContainer: true }, { onLog: () => {} });
    const log = new LogCapture();
    const onStarted: string[] = [];
    const adopted = await engine.adoptContainer(kept.containerId!, { timeoutMs: 30_000, stopGraceMs: 1000, keepContainer: false }, {
      onLog: (b) => log.append(b),
      onStarted: (c) => onStarted.push(c),
    });

    expect(adopted).toMatchObject({ end: 'exited', exitCode: 3, startedAt: kept.startedAt, finishedAt: kept.finishedAt });
    expect(log.toString()).toBe('finished-alone\n');
    expect(onStarted).toEqual([]);
    const again = await engine.adoptContainer(kept.containerId!, { timeoutMs: 30_000, stopGraceMs: 1000, keepContainer: false }, { onLog: () => {} });
    expect(again).toMatchObject({ end: 'start_failed', reason: 'the container is gone', exitCode: null });
  });
});
