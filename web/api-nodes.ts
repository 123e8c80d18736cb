/**
 * GET /api/v1/nodes's list (also what /metrics and the status page's feed read): every node's view
 * with the runs the state database has in flight on it, mapped by toApiNode. The status page reads
 * it several times a second, so a node whose state, reports and runs did not change keeps its
 * object (the one cache between a node's status message and the page), and the feed's change
 * detection finds nothing to send for it. The runs in flight come from the async run store, so the
 * list is async too; calls that overlap each read the runs, and the cache is only ever replaced by
 * a whole entry.
 */
import type { NodeView } from '../scheduler/cluster/node-view.js';
import type { RunRow } from '../storage/run-store.js';
import { toApiNode, type ApiNode } from './api-schema.js';

/** Where the list comes from. */
export interface ApiNodeSources {
  /** Every node's view, in the order the API lists them. */
  views(): NodeView[];
  /** The runs in flight (assigned to a node and not finished). */
  inFlight(): Promise<RunRow[]>;
}

/** A function that lists the API's nodes, rebuilding only those that changed since the last call. */
export function apiNodeList(sources: ApiNodeSources): () => Promise<ApiNode[]> {
  const cache = new Map<string, { view: NodeView; runsKey: string; api: ApiNode }>();
  // A view is rebuilt on every call; what it refers to (the hello, the status) is kept by identity.
  const same = (a: NodeView, b: NodeView) => a.state === b.state && a.lastSeen === b.lastSeen && a.hello === b.hello && a.status === b.status;
  return async () => {
    const inFlight = await sources.inFlight();
    // From here on nothing awaits: the views and the runs are matched in one step.
    const runsOn = new Map<string, RunRow[]>();
    for (const r of inFlight) if (r.node !== null) runsOn.set(r.node, [...(runsOn.get(r.node) ?? []), r]);
    const seen = new Set<string>();
    const list = sources.views().map((v) => {
      seen.add(v.id);
      const runs = runsOn.get(v.id) ?? [];
      const runsKey = runs.map((r) => `${r.id}:${r.gpus.join(',')}`).join(';');
      const cached = cache.get(v.id);
      if (cached && same(cached.view, v) && cached.runsKey === runsKey) return cached.api;
      const api = toApiNode(v, runs);
      cache.set(v.id, { view: v, runsKey, api });
      return api;
    });
    for (const id of cache.keys()) if (!seen.has(id)) cache.delete(id);
    return list;
  };
}
