/**
 * Delivering a run's results as git: one new branch on the project's remote, a child of the run's
 * commit, carrying /outputs byte for byte with run.json and both logs, whatever a hostile run or the
 * repository's own .gitignore/.gitattributes try; refusals that never overwrite; and the same tree
 * written to a local folder for `secd run`. Real git, a bare repository as the remote.
 */
import { execFileSync } from 'node:child_process';
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { pushResultsBranch, writeLocalResults, type ResultsContent } from './results-branch.js';
import { resultsStamp } from './results-stamp.js';
import { hermeticGitEnv } from '../../scheduler/common/git-env.js';
import type { RunReport } from '../../scheduler/contract/run-spec.js';
import { branchFiles, diskFiles, remoteHeads } from '../../test/support/file-trees.js';
import { freePort } from '../../test/support/free-port.js';
import { startGitHttpServer } from '../../test/support/git-http-server.js';

const SECRET = 'TOP-SECRET-dataset-row-4411';
const TOKEN = 'glpat-s3cr3t-t0ken-XYZ';
const STAMP = resultsStamp(new Date('2024-03-05T14:07:09.512Z'));
const RUN_ID = 'r42';
const BRANCH = `secd-2024-03-05_14.07.09-${RUN_ID}`;
const FOLDER = `outputs/2024-03-05_14.07.09-${RUN_ID}`;
const CAPS = { maxFileBytes: 64 * 1024, maxTotalBytes: 1024 * 1024 };

let root: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'secd-results-branch-'));
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

const testGitEnv = {
  // The project's own eol=crlf attributes would make the test's git warn on every add.
  ...hermeticGitEnv({ home: '/nonexistent', config: [{ key: 'core.safecrlf', value: 'false' }] }),
  GIT_AUTHOR_NAME: 'Researcher',
  GIT_AUTHOR_EMAIL: 'researcher@example.org',
  GIT_COMMITTER_NAME: 'Researcher',
  GIT_COMMITTER_EMAIL: 'researcher@example.org',
};

function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', args, { cwd, env: testGitEnv, encoding: 'utf8' }).trim();
}

function gitBytes(cwd: string, ...args: string[]): Buffer {
  return execFileSync('git', args, { cwd, env: testGitEnv, maxBuffer: 64 << 20 });
}

interface Project {
  remote: string;
  runCommit: string;
}

/** A GitLab-like bare repository whose main holds a commit with hostile .gitignore/.gitattributes. */
async function aProject(extra?: (dir: string) => Promise<void>): Promise<Project> {
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

/** The node's workspace: a clone checked out (detached) at the run's commit. */
function aWorkspace(project: Project, name = 'workspace'): string {
  const dir = join(root, name);
  git(root, 'clone', '-q', project.remote, dir);
  git(dir, 'checkout', '-q', '--detach', project.runCommit);
  return dir;
}

function aReport(commit: string, overrides: Partial<Omit<RunReport, 'outputs'>> = {}): Omit<RunReport, 'outputs'> {
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

function aContent(outputsDir: string, commit: string): ResultsContent {
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

/** What a run typically leaves in /outputs, plus everything a hostile or careless run could. */
async function hostileOutputs(): Promise<string> {
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

const HOSTILE_LEFT_OUT = [
  { path: '_secd', reason: 'reserved_name' },
  { path: 'dangling', reason: 'symlink' },
  { path: 'dir-link', reason: 'symlink' },
  { path: 'huge.dat', reason: 'file_too_large', size: CAPS.maxFileBytes + 1 },
  { path: 'nested-repo/.git', reason: 'reserved_name' },
  { path: 'secret-link', reason: 'symlink' },
  { path: 'weird/.GIT', reason: 'reserved_name' },
];

describe('pushResultsBranch', () => {
  it('pushes one new branch, a child of the run commit, carrying the outputs, run.json and both logs', async () => {
    const project = await aProject();
    const workspace = aWorkspace(project);
    const outputs = await hostileOutputs();
    const content = aContent(outputs, project.runCommit);

    const result = await pushResultsBranch({ ...content, repoDir: workspace, remoteUrl: project.remote });

    expect(result).toMatchObject({ ok: true, branch: BRANCH, path: FOLDER });
    if (!result.ok) throw new Error(result.reason);
    const { remote, runCommit } = project;
    expect(remoteHeads(remote)).toEqual(['refs/heads/main', `refs/heads/${BRANCH}`]);
    expect(git(remote, 'rev-parse', BRANCH)).toBe(result.commit);
    expect(git(remote, 'rev-parse', `${BRANCH}^`)).toBe(runCommit);
    expect(git(remote, 'rev-list', '--count', `${runCommit}..${BRANCH}`)).toBe('1');
    // Nothing but the results folder changed.
    expect(git(remote, 'diff', '--name-only', runCommit, BRANCH).split('\n').every((p) => p.startsWith(`${FOLDER}/`))).toBe(true);

    const files = branchFiles(remote, BRANCH, FOLDER);
    expect([...files.keys()].sort()).toEqual([
      '.gitattributes',
      '.gitignore',
      '_secd/build.log',
      '_secd/run.json',
      '_secd/run.log',
      'metrics.json',
      'model.bin',
      'notes.txt',
      'scripts/predict.sh',
    ]);
    // Byte for byte, whatever the repository's or the outputs' .gitattributes say.
    expect(files.get('notes.txt')?.content).toEqual(Buffer.from('first\r\nsecond\n'));
    expect(files.get('model.bin')?.content).toEqual(Buffer.from([0, 13, 10, 255, 13, 10, 1]));
    expect(files.get('scripts/predict.sh')?.mode).toBe('100755');
    expect(files.get('metrics.json')?.mode).toBe('100644');
    expect(files.get('_secd/build.log')?.content).toEqual(content.buildLog);
    expect(files.get('_secd/run.log')?.content).toEqual(content.runLog);

    const runJson = files.get('_secd/run.json')?.content.toString('utf8') ?? '';
    expect(runJson.endsWith('}\n')).toBe(true);
    const report = JSON.parse(runJson) as RunReport;
    expect(report).toMatchObject({ run_id: RUN_ID, commit: runCommit, state: 'succeeded', node: 'gpu-01' });
    expect(report.outputs).toEqual({ files: 6, bytes: result.manifest.bytes, left_out: HOSTILE_LEFT_OUT });

    // The secret is in no object the remote holds.
    const everything = gitBytes(remote, 'cat-file', '--batch-all-objects', '--batch').toString('latin1');
    expect(everything).not.toContain(SECRET);

    expect(git(remote, 'log', '-1', '--format=%an <%ae>|%cn <%ce>|%s', BRANCH)).toBe(
      'secd <secd@localhost>|secd <secd@localhost>|secd results for run r42 (succeeded)',
    );
    expect(git(remote, 'log', '-1', '--format=%b', BRANCH)).toContain('Outputs: 6 files');
  });

  it('still delivers run.json and the logs when the run wrote nothing', async () => {
    const project = await aProject();
    const workspace = aWorkspace(project);
    const outputs = join(root, 'empty-outputs');
    await mkdir(outputs);
    const content = { ...aContent(outputs, project.runCommit), report: aReport(project.runCommit, { state: 'failed', exit_code: 1, reason: 'exited 1' }) };

    const result = await pushResultsBranch({ ...content, repoDir: workspace, remoteUrl: project.remote, author: { name: 'secd-node-gpu-01', email: 'secd@gpu-01' } });

    expect(result.ok).toBe(true);
    const files = branchFiles(project.remote, BRANCH, FOLDER);
    expect([...files.keys()].sort()).toEqual(['_secd/build.log', '_secd/run.json', '_secd/run.log']);
    const report = JSON.parse(files.get('_secd/run.json')?.content.toString('utf8') ?? '') as RunReport;
    expect(report.outputs).toEqual({ files: 0, bytes: 0, left_out: [] });
    expect(report.state).toBe('failed');
    expect(git(project.remote, 'log', '-1', '--format=%an <%ae>|%s', BRANCH)).toBe('secd-node-gpu-01 <secd@gpu-01>|secd results for run r42 (failed)');
  });

  it('refuses, without force-pushing, a results branch someone else already pushed, and names it', async () => {
    const project = await aProject();
    const outputs = join(root, 'outputs-1');
    await mkdir(outputs);
    await writeFile(join(outputs, 'first.txt'), 'first');
    const first = await pushResultsBranch({ ...aContent(outputs, project.runCommit), repoDir: aWorkspace(project, 'ws1'), remoteUrl: project.remote });
    if (!first.ok) throw new Error(first.reason);

    await writeFile(join(outputs, 'second.txt'), 'second');
    const recorded: string[] = [];
    const second = await pushResultsBranch({
      ...aContent(outputs, project.runCommit),
      repoDir: aWorkspace(project, 'ws2'),
      remoteUrl: project.remote,
      recordCommit: async (c) => void recorded.push(c),
    });

    expect(second).toMatchObject({ ok: false, code: 'branch_taken' });
    if (second.ok) throw new Error('unreachable');
    expect(second.reason).toBe(`results branch ${BRANCH} was pushed by someone else: its head ${first.commit} is not the commit secd made; secd left it as it is`);
    expect(git(project.remote, 'rev-parse', BRANCH)).toBe(first.commit);
    expect(recorded).toHaveLength(1);
    expect(recorded[0]).not.toBe(first.commit);
  });

  it('takes a branch at a results commit it recorded on an earlier try as its own push: delivered once', async () => {
    const project = await aProject();
    const outputs = join(root, 'outputs');
    await mkdir(outputs);
    await writeFile(join(outputs, 'a.txt'), 'a');
    const recorded: string[] = [];
    const first = await pushResultsBranch({
      ...aContent(outputs, project.runCommit),
      repoDir: aWorkspace(project, 'ws1'),
      remoteUrl: project.remote,
      recordCommit: async (c) => void recorded.push(c),
    });
    if (!first.ok) throw new Error(first.reason);
    expect(recorded).toEqual([first.commit]);

    // The node crashed before it noted the push; the retry makes a new commit, which is refused.
    const retry = await pushResultsBranch({ ...aContent(outputs, project.runCommit), repoDir: aWorkspace(project, 'ws2'), remoteUrl: project.remote, ownCommits: recorded });

    expect(retry).toMatchObject({ ok: true, branch: BRANCH, commit: first.commit, path: FOLDER });
    expect(git(project.remote, 'rev-parse', BRANCH)).toBe(first.commit);
  });

  it('never fast-forwards a same-named branch that is an ancestor of the results', async () => {
    const project = await aProject();
    // Someone created the branch at the run commit: a plain push would fast-forward it.
    git(project.remote, 'branch', BRANCH, project.runCommit);
    const outputs = join(root, 'outputs');
    await mkdir(outputs);

    const result = await pushResultsBranch({ ...aContent(outputs, project.runCommit), repoDir: aWorkspace(project), remoteUrl: project.remote });

    expect(result).toMatchObject({ ok: false, code: 'branch_taken' });
    expect(git(project.remote, 'rev-parse', BRANCH)).toBe(project.runCommit);
  });

  it('keeps the token out of the reason when the remote cannot be reached, and a retry on the same workspace delivers once', async () => {
    const project = await aProject();
    const workspace = aWorkspace(project);
    const outputs = join(root, 'outputs');
    await mkdir(outputs);
    await writeFile(join(outputs, 'a.txt'), 'a');
    const closedPort = await freePort();

    const failed = await pushResultsBranch({
      ...aContent(outputs, project.runCommit),
      repoDir: workspace,
      remoteUrl: `http://oauth2:${TOKEN}@127.0.0.1:${closedPort}/ml/cancer-survival.git`,
    });

    expect(failed).toMatchObject({ ok: false, code: 'push_failed' });
    if (failed.ok) throw new Error('unreachable');
    expect(failed.reason).toContain('127.0.0.1');
    expect(failed.reason).not.toContain(TOKEN);
    expect(failed.reason).not.toContain(Buffer.from(`oauth2:${TOKEN}`).toString('base64'));

    await writeFile(join(outputs, 'b.txt'), 'b');
    const retried = await pushResultsBranch({ ...aContent(outputs, project.runCommit), repoDir: workspace, remoteUrl: project.remote });

    expect(retried.ok).toBe(true);
    expect(git(project.remote, 'rev-parse', `${BRANCH}^`)).toBe(project.runCommit);
    expect([...branchFiles(project.remote, BRANCH, FOLDER).keys()].sort()).toEqual([
      '_secd/build.log', '_secd/run.json', '_secd/run.log', 'a.txt', 'b.txt',
    ]);
  });

  it('pushes over HTTP with the credentials from the URL, and says so without the token when they are wrong', async () => {
    const project = await aProject();
    const server = await startGitHttpServer(root, 'oauth2', TOKEN);
    try {
      const outputs = join(root, 'outputs');
      await mkdir(outputs);
      await writeFile(join(outputs, 'a.txt'), 'a');
      const url = (token: string): string => `http://oauth2:${token}@127.0.0.1:${server.port}/remote.git`;

      const wrong = await pushResultsBranch({ ...aContent(outputs, project.runCommit), repoDir: aWorkspace(project, 'ws1'), remoteUrl: url('wrong-token-123') });
      expect(wrong).toMatchObject({ ok: false, code: 'push_failed' });
      if (wrong.ok) throw new Error('unreachable');
      expect(wrong.reason).toContain('credentials');
      expect(wrong.reason).not.toContain('wrong-token-123');

      const right = await pushResultsBranch({ ...aContent(outputs, project.runCommit), repoDir: aWorkspace(project, 'ws2'), remoteUrl: url(TOKEN) });
      expect(right).toMatchObject({ ok: true, branch: BRANCH });
      expect(remoteHeads(project.remote)).toEqual(['refs/heads/main', `refs/heads/${BRANCH}`]);
      // The workspace's git config does not remember the credentials either.
      expect(await readFile(join(root, 'ws2', '.git', 'config'), 'utf8')).not.toContain(TOKEN);
    } finally {
      await server.close();
    }
  });

  it('refuses a repository whose "outputs" is a symlink, and touches nothing it points at', async () => {
    const elsewhere = join(root, 'host-dir');
    await mkdir(elsewhere);
    await writeFile(join(elsewhere, 'keep.txt'), 'keep');
    const project = await aProject(async (dir) => {
      await symlink(elsewhere, join(dir, 'outputs'));
    });
    const outputs = join(root, 'run-outputs');
    await mkdir(outputs);
    await writeFile(join(outputs, 'a.txt'), 'a');

    const result = await pushResultsBranch({ ...aContent(outputs, project.runCommit), repoDir: aWorkspace(project), remoteUrl: project.remote });

    expect(result).toMatchObject({ ok: false, code: 'outputs_path_taken' });
    expect(await readdir(elsewhere)).toEqual(['keep.txt']);
    expect(remoteHeads(project.remote)).toEqual(['refs/heads/main']);
  });

  it('says so when the run commit is not in the workspace', async () => {
    const project = await aProject();
    const outputs = join(root, 'outputs');
    await mkdir(outputs);
    const missing = 'f'.repeat(40);

    const result = await pushResultsBranch({ ...aContent(outputs, missing), repoDir: aWorkspace(project), remoteUrl: project.remote });

    expect(result).toMatchObject({ ok: false, code: 'bad_commit' });
    if (result.ok) throw new Error('unreachable');
    expect(result.reason).toContain(missing);
  });
});

describe('writeLocalResults', () => {
  it('writes the same tree as the results branch, plus the empty folders git cannot carry', async () => {
    const project = await aProject();
    const outputs = await hostileOutputs();
    const content = aContent(outputs, project.runCommit);
    const pushed = await pushResultsBranch({ ...content, repoDir: aWorkspace(project), remoteUrl: project.remote });
    if (!pushed.ok) throw new Error(pushed.reason);

    const local = await writeLocalResults({ ...content, destRoot: join(root, 'project', 'outputs') });

    expect(local).toMatchObject({ ok: true, folder: join(root, 'project', FOLDER) });
    if (!local.ok) throw new Error(local.reason);
    expect(local.manifest).toEqual(pushed.manifest);
    expect(await diskFiles(local.folder)).toEqual(branchFiles(project.remote, BRANCH, FOLDER));
    expect((await lstat(join(local.folder, 'empty'))).isDirectory()).toBe(true);
    expect(await readdir(join(local.folder, 'nested-repo'))).toEqual([]);
  });

  it('refuses to write into a results folder that already exists', async () => {
    const outputs = join(root, 'outputs');
    await mkdir(outputs);
    const input = { ...aContent(outputs, 'a'.repeat(40)), destRoot: join(root, 'dest') };
    expect((await writeLocalResults(input)).ok).toBe(true);

    const again = await writeLocalResults(input);

    expect(again).toMatchObject({ ok: false, code: 'folder_exists' });
  });
});
