import { describe, expect, it } from 'vitest';
import { formatBytes, reviewDescription, reviewTitle } from './review-request.js';

const subject = {
  runId: 'r-abc',
  project: 'rita/model',
  commit: 'a'.repeat(40),
  user: 'rita',
  end: 'succeeded',
  reason: 'succeeded',
  datasets: ['ward'],
  approvalsRequired: 2,
  reviewCommit: 'b'.repeat(40),
  files: [
    { path: 'outputs/x/summary.csv', bytes: 2048 },
    { path: 'outputs/x/odd|name`.txt', bytes: 3 },
  ],
  findings: [{ file: 'summary.csv', rule: 'small_cell' as const, detail: 'row 3, column count: a positive count below 10' }],
};

describe('review request', () => {
  it('titles the merge request as DESIGN §10 says', () => {
    expect(reviewTitle(subject)).toBe('Release run r-abc: rita/model@aaaaaaaa by rita');
  });

  it('lists every file with its size, every finding, the commit and the approvals needed', () => {
    const d = reviewDescription(subject);
    expect(d).toContain('| `outputs/x/summary.csv` | 2 KiB |');
    expect(d).toContain("`outputs/x/odd\\|name'.txt`");
    expect(d).toContain('- `summary.csv`: **small_cell** — row 3, column count');
    expect(d).toContain('b'.repeat(40));
    expect(d).toContain('after 2 output checkers approve');
    expect(d).toContain('it read `ward`');
  });

  it('says so when there is nothing flagged', () => {
    expect(reviewDescription({ ...subject, findings: [] })).toContain('No findings.');
  });

  it('formats sizes', () => {
    expect(formatBytes(12)).toBe('12 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(256 * 1024 * 1024)).toBe('256 MiB');
  });
});
