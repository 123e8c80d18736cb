import { describe, expect, it } from 'vitest';
import { releaseDecision } from './release-policy.js';

const defaults = { default: 'direct' as const, approvals: 2 };

describe('releaseDecision', () => {
  it('a run given no dataset follows release.default', () => {
    expect(releaseDecision([], defaults)).toEqual({ policy: 'direct', approvalsRequired: 2, datasets: [] });
    expect(releaseDecision([], { default: 'review', approvals: 3 })).toEqual({ policy: 'review', approvalsRequired: 3, datasets: [] });
  });

  it('takes the strictest policy and the largest approvals of its review datasets', () => {
    const d = releaseDecision(
      [
        { name: 'open', release: 'direct', approvals: 5 },
        { name: 'ward', release: 'review', approvals: null },
        { name: 'icu', release: 'review', approvals: 3 },
      ],
      defaults,
    );
    expect(d).toEqual({ policy: 'review', approvalsRequired: 3, datasets: ['open', 'ward', 'icu'] });
  });

  it('a review dataset without its own number asks for release.approvals', () => {
    expect(releaseDecision([{ name: 'ward', release: 'review', approvals: null }], { default: 'direct', approvals: 4 }).approvalsRequired).toBe(4);
  });

  it('only direct datasets: direct', () => {
    expect(releaseDecision([{ name: 'open', release: 'direct', approvals: null }], defaults).policy).toBe('direct');
  });
});
