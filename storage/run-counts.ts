/**
 * How many runs are in each state, straight from the `runs` table (indexed by state): what /metrics
 * reports as the queue length and as finished-run totals, which therefore survive leader restarts.
 * On either engine; MySQL hands COUNT(*) back as a BIGINT (a string with some drivers' settings),
 * so every count passes through Number().
 */
import { RUN_STATES, type RunState } from './run-states.js';
import type { StateScope } from './sql/state-scope.js';

/** Count runs per state; every state is present (0 when none). */
export async function countRunsByState(scope: StateScope): Promise<Record<RunState, number>> {
  const counts = Object.fromEntries(RUN_STATES.map((s) => [s, 0])) as Record<RunState, number>;
  const rows = await scope.db
    .selectFrom('runs')
    .select((eb) => ['state', eb.fn.countAll<number | string | bigint>().as('n')])
    .groupBy('state')
    .execute();
  for (const r of rows) if (r.state in counts) counts[r.state as RunState] = Number(r.n);
  return counts;
}
