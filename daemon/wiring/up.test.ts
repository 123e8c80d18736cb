import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { silentLog } from '../../scheduler/common/log.js';
import { nvidiaSmiFixture, writeFakeNvidiaSmi } from '../../test/support/fake-nvidia-smi.js';
import { toApiNode } from '../../web/api-schema.js';
import { parseUpConfig } from '../config/up-config.js';
import type { ContainerEngine } from '../engine/container-engine.js';
import { startInProcessNode, type InProcessNode } from './up.js';

const MiB = 2 ** 20;
let dir: string;
let started: InProcessNode | null = null;

afterEach(async () => {
  started?.close();
  started = null;
  await rm(dir, { recursive: true, force: true });
});

it("secd up's own GPUs reach the API as a networked node's do, and a GPU held by a process no run owns is given to nobody", async () => {
  dir = await mkdtemp(join(tmpdir(), 'secd-up-'));
  // The recorded 4 × Tesla K80 report: GPUs 1 and 2 each run a python process that is no secd run.
  const smi = await writeFakeNvidiaSmi(join(dir, 'smi'), nvidiaSmiFixture('openpai_4x-tesla-k80_drv430.26_processes.xml'));
  const config = parseUpConfig(`node:\n  node_id: up-01\n  nvidia_smi: ${smi}\n  report_interval_ms: 200\n`, 'up.yml', {}, { baseDir: dir });
  // No run is started here, so the executor never reaches the engine.
  const engine = {} as ContainerEngine;
  started = await startInProcessNode(config.node, { limits: config.limits, engine, log: silentLog, now: () => new Date() });

  const { handle } = started;
  expect(handle.state()).toBe('up');
  expect(handle.gpus()).toHaveLength(4);
  expect(handle.foreignBusyGpus()).toEqual(['GPU-c3b26f7a-8dcb-619c-fa1b-8029265a4db0', 'GPU-b01b80eb-0f18-1df0-cf88-0725bd90f1e1']);
  const api = toApiNode(started.view(), []);
  expect(api).toMatchObject({ id: 'up-01', state: 'up', runs: [] });
  // The recorded values of GPU 0 (minor number 0), as the status page and `secd status` get them.
  const [first] = api.gpus;
  expect([first?.name, first?.memory_total_bytes, first?.utilization_pct, first?.temperature_c, first?.power_w, first?.run_id]).toEqual(['Tesla K80', 11441 * MiB, 0, 26, 34.44, null]);
  expect(api.last_seen).toBe(started.node.status()?.at);
});
