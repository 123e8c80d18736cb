import { describe, expect, it } from 'vitest';
import { checkCommits, COMMIT_LOG_FORMAT, parseCommitLog, type LoggedCommit } from './check-commits.js';
import type { OwnKey } from './check-signing.js';

const OWN: OwnKey = { format: 'openpgp', label: 'AAAA', fingerprints: ['0123456789ABCDEF0123456789ABCDEF01234567'], emails: ['ada@example.org'] };
const sha = (n: number) => n.toString(16).padStart(40, '0');

/** A commit as git log gives it; signed by OWN unless said otherwise. */
function aCommit(n: number, o: Partial<LoggedCommit> = {}): LoggedCommit {
  return {
    sha: sha(n),
    parent: n > 1 ? sha(n - 1) : null,
    status: 'G',
    key: '23456789ABCDEF01234567'.slice(-16),
    fingerprint: OWN.fingerprints[0]!,
    primary: OWN.fingerprints[0]!,
    committerEmail: 'ada@example.org',
    subject: `change ${n}`,
    message: `change ${n}\n`,
    ...o,
  };
}
const unsigned = { status: 'N', key: '', fingerprint: '', primary: '' };
const byColleague = { status: 'U', key: 'FFFFFFFFFFFFFFFF', fingerprint: 'F'.repeat(40), primary: 'F'.repeat(40), committerEmail: 'bo@example.org' };

describe("secd check's verdict on the commits of a push", () => {
  it('reads the records git log writes in COMMIT_LOG_FORMAT, message newlines and all', () => {
    expect(COMMIT_LOG_FORMAT.startsWith('%x1e')).toBe(true);
    const out = `\x1e${sha(2)}\x1f${sha(1)}\x1fG\x1fKEY\x1fFPR\x1fPRI\x1fada@example.org\x1fsubject\x1fsubject\n\nbody\x1f with a unit separator\n\x1e${sha(1)}\x1f\x1fN\x1f\x1f\x1f\x1fada@example.org\x1froot\x1froot\n`;
    const [newest, root] = parseCommitLog(out);
    expect(newest).toMatchObject({ sha: sha(2), parent: sha(1), status: 'G', message: 'subject\n\nbody\x1f with a unit separator\n' });
    expect(root).toMatchObject({ sha: sha(1), parent: null, status: 'N' });
  });

  it('accepts a push whose commits are signed, the newest by your key, older ones by a colleague', () => {
    const found = checkCommits([aCommit(2), aCommit(1, byColleague)], OWN, 'origin/main..HEAD');
    expect(found).toEqual([{ level: 'ok', topic: 'commits', text: '2 commits to push (origin/main..HEAD), all signed; the newest by your key AAAA' }]);
  });

  it("refuses a newest commit a colleague signed, without offering a vouch (it is no one's to vouch for)", () => {
    const [refusal, ...rest] = checkCommits([aCommit(2, byColleague), aCommit(1)], OWN, 'r');
    expect(refusal).toMatchObject({ level: 'error', text: expect.stringContaining(`commit ${sha(2).slice(0, 8)} (change 2) is the newest commit, the one that runs, but it is signed by key ${'F'.repeat(40)}`) });
    expect(refusal!.text).not.toContain('Secd-Vouches-For');
    expect(rest).toEqual([]);
  });

  it('counts a vouch only from a later commit signed by your own key', () => {
    const vouch = (n: number, o: Partial<LoggedCommit> = {}) => aCommit(n, { message: `Vouch\n\nSecd-Vouches-For: ${sha(1)}\n`, ...o });
    expect(checkCommits([aCommit(3), vouch(2), aCommit(1, unsigned)], OWN, 'r').map((f) => f.level)).toEqual(['note', 'ok']);
    expect(checkCommits([aCommit(3), vouch(2, byColleague), aCommit(1, unsigned)], OWN, 'r').map((f) => f.level)).toEqual(['error']);
    // A vouch for a commit that comes after it vouches for nothing.
    expect(checkCommits([aCommit(2, unsigned), vouch(1, { message: `Vouch\n\nSecd-Vouches-For: ${sha(2)}\n` })], OWN, 'r')[0]).toMatchObject({ level: 'error' });
  });

  it('names the first refused commit with its code, and the others in one more line', () => {
    const found = checkCommits([aCommit(4), aCommit(3, { status: 'R' }), aCommit(2, unsigned), aCommit(1, { status: 'B' })], OWN, 'r');
    expect(found.map((f) => f.level)).toEqual(['error', 'error']);
    expect(found[0]!.text).toContain(`commit ${sha(1).slice(0, 8)} (change 1) has a signature that does not match its content`);
    expect(found[0]!.text).toContain(`these 3 commits (${sha(1).slice(0, 8)}, ${sha(2).slice(0, 8)}, ${sha(3).slice(0, 8)})`);
    expect(found[1]!.text).toBe(`2 more commits would be refused: ${sha(2).slice(0, 8)} (unsigned), ${sha(3).slice(0, 8)} (revoked_key)`);
  });

  it('refuses your own commit whose committer email is not a user id of your key', () => {
    const [f] = checkCommits([aCommit(1, { committerEmail: 'ada@elsewhere.org' })], OWN, 'r');
    expect(f).toMatchObject({ level: 'error', text: expect.stringContaining('has committer email ada@elsewhere.org, which is not a user id of your key AAAA: commit with an email') });
  });

  it('says there is nothing to push for an empty range', () => {
    expect(checkCommits([], OWN, 'origin/main..HEAD')).toEqual([{ level: 'ok', topic: 'commits', text: 'nothing to push: origin/main..HEAD is empty' }]);
  });
});
