import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { decayedGpuHours, decayedUsage, UsageLedger, DEFAULT_FAIR_SHARE_HALF_LIFE_HOURS } from './fair-share.js';

const HOUR = 3_600_000;
const NOW = Date.UTC(2026, 0, 8, 12, 0, 0);

describe('decayed GPU-hours', () => {
  it('a run that has just ended counts its full GPU-hours, less a little decay over its own length', () => {
    // 2 GPUs for 1 h ending now, half-life 168 h: 2 · 168/ln2 · (1 − 2^(−1/168)) ≈ 1.9959.
    const hours = decayedGpuHours({ gpus: 2, startMs: NOW - HOUR, endMs: NOW }, NOW, 168);
    expect(hours).toBeCloseTo((2 * 168 * (1 - Math.pow(2, -1 / 168))) / Math.LN2, 9);
    expect(hours).toBeGreaterThan(1.99);
    expect(hours).toBeLessThan(2);
  });

  it('one half-life later it counts half, two half-lives later a quarter', () => {
    const use = { gpus: 8, startMs: NOW - 3 * HOUR, endMs: NOW - 2 * HOUR };
    const fresh = decayedGpuHours(use, use.endMs, 24);
    expect(decayedGpuHours(use, use.endMs + 24 * HOUR, 24)).toBeCloseTo(fresh / 2, 9);
    expect(decayedGpuHours(use, use.endMs + 48 * HOUR, 24)).toBeCloseTo(fresh / 4, 9);
  });

  it('a run still running counts up to now; nothing before it starts; CPU-only runs count nothing', () => {
    const running = { gpus: 1, startMs: NOW - HOUR, endMs: NOW + 5 * HOUR };
    expect(decayedGpuHours(running, NOW, 168)).toBeCloseTo(decayedGpuHours({ ...running, endMs: NOW }, NOW, 168), 12);
    expect(decayedGpuHours(running, NOW - 2 * HOUR, 168)).toBe(0);
    expect(decayedGpuHours({ gpus: 0, startMs: NOW - HOUR, endMs: NOW }, NOW, 168)).toBe(0);
  });

  it('sums per user', () => {
    const usage = decayedUsage(
      [
        { user: 'ann', gpus: 1, startMs: NOW - 2 * HOUR, endMs: NOW - HOUR },
        { user: 'ann', gpus: 1, startMs: NOW - HOUR, endMs: NOW },
        { user: 'ben', gpus: 0, startMs: NOW - HOUR, endMs: NOW },
      ],
      NOW,
      168,
    );
    expect(Object.keys(usage)).toEqual(['ann']);
    expect(usage.ann).toBeCloseTo(decayedGpuHours({ gpus: 1, startMs: NOW - 2 * HOUR, endMs: NOW }, NOW, 168), 9);
  });

  it('a half-life that is not a positive number is refused, naming it', () => {
    for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => decayedUsage([], NOW, bad)).toThrow(`the fair-share half-life must be a positive number of hours (got ${bad})`);
      expect(() => new UsageLedger(bad)).toThrow(/half-life/);
    }
  });

  it('the incremental ledger agrees with the sum over every run, in whatever order runs end', () => {
    const useArb = fc.record({
      user: fc.constantFrom('ann', 'ben', 'cai'),
      gpus: fc.integer({ min: 0, max: 8 }),
      startH: fc.double({ min: -500, max: -1, noNaN: true }),
      lengthH: fc.double({ min: 0, max: 48, noNaN: true }),
    });
    fc.assert(
      fc.property(fc.array(useArb, { maxLength: 30 }), fc.integer({ min: 1, max: 400 }), (raw, halfLife) => {
        const uses = raw.map((u) => ({ user: u.user, gpus: u.gpus, startMs: NOW + u.startH * HOUR, endMs: Math.min(NOW, NOW + (u.startH + u.lengthH) * HOUR) }));
        const ledger = new UsageLedger(halfLife);
        for (const use of uses) ledger.add(use);
        const want = decayedUsage(uses, NOW, halfLife);
        const got = ledger.usageAt(NOW);
        for (const user of new Set([...Object.keys(want), ...Object.keys(got)])) {
          expect(got[user] ?? 0).toBeCloseTo(want[user] ?? 0, 6);
        }
      }),
    );
  });

  it('the default half-life is a week', () => {
    expect(DEFAULT_FAIR_SHARE_HALF_LIFE_HOURS).toBe(168);
  });
});
