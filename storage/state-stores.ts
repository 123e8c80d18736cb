/**
 * Every store of the leader's state over one StateScope (storage/sql/state-scope.ts), and the way
 * several stores write in one transaction: `stores.transaction(async (s) => { await s.releases…;
 * return s.runs.transition(…) })` — inside, use `s`, never the outer stores.
 *
 * Where the state is (SQLite or MySQL) and whether its writes are fenced is the scope's business;
 * the stores are the same code on both engines.
 */
import { DatasetStore } from './dataset-store.js';
import { NodeStore } from './node-store.js';
import { ReleaseStore } from './release-store.js';
import { RunStore } from './run-store.js';
import type { StateScope } from './sql/state-scope.js';

/** The leader's stores over one scope. */
export interface StateStores {
  readonly scope: StateScope;
  readonly runs: RunStore;
  readonly nodes: NodeStore;
  readonly datasets: DatasetStore;
  readonly releases: ReleaseStore;
  /** Run `fn` in one transaction of this scope (joining the open one, if any); `fn` gets stores bound to it. */
  transaction<T>(fn: (s: StateStores) => Promise<T>): Promise<T>;
}

/** Build the stores over `scope`; `now` is every store's clock. */
export function stateStores(scope: StateScope, now: () => Date = () => new Date()): StateStores {
  return {
    scope,
    runs: new RunStore(scope, now),
    nodes: new NodeStore(scope, now),
    datasets: new DatasetStore(scope, now),
    releases: new ReleaseStore(scope, now),
    transaction: (fn) => scope.write((trx) => fn(stateStores(trx, now))),
  };
}
