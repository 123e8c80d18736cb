/**
 * A per-project bare mirror of the researcher's repository on the leader: secd reads commits,
 * signatures and secd.yml from its own copy, never from GitLab's rendering of them.
 * simple-git runs the fetch (the only network operation); object reads use `git` directly because
 * signature checks need the exact bytes, which simple-git would decode as text. Both run with the one
 * hermetic environment (scheduler/common/git-env.ts): the leader host's git config never takes part.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { simpleGit } from 'simple-git';
import { errorText } from '../common/errors.js';
import { hermeticGitEnv } from '../common/git-env.js';
import { redactCredentials, urlSecrets } from '../common/redact.js';
import { COMMIT_ID_PATTERN as OBJECT_NAME } from '../contract/commit-id.js';

/** Options for a mirror; `caFile` is the isolated cluster's own CA, trusted for HTTPS fetches. */
export interface GitMirrorOptions {
  caFile?: string;
  /** Longest a single fetch may take before it is abandoned. */
  fetchTimeoutMs?: number;
}

/** A mirror operation that failed; its message never carries the credentials of the fetch URL. */
export class MirrorError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MirrorError';
  }
}

// Ref names and globs we are willing to put on a fetch command line; anything else is a caller bug.
const REF_NAME = /^refs\/[A-Za-z0-9._\/*-]+$/;

/** A bare repository under `dir` holding what secd has fetched of one project. */
export class GitMirror {
  // Fetches into one repository must not overlap: git takes ref locks and would fail the second one.
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly dir: string,
    private readonly options: GitMirrorOptions = {},
  ) {}

  /** Create the bare repository if it does not exist yet; safe to call before every fetch. */
  async ensure(): Promise<void> {
    if (existsSync(join(this.dir, 'HEAD'))) return;
    await mkdir(this.dir, { recursive: true });
    await this.git(['init', '--quiet', '--bare', this.dir]);
  }

  /**
   * Fetch `refs` from `url`. Each entry is a ref or glob under refs/ (stored as refs/secd/<rest>)
   * or a full commit id (stored as refs/secd/commits/<id>, so it stays reachable after a force push).
   */
  fetch(url: string, refs: string[]): Promise<void> {
    const run = this.queue.then(() => this.fetchNow(url, refs));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Commits reachable from `after` and from none of `exclude`, oldest first (parents before children). */
  async revList(after: string, exclude: string[]): Promise<string[]> {
    for (const rev of [after, ...exclude]) assertRevision(rev);
    const out = await this.git(['rev-list', '--topo-order', '--reverse', after, ...exclude.map((e) => `^${e}`), '--']);
    return out.toString('utf8').split('\n').filter((line) => line.length > 0);
  }

  /** The exact bytes of a commit object, as signed: no decoding, no trimming. */
  async readCommit(sha: string): Promise<Buffer> {
    assertObjectName(sha);
    return this.git(['cat-file', 'commit', sha]);
  }

  /** The content of `path` at commit `sha`, or null when there is no file at that path. */
  async readFile(sha: string, path: string): Promise<Buffer | null> {
    assertObjectName(sha);
    if (!(await this.hasCommit(sha))) throw new MirrorError(`commit ${sha.slice(0, 8)} is not in the mirror`);
    const spec = `${sha}:${path.replace(/^\/+/, '')}`;
    let type: string;
    try {
      type = (await this.git(['cat-file', '-t', spec])).toString('utf8').trim();
    } catch {
      return null; // git says "path does not exist"; the commit itself was checked above
    }
    if (type !== 'blob') return null;
    return this.git(['cat-file', 'blob', spec]);
  }

  /** Whether the mirror holds commit `sha`. */
  async hasCommit(sha: string): Promise<boolean> {
    if (!OBJECT_NAME.test(sha)) return false;
    try {
      await this.git(['cat-file', '-e', `${sha}^{commit}`]);
      return true;
    } catch {
      return false;
    }
  }

  /** The commit a fetched ref points at (`refs/heads/x` fetched is `refs/secd/heads/x` here), or null. */
  async fetchedHead(ref: string): Promise<string | null> {
    if (!REF_NAME.test(ref) || ref.includes('..') || ref.includes('*')) throw new MirrorError(`not a ref: ${JSON.stringify(ref)}`);
    try {
      const out = (await this.git(['rev-parse', '--verify', '--quiet', `refs/secd/${ref.slice('refs/'.length)}^{commit}`])).toString('utf8').trim();
      return OBJECT_NAME.test(out) ? out : null;
    } catch {
      return null;
    }
  }

  /** Files under `path` in commit `sha` with their sizes, in git's order (what a review shows). */
  async listFiles(sha: string, path: string): Promise<Array<{ path: string; bytes: number }>> {
    assertObjectName(sha);
    const out = await this.git(['ls-tree', '-r', '-l', '-z', sha, '--', path.replace(/^\/+/, '')]);
    const files: Array<{ path: string; bytes: number }> = [];
    for (const entry of out.toString('utf8').split('\0')) {
      // "<mode> blob <id> <size>\t<path>"
      const m = /^\d+ blob [0-9a-f]+ +(\d+)\t(.*)$/s.exec(entry);
      if (m) files.push({ path: m[2]!, bytes: Number(m[1]) });
    }
    return files;
  }

  /**
   * Push commit `sha` (in this mirror) to `url` as the new branch `branch`: create-only, as every
   * results push (the lease with an empty expected value fails when the branch exists). A branch
   * already there at exactly `sha` is this push done before (a leader restarted after pushing).
   */
  pushNewBranch(url: string, sha: string, branch: string): Promise<{ ok: true } | { ok: false; code: 'branch_taken' | 'push_failed'; reason: string }> {
    const run = this.queue.then(() => this.pushNow(url, sha, branch));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async pushNow(url: string, sha: string, branch: string): Promise<{ ok: true } | { ok: false; code: 'branch_taken' | 'push_failed'; reason: string }> {
    assertObjectName(sha);
    const ref = `refs/heads/${branch}`;
    if (!REF_NAME.test(ref) || ref.includes('..') || ref.includes('*')) throw new MirrorError(`not a branch name: ${JSON.stringify(branch)}`);
    const secrets = urlSecrets(url);
    const clean = (text: string) => oneLine(redactCredentials(text, secrets));
    try {
      await this.git(['push', '--porcelain', '--no-verify', `--force-with-lease=${ref}:`, '--', url, `${sha}:${ref}`]);
      return { ok: true };
    } catch (err) {
      let theirs: string | null = null;
      try {
        const listed = (await this.git(['ls-remote', '--', url, ref])).toString('utf8');
        theirs = /^([0-9a-f]{40,64})\s/m.exec(listed)?.[1] ?? null;
      } catch {
        // the remote is unreachable: the push failure below says so
      }
      if (theirs === sha) return { ok: true };
      if (theirs !== null) return { ok: false, code: 'branch_taken', reason: `branch ${branch} already exists at ${theirs.slice(0, 12)}, not the reviewed commit; secd left it as it is` };
      return { ok: false, code: 'push_failed', reason: `git push to ${redactCredentials(url, secrets)} failed: ${clean(errorText(err))}` };
    }
  }

  private async fetchNow(url: string, refs: string[]): Promise<void> {
    const refspecs = refs.map((ref) => {
      if (OBJECT_NAME.test(ref)) return `${ref}:refs/secd/commits/${ref}`;
      if (REF_NAME.test(ref) && !ref.includes('..')) return `+${ref}:refs/secd/${ref.slice('refs/'.length)}`;
      throw new MirrorError(`not a ref or commit id: ${JSON.stringify(ref)}`);
    });
    await this.ensure();
    const git = simpleGit({
      baseDir: this.dir,
      timeout: { block: this.options.fetchTimeoutMs ?? 300_000 },
      // GIT_CONFIG_GLOBAL is set by secd itself (to /dev/null), to make git ignore the host's setup.
      unsafe: { allowUnsafeConfigPaths: true },
    }).env(this.env());
    try {
      await git.raw(['fetch', '--quiet', '--no-tags', '--no-write-fetch-head', '--', url, ...refspecs]);
    } catch (err) {
      const secrets = urlSecrets(url);
      throw new MirrorError(`git fetch from ${redactCredentials(url, secrets)} failed: ${oneLine(redactCredentials(errorText(err), secrets))}`);
    }
  }

  // Only what git needs: simple-git refuses to run with variables such as EDITOR or PAGER set, and a
  // prompt for a password would hang the leader instead of failing the fetch.
  private env(): Record<string, string> {
    return hermeticGitEnv({ caFile: this.options.caFile });
  }

  private git(args: string[]): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      execFile(
        'git',
        args,
        // The timeout bounds pushes and ls-remote to GitLab as it bounds fetches.
        { cwd: this.dir, env: this.env(), encoding: 'buffer', maxBuffer: 256 * 1024 * 1024, timeout: this.options.fetchTimeoutMs ?? 300_000 },
        (err, stdout, stderr) => {
          if (err) {
            reject(new MirrorError(`git ${args[0]} failed: ${oneLine(stderr.toString('utf8') || err.message)}`));
          } else {
            resolve(stdout);
          }
        },
      );
    });
  }
}

function oneLine(text: string): string {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0);
  // git's last lines carry the cause ("fatal: ..."); earlier ones are progress or hints.
  const fatal = lines.find((l) => l.startsWith('fatal:') || l.startsWith('error:'));
  return (fatal ?? lines[lines.length - 1] ?? 'no message').slice(0, 300);
}

function assertObjectName(sha: string): void {
  if (!OBJECT_NAME.test(sha)) throw new MirrorError(`not a commit id: ${JSON.stringify(sha)}`);
}

function assertRevision(rev: string): void {
  if (!OBJECT_NAME.test(rev) && !REF_NAME.test(rev)) throw new MirrorError(`not a commit id or ref: ${JSON.stringify(rev)}`);
}
