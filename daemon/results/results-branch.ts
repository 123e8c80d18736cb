/**
 * Delivers a run's results (DESIGN §5): the outputs, `_secd/run.json` and both logs, either as a
 * new branch pushed to the researcher's repository (cluster) or as a folder on disk (`secd run`).
 * Both paths write the folder with the same function, so what a researcher sees locally is what
 * the cluster would push.
 *
 * Git runs through node-git.ts, hermetically (no system or global config, no hooks, no prompts),
 * because the node's own git setup must not change results; secd's settings for the commit travel in
 * the environment with the remote's credentials.
 *
 * The push is create-only, and the branch name is guessable (a run's id and start time are public): a
 * branch already on the remote is this run's own earlier push only when its head is a results commit
 * secd recorded before pushing it (`recordCommit`, `ownCommits`); any other head is someone else's,
 * left as it is and reported (`branch_taken`).
 *
 * Every step is repeatable after a crash: the branch starts again from the run's commit, the folder
 * is written again, and only a commit recorded before its push is ever taken as pushed (failpoints
 * `node.deliver.*` mark each step for the kill-point tests).
 */
import { chmod, lstat, mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { copyOutputs, type OutputsCaps } from './outputs-copy.js';
import { outputsFolderName, resultsBranchName } from './results-stamp.js';
import { isErrno } from '../../scheduler/common/errors.js';
import { failpoint } from '../../scheduler/common/failpoints.js';
import { redactCredentials } from '../../scheduler/common/redact.js';
import { describeGitFailure, gitRemote, runGit, type GitSetting } from './node-git.js';
import type { LeftOut, OutputsManifest, RunReport } from '../../scheduler/contract/run-spec.js';
import { isCommitId } from '../../scheduler/contract/commit-id.js';

/** What both delivery paths need: which run, what it wrote, what secd says about it. */
export interface ResultsContent {
  runId: string;
  /** From resultsStamp(); names the folder and the branch. */
  stamp: string;
  /** The container's /outputs as collected on the host (outputs-archive.ts). */
  outputsDir: string;
  /** What the collection already left out (links, special files, caps): listed first in run.json. */
  leftOut?: LeftOut[];
  /** run.json without the outputs manifest, which the copy fills in. */
  report: Omit<RunReport, 'outputs'>;
  /** Already capped by the executor (head and tail kept); written as given. */
  buildLog: Buffer;
  runLog: Buffer;
  caps: OutputsCaps;
}

/** Input for pushing a run's results as a new branch. */
export interface ResultsBranchInput extends ResultsContent {
  /** A non-bare clone holding the run's commit; secd owns it, its working tree is reused. */
  repoDir: string;
  /** Push target; an http(s) URL may carry `user:token@`, which never reaches argv or errors. */
  remoteUrl: string;
  /** Author and committer; default secd <secd@localhost>. */
  author?: { name: string; email: string };
  /** Extra CA bundle for an isolated cluster's GitLab. */
  caFile?: string;
  /**
   * Results commits secd made for this branch on earlier tries (from the run's journal): a branch
   * already on the remote at one of them is this run's own earlier push, delivered once.
   */
  ownCommits?: readonly string[];
  /**
   * Records the results commit durably (the run's journal) before it is pushed, so a retry after a
   * crash knows its own push; a throw fails the delivery with nothing pushed.
   */
  recordCommit?(commit: string): Promise<void>;
}

/** Input for writing a run's results into a folder (`secd run`). */
export interface LocalResultsInput extends ResultsContent {
  /** Results land in `<destRoot>/<stamp>-<runId>/`; `secd run <dir>` passes `<dir>/outputs`. */
  destRoot: string;
}

/** Stable codes for results that could not be delivered. */
export type ResultsFailureCode =
  | 'bad_commit' // the run's commit is not in the workspace
  | 'outputs_path_taken' // the repository has `outputs` as a file or symlink: no folder can go there
  | 'folder_exists' // the results folder is already there (same stamp and run id)
  | 'write_failed' // the host could not write the folder (disk full...)
  | 'commit_failed' // git could not record the folder
  | 'branch_taken' // the branch is on the remote at a commit secd did not make: someone else pushed it
  | 'push_rejected' // the remote refused: a server-side rule said no
  | 'push_failed'; // the remote could not be reached or refused the credentials

/** An expected failure to deliver, with a one-line reason safe to show (no credentials). */
export interface ResultsFailure {
  ok: false;
  code: ResultsFailureCode;
  reason: string;
}

/** Outcome of pushResultsBranch; `path` is the results folder inside the repository. */
export type ResultsBranchResult =
  | { ok: true; branch: string; commit: string; path: string; manifest: OutputsManifest }
  | ResultsFailure;

/** Outcome of writeLocalResults; `folder` is absolute. */
export type LocalResultsResult = { ok: true; folder: string; manifest: OutputsManifest } | ResultsFailure;

const DEFAULT_AUTHOR = { name: 'secd', email: 'secd@localhost' };

/** Pushes the run's results as branch `secd-<stamp>-<runId>`, a child of the run's commit. */
export async function pushResultsBranch(input: ResultsBranchInput): Promise<ResultsBranchResult> {
  const branch = resultsBranchName(input.stamp, input.runId);
  const relFolder = `outputs/${outputsFolderName(input.stamp, input.runId)}`;
  const repoDir = resolve(input.repoDir);
  const remote = gitRemote(input.remoteUrl);
  const settings = [...resultsSettings(input.author ?? DEFAULT_AUTHOR), ...remote.settings];
  const git = (args: string[]) => runGit(args, { cwd: repoDir, settings, caFile: input.caFile ?? null });
  const fail = (code: ResultsFailureCode, what: string, e?: unknown): ResultsFailure => ({
    ok: false,
    code,
    reason: redactCredentials(e === undefined ? what : `${what}: ${describeGitFailure(e)}`, remote.secrets),
  });
  const commit = input.report.commit;

  try {
    // No --quiet: git's complaint is what the reason quotes.
    const found = (await git(['rev-parse', '--verify', `${commit}^{commit}`])).trim();
    if (!isCommitId(found)) return fail('bad_commit', `run commit ${commit} is not in the workspace`);
  } catch (e) {
    return fail('bad_commit', `run commit ${commit} is not in the workspace`, e);
  }
  try {
    // -f: an earlier, failed attempt may have left its folder staged or committed; start clean
    // from the run's commit so a retry on the same workspace delivers exactly once.
    await git(['checkout', '--quiet', '--force', '--no-recurse-submodules', '-B', branch, commit]);
  } catch (e) {
    return fail('commit_failed', `could not start branch ${branch}`, e);
  }
  failpoint('node.deliver.branch-started');

  // The repository's tree is the researcher's: an `outputs` symlink would point the copy (and the
  // cleanup below) at an arbitrary host path.
  const outputsRoot = join(repoDir, 'outputs');
  try {
    const st = await lstat(outputsRoot);
    if (!st.isDirectory()) {
      return fail('outputs_path_taken', `the repository has "outputs" as a ${st.isSymbolicLink() ? 'symlink' : 'file'}; results need it to be a folder`);
    }
  } catch (e) {
    if (!isErrno(e, 'ENOENT')) throw e;
  }
  const folder = join(repoDir, relFolder);
  await rm(folder, { recursive: true, force: true });

  const written = await writeResultsFolder(folder, input);
  if (!written.ok) return written;
  const { manifest } = written;
  failpoint('node.deliver.folder-written');

  try {
    await neutraliseAttributes(git, repoDir);
    // -f: the researcher's .gitignore files (in the repo or in the outputs) must not hide results.
    await git(['add', '--force', '--', relFolder]);
    const [subject, body] = commitMessage(input.report, manifest);
    await git(['commit', '--quiet', '--no-verify', '--no-gpg-sign', '-m', subject, '-m', body]);
  } catch (e) {
    return fail('commit_failed', 'could not commit the results', e);
  }
  const head = (await git(['rev-parse', 'HEAD'])).trim();
  failpoint('node.deliver.committed');
  try {
    await input.recordCommit?.(head);
  } catch (e) {
    return fail('write_failed', 'could not record the results commit before pushing it', e);
  }

  try {
    // Create-only: the lease with an empty expected value fails if the branch already exists, so
    // results are never force-pushed over, nor fast-forwarded onto, a branch of the same name.
    await git([
      'push',
      '--porcelain',
      '--no-verify',
      `--force-with-lease=refs/heads/${branch}:`,
      remote.url,
      `HEAD:refs/heads/${branch}`,
    ]);
  } catch (e) {
    const text = describeGitFailure(e);
    if (/stale info|already exists|non-fast-forward|fetch first/i.test(text)) {
      // The branch name is guessable (run id and start time are public): only a head that is a
      // commit secd itself made and journaled counts as this run's own earlier push.
      let theirs: string | null;
      try {
        theirs = await remoteBranchHead(git, remote.url, branch);
      } catch (e2) {
        return fail('push_failed', `results branch ${branch} already exists on the remote and secd could not read its head`, e2);
      }
      if (theirs !== null && (theirs === head || (input.ownCommits ?? []).includes(theirs))) {
        return { ok: true, branch, commit: theirs, path: relFolder, manifest };
      }
      if (theirs !== null) {
        return fail('branch_taken', `results branch ${branch} was pushed by someone else: its head ${theirs} is not the commit secd made; secd left it as it is`);
      }
      return fail('push_rejected', `results branch ${branch} already exists on the remote; secd does not overwrite it`);
    }
    if (/\[remote rejected\]|\[rejected\]/i.test(text)) return fail('push_rejected', `the remote refused ${branch}`, e);
    if (remote.hasCredentials && /could not read Username|Authentication failed|\b401\b/i.test(text)) {
      return fail('push_failed', `the remote refused the credentials secd pushes ${branch} with (HTTP 401)`);
    }
    return fail('push_failed', `could not push ${branch}`, e);
  }
  return { ok: true, branch, commit: head, path: relFolder, manifest };
}

/** Where to look for a run's own results branch: the run, its stamp, the remote, and the commits secd journaled for it. */
export interface OwnBranchQuery {
  runId: string;
  stamp: string;
  remoteUrl: string;
  /** The results commits journaled before each push; only a branch at one of these is the run's own. */
  ownCommits: readonly string[];
  /** Any folder git may run in (no repository needed: the run's checkout may be gone). */
  cwd: string;
  caFile?: string;
}

/**
 * The run's results branch when the remote already has it at a commit secd journaled for it (a push
 * that landed before the node could note it), else null: what a delivery checks first, with or
 * without its checkout. A remote that cannot be asked is a failure, never "not there".
 */
export async function findOwnResultsBranch(q: OwnBranchQuery): Promise<{ ok: true; found: { branch: string; commit: string; path: string } | null } | ResultsFailure> {
  const branch = resultsBranchName(q.stamp, q.runId);
  if (q.ownCommits.length === 0) return { ok: true, found: null };
  const remote = gitRemote(q.remoteUrl);
  const git = (args: string[]) => runGit(args, { cwd: q.cwd, settings: remote.settings, caFile: q.caFile ?? null });
  let head: string | null;
  try {
    head = await remoteBranchHead(git, remote.url, branch);
  } catch (e) {
    return { ok: false, code: 'push_failed', reason: redactCredentials(`could not read results branch ${branch} on the remote: ${describeGitFailure(e)}`, remote.secrets) };
  }
  if (head === null || !q.ownCommits.includes(head)) return { ok: true, found: null };
  return { ok: true, found: { branch, commit: head, path: `outputs/${outputsFolderName(q.stamp, q.runId)}` } };
}

// The commit the remote's branch points at now (`git ls-remote`), or null when it has no such branch.
async function remoteBranchHead(git: (args: string[]) => Promise<string>, url: string, branch: string): Promise<string | null> {
  const ref = `refs/heads/${branch}`;
  for (const line of (await git(['ls-remote', '--', url, ref])).split('\n')) {
    const [sha, name] = line.trim().split(/\s+/);
    if (name === ref && sha !== undefined && isCommitId(sha)) return sha;
  }
  return null;
}

/** Writes the run's results to `<destRoot>/<stamp>-<runId>/`, as the branch would carry them. */
export async function writeLocalResults(input: LocalResultsInput): Promise<LocalResultsResult> {
  const folder = join(resolve(input.destRoot), outputsFolderName(input.stamp, input.runId));
  const written = await writeResultsFolder(folder, input);
  return written.ok ? { ok: true, folder, manifest: written.manifest } : written;
}

/**
 * The results folder, shared by both paths: the outputs (minus what git or secd reserve), then
 * `_secd/run.json`, `_secd/build.log`, `_secd/run.log`.
 */
async function writeResultsFolder(
  folder: string,
  content: ResultsContent,
): Promise<{ ok: true; manifest: OutputsManifest } | ResultsFailure> {
  try {
    await mkdir(dirname(folder), { recursive: true, mode: 0o755 });
    await mkdir(folder, { mode: 0o755 });
  } catch (e) {
    if (isErrno(e, 'EEXIST')) return { ok: false, code: 'folder_exists', reason: `results folder ${folder} already exists` };
    if (isErrno(e)) return { ok: false, code: 'write_failed', reason: `could not create ${folder}: ${e.message}` };
    throw e;
  }
  try {
    const copied = await copyOutputs(content.outputsDir, folder, content.caps, { isReserved: isReservedForResults });
    const manifest: OutputsManifest = { ...copied, leftOut: [...(content.leftOut ?? []), ...copied.leftOut] };
    const secdDir = join(folder, '_secd');
    await mkdir(secdDir, { mode: 0o755 });
    await chmod(secdDir, 0o755);
    const report: RunReport = {
      ...content.report,
      outputs: { files: manifest.files, bytes: manifest.bytes, left_out: manifest.leftOut },
    };
    await writeNewFile(join(secdDir, 'run.json'), `${JSON.stringify(report, null, 2)}\n`);
    await writeNewFile(join(secdDir, 'build.log'), content.buildLog);
    await writeNewFile(join(secdDir, 'run.log'), content.runLog);
    return { ok: true, manifest };
  } catch (e) {
    if (isErrno(e)) return { ok: false, code: 'write_failed', reason: `could not write results into ${folder}: ${e.message}` };
    throw e;
  }
}

async function writeNewFile(path: string, data: string | Buffer): Promise<void> {
  await writeFile(path, data, { flag: 'wx', mode: 0o644 });
  await chmod(path, 0o644);
}

/** `_secd` at the top is secd's own; names git refuses (or a server's fsck rejects) would sink the commit. */
export function isReservedForResults(relPath: string, name: string): boolean {
  return relPath === '_secd' || isGitReservedName(name);
}

// Git skips `.git` silently and refuses its look-alikes outright (`.GIT`, `.git.`, `git~1`, `.git:x`,
// `.g\u200cit`: NTFS and HFS+ spellings, which it checks on every platform or at fsck on the server).
// Such an entry is another repository's metadata, never research output: leave it out by name.
const HFS_IGNORABLE = /[\u200c-\u200f\u202a-\u202e\u206a-\u206f\ufeff]/g;
function isGitReservedName(name: string): boolean {
  const folded = name.replace(HFS_IGNORABLE, '').toLowerCase();
  const stem = (folded.split(/[\\:]/)[0] ?? '').replace(/[. ]+$/, '');
  return stem === '.git' || stem === 'git~1';
}

// Outputs are delivered byte for byte: an in-tree .gitattributes (the repo's or one the run wrote)
// could otherwise turn CRLFs into LFs or hand files to a filter. info/attributes outranks them all.
async function neutraliseAttributes(git: (args: string[]) => Promise<string>, repoDir: string): Promise<void> {
  const path = resolve(repoDir, (await git(['rev-parse', '--git-path', 'info/attributes'])).trim());
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, '* -text -crlf -filter -ident !eol !working-tree-encoding\n');
}

function commitMessage(report: Omit<RunReport, 'outputs'>, manifest: OutputsManifest): [string, string] {
  const line = (s: string): string => s.replace(/\s+/g, ' ').trim();
  const subject = `secd results for run ${report.run_id} (${report.state})`;
  const body = [
    ...(report.reason ? [line(report.reason), ''] : []),
    `Run: ${report.run_id}`,
    `Commit: ${report.commit}`,
    `Node: ${line(report.node)}`,
    `Exit code: ${report.exit_code ?? 'none'}`,
    `Outputs: ${manifest.files} files, ${manifest.bytes} bytes, ${manifest.leftOut.length} left out`,
  ].join('\n');
  return [subject, body];
}

// secd's commit, whatever the host's git would do: its identity, no signing, no hooks, no line-ending
// or mode rewriting, no background maintenance, and a stalled transfer fails instead of holding the run
// in `uploading` forever.
function resultsSettings(author: { name: string; email: string }): GitSetting[] {
  const pairs: Array<[string, string]> = [
    ['user.name', author.name],
    ['user.email', author.email],
    ['commit.gpgsign', 'false'],
    ['core.hooksPath', '/dev/null'],
    ['core.autocrlf', 'false'],
    ['core.safecrlf', 'false'],
    ['core.fileMode', 'true'],
    ['gc.auto', '0'],
    ['maintenance.auto', 'false'],
    ['http.lowSpeedLimit', '1000'],
    ['http.lowSpeedTime', '60'],
  ];
  return pairs.map(([key, value]) => ({ key, value }));
}
