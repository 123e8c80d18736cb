/**
 * What the results-branch tests share: the run they deliver (its id, stamp, report, logs and caps), a
 * GitLab-like project (a bare repository whose main carries hostile .gitignore/.gitattributes), the
 * node's workspace cloned from it, and the /outputs a hostile run leaves with what must be left out.
 *
 * - Plain code (no vitest, no test/ imports), since it sits among the node's sources.
 * - It never runs git itself: node-git.ts is the node's one file that does (test/layout.test.ts), so
 *   each test file hands in its own `git` runner, with {@link testGitEnv}.
 * - Everything is made under the `root` folder a test gives, which the test removes.
 */
import { chmod, mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ResultsContent } from './results-branch.js';
import { resultsStamp } from './results-stamp.js';
import { hermeticGitEnv } from '../../scheduler/common/git-env.js';
import type { RunReport } from '../../scheduler/contract/run-spec.js';

/** A line only the host's secret file holds: it must reach no object on the remote. */
export const SECRET = 'TOP-SECRET-dataset-row-4411';
/** A GitLab token as it would sit in a remote URL: it must reach no reason. */
export const TOKEN = 'glpat-s3cr3t-t0ken-XYZ';
/** When the run finished, as the results branch and folder name it. */
export const STAMP = resultsStamp(new Date('2024-03-05T14:07:09.512Z'));
/** The run being delivered. */
export const RUN_ID = 'r42';
/** The results branch {@link STAMP} and {@link RUN_ID} name. */
export const BRANCH = `secd-2024-03-05_14.07.09-${RUN_ID}`;
/** The folder the results sit in, on the branch and under a local outputs folder. */
export const FOLDER = `outputs/2024-03-05_14.07.09-${RUN_ID}`;
/** The run's caps on one file and on all of /outputs. */
export const CAPS = { maxFileBytes: 64 * 1024, maxTotalBytes: 1024 * 1024 };

/** The environment the tests' own git runs with: hermetic, with a researcher's identity. */
export const testGitEnv = {
  // The project's own eol=crlf attributes would make the test's git warn on every add.
  ...hermeticGitEnv({ home: '/nonexistent', config: [{ key: 'core.safecrlf', value: 'false' }] }),
  GIT_AUTHOR_NAME: 'Researcher',
  GIT_AUTHOR_EMAIL: 'researcher@example.org',
  GIT_COMMITTER_NAME: 'Researcher',
  GIT_COMMITTER_EMAIL: 'researcher@example.org',
};

/** Runs `git <args>` in `cwd` with {@link testGitEnv}; returns its stdout, trimmed. */
export type Git = (cwd: string, ...args: string[]) => string;

/** A project on its remote, and the commit the run ran. */
export interface Project {
  remote: string;
  runCommit: string;
}

/** A GitLab-like bare repository whose main holds a commit with hostile .gitignore/.gitattributes. */
export async function aProject(git: Git, root: string, extra?: (dir: string) => Promise<void>): Promise<Project> {
  const remote = join(root, 'remote.git');
  const author = join(root, 'author');
  git(root, 'init', '-q', '--bare', '-b', 'main', remote);
  git(root, 'init', '-q', '-b', 'main', author);
  await writeFile(join(author, 'train.py'), 'print("hi")\n');
  // Both would change results if secd let them: hide outputs, and rewrite line endings.
  await writeFile(join(author, '.gitignore'), 'outputs/\n*.bin\n*.log\n');
  await writeFile(join(author, '.gitattributes'), '* text eol=crlf\n');
  await extra?.(author);
  git(author, 'add', '-A');
  git(author, 'commit', '-q', '-m', 'research');
  git(author, 'push', '-q', remote, 'main');
  return { remote, runCommit: git(author, 'rev-parse', 'HEAD') };
}

/** The node's workspace: a clone checked out (detached) at the run's commit, in `root`/`name`. */
export function aWorkspace(git: Git, root: string, project: Project, name = 'workspace'): string {
  const dir = join(root, name);
  git(root, 'clone', '-q', project.remote, dir);
  git(dir, 'checkout', '-q', '--detach', project.runCommit);
  return dir;
}

/** The report of a run that succeeded at `commit`, less its outputs (which the delivery counts). */
export function aReport(commit: string, overrides: Partial<Omit<RunReport, 'outputs'>> = {}): Omit<RunReport, 'outputs'> {
  return {
    run_id: RUN_ID,
    project: 'ml/cancer-survival',
    commit,
    user: 'alice',
    signer_fingerprint: 'ABCDEF0123456789ABCDEF0123456789ABCDEF01',
    node: 'gpu-01',
    gpus: ['GPU-8d7c6b5a-0000-1111-2222-333344445555'],
    image_id: 'sha256:1111111111111111111111111111111111111111111111111111111111111111',
    state: 'succeeded',
    reason: 'exited 0',
    exit_code: 0,
    created_at: '2024-03-05T14:00:00.000Z',
    build_started_at: '2024-03-05T14:00:01.000Z',
    started_at: '2024-03-05T14:02:00.000Z',
    finished_at: '2024-03-05T14:07:09.000Z',
    timings_ms: { build: 119000, run: 309000 },
    runfor_ms: 3 * 3600_000,
    warnings: ['unknown key "gpus" in secd.yml'],
    ...overrides,
  };
}

/** What is delivered for the run: `outputsDir`, its report at `commit`, and both logs (one binary-ish). */
export function aContent(outputsDir: string, commit: string): ResultsContent {
  return {
    runId: RUN_ID,
    stamp: STAMP,
    outputsDir,
    report: aReport(commit),
    buildLog: Buffer.from('Step 1/3 : FROM secd/base\n ---> 1234\n'),
    runLog: Buffer.from('epoch 1 loss 0.5\n\u00e9poque 2 \x00 binary-ish\n'),
    caps: CAPS,
  };
}

/** What a run typically leaves in /outputs, plus everything a hostile or careless run could; made in `root`. */
export async function hostileOutputs(root: string): Promise<string> {
  const outputs = join(root, 'container-outputs');
  const secrets = join(root, 'host-secrets');
  await mkdir(secrets);
  await writeFile(join(secrets, 'patients.csv'), `${SECRET}\n`);
  await mkdir(outputs);
  await writeFile(join(outputs, 'metrics.json'), '{"auc":0.91}\n');
  await writeFile(join(outputs, 'model.bin'), Buffer.from([0, 13, 10, 255, 13, 10, 1]));
  await writeFile(join(outputs, 'notes.txt'), 'first\r\nsecond\n');
  await writeFile(join(outputs, '.gitignore'), '*\n');
  await writeFile(join(outputs, '.gitattributes'), '*.txt text eol=lf\n');
  await mkdir(join(outputs, 'scripts'));
  await writeFile(join(outputs, 'scripts', 'predict.sh'), '#!/bin/sh\necho predict\n');
  await chmod(join(outputs, 'scripts', 'predict.sh'), 0o700);
  await mkdir(join(outputs, 'empty'));
  await mkdir(join(outputs, 'nested-repo', '.git', 'objects'), { recursive: true });
  await writeFile(join(outputs, 'nested-repo', '.git', 'HEAD'), 'ref: refs/heads/main\n');
  await mkdir(join(outputs, 'weird'));
  await writeFile(join(outputs, 'weird', '.GIT'), 'gitdir: /etc\n');
  await mkdir(join(outputs, '_secd'));
  await writeFile(join(outputs, '_secd', 'run.json'), '{"state":"forged"}\n');
  await symlink(join(secrets, 'patients.csv'), join(outputs, 'secret-link'));
  await symlink(secrets, join(outputs, 'dir-link'));
  await symlink('/nonexistent/file', join(outputs, 'dangling'));
  await writeFile(join(outputs, 'huge.dat'), Buffer.alloc(CAPS.maxFileBytes + 1, 7));
  return outputs;
}

/** What delivering {@link hostileOutputs} must list as left out, in order. */
export const HOSTILE_LEFT_OUT = [
  { path: '_secd', reason: 'reserved_name' },
  { path: 'dangling', reason: 'symlink' },
  { path: 'dir-link', reason: 'symlink' },
  { path: 'huge.dat', reason: 'file_too_large', size: CAPS.maxFileBytes + 1 },
  { path: 'nested-repo/.git', reason: 'reserved_name' },
  { path: 'secret-link', reason: 'symlink' },
  { path: 'weird/.GIT', reason: 'reserved_name' },
];
