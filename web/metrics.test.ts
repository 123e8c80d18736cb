import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { describe, expect, it } from 'vitest';
import { RUN_STATES, type RunState } from '../storage/run-states.js';
import { createLeaderMetrics } from './metrics.js';

function counts(over: Partial<Record<RunState, number>>): Record<RunState, number> {
  return { ...(Object.fromEntries(RUN_STATES.map((s) => [s, 0])) as Record<RunState, number>), ...over };
}

async function scrape(c: Record<RunState, number>): Promise<Map<string, Array<{ labels?: Record<string, string>; value?: string }>>> {
  let reads = 0;
  const metrics = createLeaderMetrics({
    nodes: async () => [],
    runCounts: async () => {
      reads++;
      return c;
    },
  });
  const { body } = await metrics.render();
  // Every run gauge and counter of one scrape shares one read of the counts.
  expect(reads).toBe(1);
  return new Map(parsePrometheusTextFormat(body).map((f) => [f.name, f.metrics as Array<{ labels?: Record<string, string>; value?: string }>]));
}

describe('/metrics and output release', () => {
  it('counts runs waiting for output checkers apart from runs on nodes and queued runs', async () => {
    const families = await scrape(counts({ held: 3, running: 1, queued: 2 }));
    expect(Number(families.get('secd_runs_held')?.[0]?.value)).toBe(3);
    expect(Number(families.get('secd_runs_in_progress')?.[0]?.value)).toBe(1);
    expect(Number(families.get('secd_runs_queued')?.[0]?.value)).toBe(2);
  });

  it('counts withheld runs among the finished ones, by state, and never counts a held run as finished', async () => {
    const families = await scrape(counts({ held: 4, withheld: 2, succeeded: 5 }));
    const finished = families.get('secd_runs_finished_total') ?? [];
    const byState = Object.fromEntries(finished.map((m) => [m.labels?.state, Number(m.value)]));
    expect(byState.withheld).toBe(2);
    expect(byState.succeeded).toBe(5);
    expect(byState).not.toHaveProperty('held');
  });
});

describe('/metrics and several leaders', () => {
  it('says whether this leader is the active one, and its epoch', async () => {
    for (const [role, active] of [['active', 1], ['standby', 0]] as const) {
      const metrics = createLeaderMetrics({ nodes: async () => [], runCounts: async () => counts({}), role: () => ({ role, epoch: 9 }) });
      const families = new Map(parsePrometheusTextFormat((await metrics.render()).body).map((f) => [f.name, f.metrics as Array<{ value?: string }>]));
      expect(Number(families.get('secd_leader_active')?.[0]?.value)).toBe(active);
      expect(Number(families.get('secd_leader_epoch')?.[0]?.value)).toBe(9);
    }
  });
});
