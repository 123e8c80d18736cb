/**
 * Fetch exactly one commit into a fresh working folder: what the node builds is the pushed commit,
 * byte for byte, whatever the branch points at by now. Git runs through results/node-git.ts, the
 * node's one door to it: hermetic, and a token in the source URL travels in a header, never on argv.
 */
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { redactCredentials } from '../../scheduler/common/redact.js';
import { describeGitFailure, gitRemote, runGit } from '../results/node-git.js';

/** Check out `commit` from `source` (URL or path) into `dir` as a detached, shallow working tree. */
export async function checkoutCommit(source: string, commit: string, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const remote = gitRemote(source);
  try {
    await runGit(['init', '-q'], { cwd: dir });
    await runGit(['fetch', '-q', '--depth=1', '--no-tags', remote.url, commit], { cwd: dir, settings: remote.settings });
    await runGit(['checkout', '-q', '--detach', 'FETCH_HEAD'], { cwd: dir, settings: [{ key: 'advice.detachedHead', value: 'false' }] });
  } catch (err) {
    throw new Error(`could not fetch commit ${commit.slice(0, 8)}: ${redactCredentials(describeGitFailure(err), remote.secrets)}`);
  }
}

/** Whether `dir` is a checkout that holds `commit` (false for a missing or half-removed folder). */
export async function hasCommit(dir: string, commit: string): Promise<boolean> {
  try {
    // Its own repository, not one git would find in a folder above it.
    await stat(join(dir, '.git'));
    await runGit(['rev-parse', '--verify', '--quiet', `${commit}^{commit}`], { cwd: dir });
    return true;
  } catch {
    return false;
  }
}
