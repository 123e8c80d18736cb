import { describe, expect, it } from 'vitest';
import { judgeApprovals } from './approval-count.js';

const members = [
  { id: 1, username: 'alice', state: 'active', access_level: 30 },
  { id: 2, username: 'bob', state: 'active', access_level: 50 },
  { id: 3, username: 'rita', state: 'active', access_level: 40 },
  { id: 4, username: 'gus', state: 'active', access_level: 20 },
  { id: 5, username: 'old', state: 'blocked', access_level: 40 },
  { id: 9, username: 'secd-bot', state: 'active', access_level: 40 },
];
const author = { username: 'Rita', userId: 3, botUserId: 9 };

describe('judgeApprovals', () => {
  it('counts distinct active members with Developer access or more', () => {
    const v = judgeApprovals([{ id: 1, username: 'alice' }, { id: 2, username: 'bob' }, { id: 1, username: 'alice' }], members, author);
    expect(v.filter((x) => x.counted).map((x) => x.username)).toEqual(['alice', 'bob']);
  });

  it("never counts the researcher, secd's user, reporters, blocked users or strangers, and says why", () => {
    const v = judgeApprovals(
      [
        { id: 3, username: 'rita' },
        { id: 9, username: 'secd-bot' },
        { id: 4, username: 'gus' },
        { id: 5, username: 'old' },
        { id: 77, username: 'stranger' },
      ],
      members,
      author,
    );
    expect(v.every((x) => !x.counted)).toBe(true);
    expect(v.map((x) => x.why)).toEqual([
      "the run's researcher (authors never review their own outputs)",
      "secd's own user",
      'access level 20 in the review project (Developer, 30, or more needed)',
      'a blocked member of the review project',
      'not a member of the review project',
    ]);
  });

  it('knows the researcher by name when the run has no user id', () => {
    const v = judgeApprovals([{ id: 3, username: 'rita' }], members, { username: 'RITA', userId: null, botUserId: null });
    expect(v[0]!.counted).toBe(false);
  });
});
