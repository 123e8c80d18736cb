/**
 * How many runs are in each state, straight from the `runs` table (indexed by state): what /metrics
 * reports as the queue length and as finished-run totals, which therefore survive leader restarts.
 */
import type { SqliteDatabase } from './database.js';
import { RUN_STATES, type RunState } from './run-states.js';

/** Count runs per state; every state is present (0 when none). */
export function countRunsByState(db: SqliteDatabase): Record<RunState, number> {
  const counts = Object.fromEntries(RUN_STATES.map((s) => [s, 0])) as Record<RunState, number>;
  const rows = db.prepare('SELECT state, COUNT(*) AS n FROM runs GROUP BY state').all() as Array<{ state: string; n: number }>;
  for (const r of rows) if (r.state in counts) counts[r.state as RunState] = r.n;
  return counts;
}
