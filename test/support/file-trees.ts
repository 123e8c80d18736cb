/**
 * Trees of files to compare byte for byte: a commit's tree as git stores it, a folder as it lies on
 * disk, both in one shape (path -> { mode, content }), so a test can say "the branch and the folder
 * hold the same files" with one `toEqual`. Modes are git's (100644, 100755) on both sides. Synchronous
 * reads, as `expect` lines want them; git runs with the one hermetic recipe.
 * Compiled into dist, so it imports nothing from vitest.
 */
import { execFileSync } from 'node:child_process';
import { lstat, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { hermeticGitEnv } from '../../scheduler/common/git-env.js';

/** One file of a tree: git's mode and the bytes. */
export interface TreeFile {
  mode: string;
  content: Buffer;
}

function gitBytes(cwd: string, ...args: string[]): Buffer {
  return execFileSync('git', args, { cwd, env: hermeticGitEnv(), maxBuffer: 64 << 20 });
}

/** Every file of a commit's tree under `prefix`, as path (below `prefix`) -> { mode, content }. */
export function branchFiles(repo: string, rev: string, prefix: string): Map<string, TreeFile> {
  const out = new Map<string, TreeFile>();
  const listing = gitBytes(repo, 'ls-tree', '-r', '-z', rev, '--', prefix).toString('utf8');
  for (const entry of listing.split('\0').filter((e) => e !== '')) {
    const [meta, path] = entry.split('\t') as [string, string];
    const [mode, , sha] = meta.split(' ') as [string, string, string];
    out.set(path.slice(prefix.length + 1), { mode, content: gitBytes(repo, 'cat-file', 'blob', sha) });
  }
  return out;
}

/** Every file under a folder on disk, in the shape of branchFiles; anything but files and folders is an error. */
export async function diskFiles(dir: string, prefix = ''): Promise<Map<string, TreeFile>> {
  const out = new Map<string, TreeFile>();
  for (const name of await readdir(dir)) {
    const path = join(dir, name);
    const st = await lstat(path);
    if (st.isDirectory()) {
      for (const [k, v] of await diskFiles(path, `${prefix}${name}/`)) out.set(k, v);
    } else if (st.isFile()) {
      out.set(`${prefix}${name}`, { mode: (st.mode & 0o111) !== 0 ? '100755' : '100644', content: await readFile(path) });
    } else {
      throw new Error(`${path} is neither a file nor a folder`);
    }
  }
  return out;
}

/** Every ref a repository holds (`refs/heads/main`, ...), sorted. */
export function remoteHeads(remote: string): string[] {
  return gitBytes(remote, 'for-each-ref', '--format=%(refname)', 'refs/').toString('utf8').split('\n').filter((l) => l !== '').sort();
}
