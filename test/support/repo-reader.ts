/**
 * Reading what secd pushed back, for assertions: plain git on a project's bare repository on the
 * GitLab double (`git show <branch>:<file>`, `git ls-tree`, ...) with the one hermetic git recipe, and
 * the outputs folder a results branch keeps its files in. Synchronous, as `expect` lines want it.
 * Compiled into dist, so it imports nothing from vitest.
 */
import { execFileSync } from 'node:child_process';
import { hermeticGitEnv } from '../../scheduler/common/git-env.js';

/** What `git -C <dir> <args>` prints; throws when git exits non-zero (as `git grep -q` does when nothing matches). */
export function gitOutput(dir: string, args: string[]): string {
  return execFileSync('git', ['-C', dir, ...args], { env: hermeticGitEnv() }).toString();
}

/** The folder a results branch `secd-<stamp>-<run id>` keeps the run's outputs in: `outputs/<stamp>-<run id>`. */
export function outputsFolder(branch: string): string {
  return `outputs/${branch.slice('secd-'.length)}`;
}
