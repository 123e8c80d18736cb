import { describe, expect, it } from 'vitest';
import { GpuHistory } from './gpu-history.js';

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);

describe('GPU utilisation history', () => {
  it('keeps the mean of each 5-second bucket over the last 10 minutes, N/A left out', () => {
    const h = new GpuHistory();
    h.record('GPU-a', 20, T0);
    h.record('GPU-a', 40, T0 + 2_000);
    h.record('GPU-a', null, T0 + 3_000);
    expect(h.record('GPU-a', 90, T0 + 5_000)).toEqual({ t: (T0 + 5_000) / 1000, value: 90 });
    const s = h.series('GPU-a', T0 + 5_000)!;
    expect(s.step).toBe(5);
    expect(s.values).toHaveLength(120);
    expect(s.start).toBe((T0 + 5_000) / 1000 - 119 * 5);
    expect(s.values.slice(-2)).toEqual([30, 90]);
    expect(s.values.slice(0, -2).every((v) => v === null)).toBe(true);
  });

  it('forgets readings older than the window and GPUs that stopped reporting', () => {
    const h = new GpuHistory();
    h.record('GPU-a', 50, T0);
    h.record('GPU-b', 70, T0);
    h.record('GPU-b', 10, T0 + 9 * 60_000);
    expect(h.series('GPU-a', T0 + 11 * 60_000)).toBeNull();
    const b = h.series('GPU-b', T0 + 11 * 60_000)!;
    expect(b.values.filter((v) => v !== null)).toEqual([10]);
    h.prune(T0 + 11 * 60_000);
    expect(h.size).toBe(1);
  });

  it('stays bounded however many GPUs report: the longest-silent one goes first', () => {
    const h = new GpuHistory({ maxGpus: 3 });
    for (const [i, uuid] of ['a', 'b', 'c'].entries()) h.record(uuid, 1, T0 + i);
    h.record('a', 2, T0 + 10);
    h.record('d', 3, T0 + 11);
    expect(h.size).toBe(3);
    expect(h.series('b', T0 + 20)).toBeNull();
    expect(h.series('a', T0 + 20)).not.toBeNull();
  });

  it('ignores a report older than the window and clamps impossible values', () => {
    const h = new GpuHistory();
    h.record('GPU-a', 10, T0 + 20 * 60_000);
    expect(h.record('GPU-a', 99, T0)).toBeNull();
    expect(h.record('GPU-a', 250, T0 + 20 * 60_000 + 5_000)?.value).toBe(100);
  });
});
