/**
 * A node's hello and status as the planner reads them: a MIG-mode GPU's devices listed after it and
 * described by profile, a lost GPU (and the MIG devices it takes with it) given to nobody, and a
 * MIG-mode GPU's own processes never blocking its devices.
 */
import { describe, expect, it } from 'vitest';
import type { StatusMessage } from '../contract/protocol.js';
import { foreignBusyChanged, gpusOf, plannerGpusOf, unavailableGpus, type NodeHello } from './node-view.js';

const MiB = 1024 * 1024;
const hello: NodeHello = {
  hostname: 'gpu-02',
  max_cpu_runs: 2,
  inventory: {
    cpus: 64,
    memory_bytes: 512 * 1024 * MiB,
    gpus: [
      { uuid: 'GPU-whole', index: 0, name: 'NVIDIA A100-SXM4-80GB', memory_total_bytes: 81920 * MiB, mig_mode: false },
      {
        uuid: 'GPU-mig',
        index: 1,
        name: 'NVIDIA A100-SXM4-80GB',
        memory_total_bytes: 81920 * MiB,
        mig_mode: true,
        mig_devices: [
          { uuid: 'MIG-a', index: 0, profile: '3g.40gb', memory_total_bytes: 40192 * MiB },
          { uuid: 'MIG-b', index: 1, profile: '3g.40gb', memory_total_bytes: 40192 * MiB },
        ],
      },
    ],
  },
};
const gpu = (uuid: string, over: Partial<StatusMessage['gpus'][number]> = {}): StatusMessage['gpus'][number] => ({
  uuid,
  index: 0,
  utilization_pct: null,
  memory_used_bytes: null,
  memory_total_bytes: null,
  temperature_c: null,
  power_w: null,
  processes: 0,
  foreign_busy: false,
  ...over,
});
const status = (gpus: StatusMessage['gpus']): StatusMessage => ({
  type: 'status',
  at: '2026-01-01T00:00:00.000Z',
  gpus,
  host: { load: null, cpus: 64, memory_total_bytes: 1, memory_free_bytes: 1, disk_total_bytes: null, disk_free_bytes: null },
});

describe('what the planner reads of a node', () => {
  it('lists a MIG-mode GPU followed by its MIG devices, each described by profile and memory', () => {
    expect(gpusOf(hello)).toEqual(['GPU-whole', 'GPU-mig', 'MIG-a', 'MIG-b']);
    expect(plannerGpusOf(hello)).toEqual([
      { uuid: 'GPU-whole', name: 'NVIDIA A100-SXM4-80GB', memoryBytes: 81920 * MiB, mig: null },
      { uuid: 'GPU-mig', name: 'NVIDIA A100-SXM4-80GB', memoryBytes: 81920 * MiB, mig: null, migMode: true },
      { uuid: 'MIG-a', name: 'NVIDIA A100-SXM4-80GB', memoryBytes: 40192 * MiB, mig: { profile: '3g.40gb', gpu: 'GPU-mig' } },
      { uuid: 'MIG-b', name: 'NVIDIA A100-SXM4-80GB', memoryBytes: 40192 * MiB, mig: { profile: '3g.40gb', gpu: 'GPU-mig' } },
    ]);
  });

  it('a lost GPU takes its MIG devices with it; a MIG-mode GPU busy with its devices’ processes blocks nothing', () => {
    const busyMig = status([gpu('GPU-whole'), gpu('GPU-mig', { processes: 2, foreign_busy: true, health: 'busy_foreign' })]);
    expect(unavailableGpus(hello, busyMig)).toEqual([]);
    const lost = status([gpu('GPU-whole', { health: 'lost', problem: 'nvidia-smi: GPU is lost' }), gpu('GPU-mig', { health: 'lost' })]);
    expect(unavailableGpus(hello, lost).sort()).toEqual(['GPU-mig', 'GPU-whole', 'MIG-a', 'MIG-b']);
    expect(foreignBusyChanged(busyMig, lost)).toBe(true);
    expect(foreignBusyChanged(lost, lost)).toBe(false);
  });
});
