/** A node under its disk watermark says so on GET /api/v1/nodes (and so on the status page), in its own words. */
import { describe, expect, it } from 'vitest';
import type { NodeView } from '../scheduler/cluster/node-view.js';
import { toApiNode } from './api-schema.js';

const host = { load: 0.5, cpus: 8, memory_total_bytes: 1000, memory_free_bytes: 500, disk_total_bytes: 10, disk_free_bytes: 1 };
const view = (diskLow?: string): NodeView => ({
  id: 'gpu-01',
  state: 'up',
  lastSeen: '2026-12-01T12:00:00.000Z',
  hello: null,
  status: { type: 'status', at: '2026-12-01T12:00:00.000Z', gpus: [], host, ...(diskLow ? { disk_low: diskLow } : {}) },
});

describe('disk_low in the API node', () => {
  it("carries the node's sentence while it is under its watermark, and is absent once it has room", () => {
    const low = 'node gpu-01 has 1.2 GiB free in /var/lib/secd-node, under its disk watermark of 2 GiB';
    expect(toApiNode(view(low), [])).toMatchObject({ id: 'gpu-01', disk_low: low });
    expect(toApiNode(view(), [])).not.toHaveProperty('disk_low');
  });
});
