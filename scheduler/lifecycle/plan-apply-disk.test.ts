/** What a node says of its disk reaches the planner: a node under its watermark is planned as one that takes no new run. */
import { describe, expect, it } from 'vitest';
import { plannedNode } from './plan-apply.js';
import type { NodeHandle } from './lifecycle-deps.js';

function handle(diskLow: string | null): NodeHandle {
  return {
    id: 'gpu-01',
    state: () => 'up',
    gpus: () => [],
    foreignBusyGpus: () => [],
    cpuSlots: () => 2,
    diskLow: () => diskLow,
    assign: () => {},
    cancel: () => {},
  } as unknown as NodeHandle;
}

describe('plannedNode and the disk watermark', () => {
  it("carries the node's sentence while its disk is under the watermark, and nothing once it has room", () => {
    expect(plannedNode(handle('node gpu-01 has 1 GiB free, under its disk watermark of 2 GiB')).diskLow).toBe(
      'node gpu-01 has 1 GiB free, under its disk watermark of 2 GiB',
    );
    expect(plannedNode(handle(null))).not.toHaveProperty('diskLow');
  });
});
