/** A run as intake creates it, for tests of the store and of what reads its database. */
import type { NewRun } from '../../storage/run-store.js';

/** A new run of `lab/model` by alice; `over` names what a test cares about. */
export function aNewRun(over: Partial<NewRun> = {}): NewRun {
  return {
    id: 'r1',
    projectId: 7,
    project: 'lab/model',
    ref: 'refs/heads/main',
    beforeSha: '0'.repeat(40),
    commit: 'a'.repeat(40),
    user: 'alice',
    userId: 1,
    deliveryKey: 'k1',
    fetchUrl: 'http://127.0.0.1/lab/model.git',
    ...over,
  };
}
