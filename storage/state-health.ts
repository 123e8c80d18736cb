/**
 * Whether the leader's state takes writes: what /healthz reports. It writes the one health_probe
 * row (id 1) with the time, an upsert in each engine's words (SQLite's ON CONFLICT, MySQL's ON
 * DUPLICATE KEY UPDATE), through `scope.write`: on a fenced scope a leader that lost its lease
 * reports false, as its writes would fail too.
 */
import type { StateScope } from './sql/state-scope.js';

/** True when a write to the state succeeds; any error (read-only file, lost server, fenced out) is false. */
export async function isStateWritable(scope: StateScope, now: () => Date = () => new Date()): Promise<boolean> {
  try {
    await scope.write(async (trx) => {
      const at = now().toISOString();
      const insert = trx.db.insertInto('health_probe').values({ id: 1, at });
      await (trx.engine === 'mysql'
        ? insert.onDuplicateKeyUpdate({ at })
        : insert.onConflict((oc) => oc.column('id').doUpdateSet({ at }))
      ).execute();
    });
    return true;
  } catch {
    return false;
  }
}
