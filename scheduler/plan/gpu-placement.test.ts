/**
 * The planner and GPUs as clusters really have them: MIG devices given by MIG UUID and a MIG-mode GPU
 * never whole, runs asking for a model or memory placed only where those are, and a lost GPU given
 * to nobody while the same machine's other GPUs go on running work.
 */
import { describe, expect, it } from 'vitest';
import { planRuns, type PlannedGpu, type PlannedNode } from './plan.js';
import { aNode, aRun, aRunning, aSnapshot, NOW, PlanHarness } from './plan-builders.js';
import { describeGpuRequest, eligibleGpus, gpuShortfall } from './gpu-eligibility.js';

const GB = 1e9;
const MiB = 1024 * 1024;

/** A whole GPU. */
function gpu(uuid: string, name: string, memoryMiB: number): PlannedGpu {
  return { uuid, name, memoryBytes: memoryMiB * MiB, mig: null };
}

/** A MIG-mode GPU and its MIG devices, as a node lists them. */
function migGpu(uuid: string, name: string, devices: Array<[string, string, number]>): PlannedGpu[] {
  return [
    { uuid, name, memoryBytes: 81920 * MiB, mig: null, migMode: true },
    ...devices.map(([mig, profile, memoryMiB]) => ({ uuid: mig, name, memoryBytes: memoryMiB * MiB, mig: { profile, gpu: uuid } })),
  ];
}

function nodeOf(id: string, details: PlannedGpu[], over: Partial<PlannedNode> = {}): PlannedNode {
  return aNode({ id, gpus: details.map((d) => d.uuid), gpuDetails: details, ...over });
}

// gpu-02: one whole A100 and one A100 in MIG mode (two 3g.40gb and one 1g.10gb device), as on the
// A100 80GB hosts whose `nvidia-smi -L` test/fixtures/nvidia-smi holds.
const A100 = 'NVIDIA A100-SXM4-80GB';
const migNode = () =>
  nodeOf('gpu-02', [
    gpu('GPU-whole', A100, 81920),
    ...migGpu('GPU-parent', A100, [
      ['MIG-3g-a', '3g.40gb', 40192],
      ['MIG-3g-b', '3g.40gb', 40192],
      ['MIG-1g-c', '1g.10gb', 9728],
    ]),
  ]);

describe('MIG devices', () => {
  it('a run asking for a 3g.40gb slice gets a MIG device of that profile by its MIG UUID', () => {
    const run = aRun({ gpus: 1, gpuRequest: { mig: '3g.40gb' } });
    const plan = planRuns(aSnapshot({ queued: [run], nodes: [migNode()] }), NOW);
    expect(plan.placements).toEqual([{ runId: run.id, nodeId: 'gpu-02', gpus: ['MIG-3g-a'] }]);
  });

  it('profiles match case-insensitively and two slices go to two runs, never the same one twice', () => {
    const a = aRun({ gpus: 1, gpuRequest: { mig: '3G.40GB' } });
    const b = aRun({ gpus: 1, user: 'bob', gpuRequest: { mig: '3g.40gb' } });
    const c = aRun({ gpus: 1, user: 'cyd', gpuRequest: { mig: '3g.40gb' } });
    const plan = planRuns(aSnapshot({ queued: [a, b, c], nodes: [migNode()] }), NOW);
    expect(plan.placements.map((p) => p.gpus).flat().sort()).toEqual(['MIG-3g-a', 'MIG-3g-b']);
    expect(plan.waiting).toEqual([c.id]);
  });

  it('a plain count gets whole GPUs only: never the MIG-mode GPU, never a slice', () => {
    const one = aRun({ gpus: 1 });
    const two = aRun({ gpus: 1, user: 'bob' });
    const plan = planRuns(aSnapshot({ queued: [one, two], nodes: [migNode()] }), NOW);
    expect(plan.placements).toEqual([{ runId: one.id, nodeId: 'gpu-02', gpus: ['GPU-whole'] }]);
    expect(plan.waiting).toEqual([two.id]);
  });

  it('a plain count larger than the whole GPUs any node has is impossible, MIG-mode GPUs not counted', () => {
    const run = aRun({ gpus: 2 });
    const plan = planRuns(aSnapshot({ queued: [run], nodes: [migNode()] }), NOW);
    expect(plan.impossible).toEqual([{ runId: run.id, code: 'more_gpus_than_any_node', reason: 'asks for 2 GPUs but the largest node has 1' }]);
  });

  it('a profile no node has is rejected naming it', () => {
    const run = aRun({ gpus: 1, gpuRequest: { mig: '7g.80gb' } });
    const plan = planRuns(aSnapshot({ queued: [run], nodes: [migNode()] }), NOW);
    expect(plan.impossible).toEqual([{ runId: run.id, code: 'no_matching_gpus', reason: 'no node has 1 MIG device 7g.80gb; none has even one' }]);
  });

  it('a node without details still never gives a MIG- UUID to a plain count', () => {
    const node = aNode({ gpus: ['GPU-a', 'MIG-b'] });
    const plan = planRuns(aSnapshot({ queued: [aRun({ gpus: 1 }), aRun({ gpus: 1, user: 'bob' })], nodes: [node] }), NOW);
    expect(plan.placements.map((p) => p.gpus)).toEqual([['GPU-a']]);
  });
});

describe('requests by model and memory', () => {
  const cluster = () => [
    nodeOf('gpu-01', [gpu('H-0', 'NVIDIA H100 80GB HBM3', 81559)]),
    nodeOf('gpu-03', [gpu('L-0', 'NVIDIA L4', 23034), gpu('L-1', 'NVIDIA L4', 23034)]),
    nodeOf('gpu-04', [gpu('A-0', 'NVIDIA A100-PCIE-40GB', 40960), gpu('A-1', 'NVIDIA A100-PCIE-40GB', 40960), gpu('H-1', 'NVIDIA H100 PCIe', 81559)]),
  ];

  it('places a model request only on GPUs whose name contains the model, any case', () => {
    const run = aRun({ gpus: 1, gpuRequest: { model: 'h100' } });
    const plan = planRuns(aSnapshot({ queued: [run], nodes: cluster() }), NOW);
    // Best fit: gpu-01 has one matching GPU free, gpu-04 one as well; the lower id wins.
    expect(plan.placements).toEqual([{ runId: run.id, nodeId: 'gpu-01', gpus: ['H-0'] }]);
  });

  it('places a memory request only on GPUs with at least that much', () => {
    const run = aRun({ gpus: 2, gpuRequest: { memoryBytes: 40 * GB } });
    const plan = planRuns(aSnapshot({ queued: [run], nodes: cluster() }), NOW);
    expect(plan.placements).toEqual([{ runId: run.id, nodeId: 'gpu-04', gpus: ['A-0', 'A-1'] }]);
  });

  it('a request no node can ever meet is rejected naming what is missing and the closest node', () => {
    const run = aRun({ gpus: 2, gpuRequest: { model: 'H100', memoryBytes: 40 * GB } });
    const plan = planRuns(aSnapshot({ queued: [run], nodes: cluster().slice(0, 2) }), NOW);
    expect(plan.impossible).toEqual([
      { runId: run.id, code: 'no_matching_gpus', reason: 'no node has 2 GPUs matching model H100 with at least 40 GB; largest: 1× NVIDIA H100 80GB HBM3 on gpu-01' },
    ]);
  });

  it('a request that fits a node only once its GPUs free up waits instead', () => {
    const run = aRun({ gpus: 2, gpuRequest: { model: 'A100' } });
    const busy = aRunning({ nodeId: 'gpu-04', gpus: ['A-1'], user: 'bob' });
    const plan = planRuns(aSnapshot({ queued: [run], running: [busy], nodes: cluster() }), NOW);
    expect(plan.impossible).toEqual([]);
    expect(plan.placements).toEqual([]);
    expect(plan.waiting).toEqual([run.id]);
  });

  it('a GPU whose memory nvidia-smi did not say never meets a memory request', () => {
    const node = nodeOf('gpu-05', [{ uuid: 'X-0', name: 'NVIDIA H100', memoryBytes: null, mig: null }]);
    expect(eligibleGpus(node, { memoryBytes: 1 })).toEqual([]);
    expect(eligibleGpus(node, { model: 'h100' })).toEqual(['X-0']);
  });

  it('says what a request asks in words, GiB kept as GiB', () => {
    expect(describeGpuRequest(1, { memoryBytes: 40 * 1024 ** 3 })).toBe('1 GPU with at least 40 GiB');
    expect(describeGpuRequest(2, { mig: '1g.10gb', model: 'A100' })).toBe('2 MIG devices 1g.10gb matching model A100');
    expect(gpuShortfall(cluster(), 3, { model: 'a100' })).toBe('no node has 3 GPUs matching model a100; largest: 2× NVIDIA A100-PCIE-40GB on gpu-04');
  });
});

describe('a lost GPU', () => {
  // gpu-01 has four GPUs: g0 runs work, g1 has fallen off the bus (the node reports it lost).
  const lostNode = () => aNode({ gpuCount: 4, foreignBusyGpus: ['gpu-01-g1'] });

  it('is given to nobody while the same machine’s other GPUs still run work', () => {
    const h = new PlanHarness({ nodes: [lostNode()], running: [aRunning({ nodeId: 'gpu-01', gpus: ['gpu-01-g0'], user: 'zoe' })] });
    const runs = [aRun({ gpus: 1 }), aRun({ gpus: 1, user: 'bob' }), aRun({ gpus: 1, user: 'cyd' })];
    h.submit(...runs);
    h.plan();
    expect(h.running.map((r) => r.gpus).flat().sort()).toEqual(['gpu-01-g0', 'gpu-01-g2', 'gpu-01-g3']);
    expect(h.queued.map((r) => r.id)).toEqual([runs[2]!.id]);
    // Work ends; the lost GPU still goes to nobody.
    h.finishOldest(3);
    h.plan();
    expect(h.running.map((r) => r.gpus).flat()).toEqual(['gpu-01-g0']);
  });

  it('still counts for what the node can ever run: a 4-GPU run waits, it is not rejected', () => {
    const run = aRun({ gpus: 4 });
    const plan = planRuns(aSnapshot({ queued: [run], nodes: [lostNode()] }), NOW);
    expect(plan.impossible).toEqual([]);
    expect(plan.waiting).toEqual([run.id]);
  });
});
