/**
 * Which of a node's GPUs a run may get (secd.yml `gpu:`), apart from whether they are free: the one
 * place the planner (cluster-state.ts), its impossibility rule (plan.ts rule 1) and the policy
 * check at push time (scheduler/policy/project-policy.ts) decide it, so they never disagree.
 *
 * - A MIG-mode GPU is never given whole: on such a GPU CUDA runs only on its MIG devices.
 * - A plain count (`gpu: 2`) gets whole GPUs, never MIG devices: a slice is not what it asked for.
 * - `mig: 3g.40gb` gets MIG devices of that profile (case-insensitive), never whole GPUs.
 * - `model` is a case-insensitive substring of the GPU's name (a MIG device: its GPU's name);
 *   `memory` a minimum per GPU (per MIG device): a GPU whose memory is unknown never meets it.
 * Pure, no imports but types.
 */
import type { GpuRequest, PlannedGpu, PlannedNode } from './plan-types.js';

/** A UUID nvidia-smi gives MIG devices (`MIG-…`), so a node without details still tells them apart. */
const MIG_UUID = /^MIG-/;

/** Whether a request asks anything of its GPUs beyond a count (the planner's slower path). */
export function isPlainRequest(request: GpuRequest | undefined): boolean {
  return request === undefined || (request.model === undefined && request.memoryBytes === undefined && request.mig === undefined);
}

/** What a node says of each of its GPUs, in `gpus` order; a GPU it gave no details of gets defaults. */
export function gpuUnitsOf(node: Pick<PlannedNode, 'gpus' | 'gpuDetails'>): PlannedGpu[] {
  const details = new Map((node.gpuDetails ?? []).map((d) => [d.uuid, d]));
  return node.gpus.map(
    (uuid) => details.get(uuid) ?? { uuid, name: '', memoryBytes: null, mig: MIG_UUID.test(uuid) ? { profile: '', gpu: '' } : null },
  );
}

/** Whether one GPU (or MIG device) may be given to a run asking `request`, free or not. */
export function gpuMeets(unit: PlannedGpu, request: GpuRequest | undefined): boolean {
  if (unit.migMode) return false;
  if (request?.mig === undefined) {
    if (unit.mig !== null) return false;
  } else if (unit.mig === null || unit.mig.profile.toLowerCase() !== request.mig.toLowerCase()) {
    return false;
  }
  if (request?.model !== undefined && !unit.name.toLowerCase().includes(request.model.toLowerCase())) return false;
  if (request?.memoryBytes !== undefined && (unit.memoryBytes === null || unit.memoryBytes < request.memoryBytes)) return false;
  return true;
}

/** UUIDs of the node's GPUs (or MIG devices) that meet `request`, in index order, in use or not. */
export function eligibleGpus(node: Pick<PlannedNode, 'gpus' | 'gpuDetails'>, request: GpuRequest | undefined): string[] {
  return gpuUnitsOf(node)
    .filter((u) => gpuMeets(u, request))
    .map((u) => u.uuid);
}

/** "2 GPUs matching model H100 with at least 40 GB", "1 MIG device 3g.40gb": what a request asks, for people. */
export function describeGpuRequest(count: number, request: GpuRequest | undefined): string {
  const what = request?.mig !== undefined ? `MIG device${count === 1 ? '' : 's'} ${request.mig}` : `GPU${count === 1 ? '' : 's'}`;
  const parts = [`${count} ${what}`];
  if (request?.model !== undefined) parts.push(`matching model ${request.model}`);
  if (request?.memoryBytes !== undefined) parts.push(`with at least ${formatGpuMemory(request.memoryBytes)}`);
  return parts.join(' ');
}

/** Bytes as a person wrote them: whole GiB as GiB, otherwise decimal GB (one decimal at most). */
export function formatGpuMemory(bytes: number): string {
  const GiB = 1024 ** 3;
  if (bytes % GiB === 0) return `${bytes / GiB} GiB`;
  const gb = Math.round(bytes / 1e8) / 10;
  return `${gb} GB`;
}

/**
 * Why no node can ever give `count` GPUs meeting `request` (in use, foreign-busy or lost alike: they
 * come back), or null when some node can. Names the node that comes closest, e.g. "no node has 2
 * GPUs matching model H100 with at least 40 GB; largest: 1× NVIDIA H100 80GB HBM3 on gpu-01".
 */
export function gpuShortfall(
  nodes: ReadonlyArray<Pick<PlannedNode, 'id' | 'gpus' | 'gpuDetails'>>,
  count: number,
  request: GpuRequest | undefined,
): string | null {
  let best: { id: string; units: PlannedGpu[] } | null = null;
  for (const node of nodes) {
    const units = gpuUnitsOf(node).filter((u) => gpuMeets(u, request));
    if (units.length >= count) return null;
    if (best === null || units.length > best.units.length) best = { id: node.id, units };
  }
  const asked = `no node has ${describeGpuRequest(count, request)}`;
  if (best === null || best.units.length === 0) return `${asked}; none has even one`;
  return `${asked}; largest: ${best.units.length}× ${unitLabel(best.units[0]!)} on ${best.id}`;
}

function unitLabel(unit: PlannedGpu): string {
  const name = unit.name || 'GPU';
  return unit.mig ? `${unit.mig.profile} of ${name}` : name;
}
