/**
 * The vouch command secd suggests, run for real: for a history of many unsigned commits (a project
 * imported unsigned) git itself lists the range, and the commit it makes vouches for exactly those
 * commits as secd reads trailers. (Run here without -S: this test has no signing key; the signature
 * is the leader's business, the trailer block is this one's.)
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { hermeticGitEnv } from '../common/git-env.js';
import { vouchCommand, vouchedCommits, whichCommits } from './vouch-trailers.js';

const dir = mkdtempSync(join(tmpdir(), 'secd-vouch-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const env = { ...hermeticGitEnv(), GIT_AUTHOR_NAME: 'Ada', GIT_AUTHOR_EMAIL: 'ada@example.org', GIT_COMMITTER_NAME: 'Ada', GIT_COMMITTER_EMAIL: 'ada@example.org' };
const git = (...args: string[]) => execFileSync('git', args, { cwd: dir, env, encoding: 'utf8' }).trim();

describe('the vouch command for many unsigned commits', () => {
  it('names up to five commits with --trailer, and past that lets git list the range; either way the vouch covers exactly them', () => {
    git('init', '--quiet');
    git('commit', '--quiet', '--allow-empty', '-m', 'base');
    const base = git('rev-parse', 'HEAD');
    const shas: string[] = [];
    for (let i = 1; i <= 7; i++) {
      git('commit', '--quiet', '--allow-empty', '-m', `unsigned ${i}`);
      shas.push(git('rev-parse', 'HEAD'));
    }
    expect(vouchCommand(shas.slice(0, 2), base)).toBe(
      `git commit --allow-empty -S -m 'Vouch for unsigned commits' --trailer 'Secd-Vouches-For: ${shas[0]}' --trailer 'Secd-Vouches-For: ${shas[1]}'`,
    );
    const command = vouchCommand(shas, base);
    expect(command.length).toBeLessThan(240);
    execFileSync('bash', ['-c', command.replace(' -S ', ' ')], { cwd: dir, env });
    expect(vouchedCommits(git('log', '-1', '--format=%B'))).toEqual(shas);
    // At the root (no parent): the whole history up to the newest refused commit.
    const fromRoot = vouchCommand(shas, null);
    execFileSync('bash', ['-c', fromRoot.replace(' -S ', ' ')], { cwd: dir, env });
    expect(vouchedCommits(git('log', '-1', '--format=%B'))).toEqual([base, ...shas]);
  });

  it('names at most five commits in the refusal, and says how many more', () => {
    const shas = Array.from({ length: 311 }, (_, i) => i.toString(16).padStart(40, '0'));
    expect(whichCommits(shas)).toBe(`these 311 commits (${shas.slice(0, 5).map((s) => s.slice(0, 8)).join(', ')} and 306 more)`);
    expect(whichCommits(shas.slice(0, 1))).toBe('this commit');
  });
});
