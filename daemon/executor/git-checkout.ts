/**
 * Fetch exactly one commit into a fresh working folder: what the node builds is the pushed commit,
 * byte for byte, whatever the branch points at by now.
 */
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { promisify } from 'node:util';
import { redactCredentials } from '../../scheduler/common/redact.js';

const run = promisify(execFile);

/** Environment for git that ignores the machine's and the user's configuration and never prompts. */
export function isolatedGitEnv(): NodeJS.ProcessEnv {
  return { ...process.env, GIT_TERMINAL_PROMPT: '0', GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null' };
}

/** Check out `commit` from `source` (URL or path) into `dir` as a detached, shallow working tree. */
export async function checkoutCommit(source: string, commit: string, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const env = isolatedGitEnv();
  try {
    await run('git', ['init', '-q', dir], { env });
    await run('git', ['-C', dir, 'fetch', '-q', '--depth=1', '--no-tags', source, commit], { env, maxBuffer: 16 * 1024 * 1024 });
    await run('git', ['-C', dir, '-c', 'advice.detachedHead=false', 'checkout', '-q', '--detach', 'FETCH_HEAD'], { env });
  } catch (err) {
    const text = err instanceof Error ? ((err as { stderr?: string }).stderr || err.message) : String(err);
    throw new Error(`could not fetch commit ${commit.slice(0, 8)}: ${redactCredentials(text).trim()}`);
  }
}
