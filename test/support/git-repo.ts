/**
 * A researcher's working repository for tests, driven with the real git CLI: write files, commit
 * (signed or not, as anyone), forge a commit, push. The user's ~/.gitconfig and /etc/gitconfig never
 * apply: git runs with secd's own hermetic environment (scheduler/common/git-env.ts) and a temp dir as
 * HOME, and identity is passed on every commit.
 * Compiled into dist, so it imports nothing from vitest.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { hermeticGitEnv } from '../../scheduler/common/git-env.js';
import type { GitSigner } from './gpg.js';

/** Who commits and how: leave `signer` out for an unsigned commit. */
export interface CommitOptions {
  signer?: GitSigner;
  committerName?: string;
  committerEmail?: string;
  authorName?: string;
  authorEmail?: string;
  /** Commit and author date (git's format, e.g. an ISO string); defaults to now. */
  date?: string;
  /** Files to write before committing, path -> content. */
  files?: Record<string, string>;
}

/** A working repository in a temp dir. */
export interface ResearcherRepo {
  dir: string;
  /** Run git in the repository with the hermetic environment; returns stdout. */
  git(args: string[], options?: { env?: Record<string, string>; input?: string | Buffer }): Promise<string>;
  writeFile(path: string, content: string): Promise<void>;
  /** Stage everything and commit; returns the new commit id. */
  commit(message: string, options?: CommitOptions): Promise<string>;
  /** Make `count` commits in a row, each changing a file; returns their ids, oldest first. */
  commitMany(count: number, options?: CommitOptions | ((i: number) => CommitOptions)): Promise<string[]>;
  /** The raw commit object, byte for byte. */
  readCommit(sha: string): Promise<Buffer>;
  /**
   * Forge a commit: the object of `sha` with its message replaced, keeping the original gpgsig.
   * The branch is moved to it; returns the forged commit's id.
   */
  tamperCommit(sha: string, newMessage: string): Promise<string>;
  /** Push the current branch (or `ref`) to `url` as `remoteRef` (default: the same name). */
  push(url: string, options?: { ref?: string; remoteRef?: string; force?: boolean }): Promise<void>;
  head(): Promise<string>;
  close(): Promise<void>;
}

/** Identity used when a test does not say who commits. */
export const DEFAULT_COMMITTER = { name: 'Ada Researcher', email: 'ada@example.org' };

/** Create an empty repository on branch `main` (or `branch`). */
export async function createResearcherRepo(options: { branch?: string } = {}): Promise<ResearcherRepo> {
  const root = await mkdtemp(join(tmpdir(), 'secd-repo-'));
  const home = join(root, 'home');
  const dir = join(root, 'work');
  await mkdir(home);
  await mkdir(dir);
  const baseEnv = hermeticGitEnv({ home });
  const branch = options.branch ?? 'main';
  let counter = 0;

  const git = (args: string[], o: { env?: Record<string, string>; input?: string | Buffer } = {}): Promise<string> =>
    runGit(dir, args, { ...baseEnv, ...o.env }, o.input).then((b) => b.toString('utf8'));

  await git(['init', '--quiet', `--initial-branch=${branch}`]);

  const repo: ResearcherRepo = {
    dir,
    git,
    async writeFile(path, content) {
      const full = join(dir, path);
      await mkdir(dirname(full), { recursive: true });
      await writeFile(full, content);
    },
    async commit(message, o = {}) {
      for (const [path, content] of Object.entries(o.files ?? {})) await repo.writeFile(path, content);
      await git(['add', '--all']);
      const committerName = o.committerName ?? DEFAULT_COMMITTER.name;
      const committerEmail = o.committerEmail ?? DEFAULT_COMMITTER.email;
      const env: Record<string, string> = {
        GIT_AUTHOR_NAME: o.authorName ?? committerName,
        GIT_AUTHOR_EMAIL: o.authorEmail ?? committerEmail,
        GIT_COMMITTER_NAME: committerName,
        GIT_COMMITTER_EMAIL: committerEmail,
        ...(o.date ? { GIT_AUTHOR_DATE: o.date, GIT_COMMITTER_DATE: o.date } : {}),
        ...o.signer?.env,
      };
      const signArgs = o.signer ? [...o.signer.args] : ['-c', 'commit.gpgsign=false'];
      await git(
        [
          ...signArgs,
          '-c',
          `user.name=${committerName}`,
          '-c',
          `user.email=${committerEmail}`,
          'commit',
          '--quiet',
          '--allow-empty',
          ...(o.signer ? ['-S'] : ['--no-gpg-sign']),
          '-m',
          message,
        ],
        { env },
      );
      return repo.head();
    },
    async commitMany(count, o = {}) {
      const shas: string[] = [];
      for (let i = 0; i < count; i++) {
        const opts = typeof o === 'function' ? o(i) : o;
        counter++;
        shas.push(await repo.commit(`change ${counter}`, { ...opts, files: { ...opts.files, [`notes/${counter}.txt`]: `${counter}\n` } }));
      }
      return shas;
    },
    async readCommit(sha) {
      return runGit(dir, ['cat-file', 'commit', sha], baseEnv);
    },
    async tamperCommit(sha, newMessage) {
      const raw = (await repo.readCommit(sha)).toString('utf8');
      const split = raw.indexOf('\n\n');
      const forged = `${raw.slice(0, split + 2)}${newMessage}\n`;
      const newSha = (await git(['hash-object', '-t', 'commit', '-w', '--stdin'], { input: forged })).trim();
      await git(['update-ref', 'HEAD', newSha]);
      return newSha;
    },
    async push(url, o = {}) {
      const ref = o.ref ?? `refs/heads/${branch}`;
      const remoteRef = o.remoteRef ?? ref;
      await git(['push', '--quiet', ...(o.force ? ['--force'] : []), url, `${ref}:${remoteRef}`]);
    },
    async head() {
      return (await git(['rev-parse', 'HEAD'])).trim();
    },
    async close() {
      await rm(root, { recursive: true, force: true });
    },
  };
  return repo;
}

/** A bare repository in a temp dir to push to and fetch from (a local stand-in for GitLab's copy). */
export async function createBareRemote(): Promise<{ dir: string; url: string; tip(ref: string): Promise<string | null>; close(): Promise<void> }> {
  const root = await mkdtemp(join(tmpdir(), 'secd-remote-'));
  const home = join(root, 'home');
  const dir = join(root, 'remote.git');
  await mkdir(home);
  const env = hermeticGitEnv({ home });
  await runGit(root, ['init', '--quiet', '--bare', dir], env);
  return {
    dir,
    url: `file://${dir}`,
    async tip(ref) {
      try {
        return (await runGit(dir, ['rev-parse', '--verify', '--quiet', ref], env)).toString('utf8').trim();
      } catch {
        return null;
      }
    },
    async close() {
      await rm(root, { recursive: true, force: true });
    },
  };
}

function runGit(cwd: string, args: string[], env: Record<string, string>, input?: string | Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = execFile('git', args, { cwd, env, encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`git ${args.join(' ')} failed: ${stderr.toString('utf8') || err.message}`));
      else resolve(stdout);
    });
    // A command that does not read its stdin may exit first; the write error that follows is harmless.
    child.stdin?.on('error', () => undefined);
    if (input === undefined) child.stdin?.end();
    else child.stdin?.end(input);
  });
}
