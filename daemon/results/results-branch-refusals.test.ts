/**
 * What delivering a run's results as git refuses, and how it fails: a results branch already on the
 * remote is never overwritten or fast-forwarded unless it is secd's own earlier push (then the run is
 * delivered once), a push that cannot reach the remote says so without the token and is retried on the
 * same workspace, a repository whose "outputs" is a symlink or a missing run commit is refused, and a
 * local results folder that exists is never written into. Real git, a bare repository as the remote.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { pushResultsBranch, writeLocalResults } from './results-branch.js';
import { aContent, aProject, aWorkspace, BRANCH, FOLDER, testGitEnv, TOKEN } from './results-branch-test-kit.js';
import { branchFiles, remoteHeads } from '../../test/support/file-trees.js';
import { freePort } from '../../test/support/free-port.js';

let root: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'secd-results-branch-'));
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', args, { cwd, env: testGitEnv, encoding: 'utf8' }).trim();
}

describe('pushResultsBranch', () => {
  it('refuses, without force-pushing, a results branch someone else already pushed, and names it', async () => {
    const project = await aProject(git, root);
    const outputs = join(root, 'outputs-1');
    await mkdir(outputs);
    await writeFile(join(outputs, 'first.txt'), 'first');
    const first = await pushResultsBranch({ ...aContent(outputs, project.runCommit), repoDir: aWorkspace(git, root, project, 'ws1'), remoteUrl: project.remote });
    if (!first.ok) throw new Error(first.reason);

    await writeFile(join(outputs, 'second.txt'), 'second');
    const recorded: string[] = [];
    const second = await pushResultsBranch({
      ...aContent(outputs, project.runCommit),
      repoDir: aWorkspace(git, root, project, 'ws2'),
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
    const project = await aProject(git, root);
    const outputs = join(root, 'outputs');
    await mkdir(outputs);
    await writeFile(join(outputs, 'a.txt'), 'a');
    const recorded: string[] = [];
    const first = await pushResultsBranch({
      ...aContent(outputs, project.runCommit),
      repoDir: aWorkspace(git, root, project, 'ws1'),
      remoteUrl: project.remote,
      recordCommit: async (c) => void recorded.push(c),
    });
    if (!first.ok) throw new Error(first.reason);
    expect(recorded).toEqual([first.commit]);

    // The node crashed before it noted the push; the retry makes a new commit, which is refused.
    const retry = await pushResultsBranch({ ...aContent(outputs, project.runCommit), repoDir: aWorkspace(git, root, project, 'ws2'), remoteUrl: project.remote, ownCommits: recorded });

    expect(retry).toMatchObject({ ok: true, branch: BRANCH, commit: first.commit, path: FOLDER });
    expect(git(project.remote, 'rev-parse', BRANCH)).toBe(first.commit);
  });

  it('never fast-forwards a same-named branch that is an ancestor of the results', async () => {
    const project = await aProject(git, root);
    // Someone created the branch at the run commit: a plain push would fast-forward it.
    git(project.remote, 'branch', BRANCH, project.runCommit);
    const outputs = join(root, 'outputs');
    await mkdir(outputs);

    const result = await pushResultsBranch({ ...aContent(outputs, project.runCommit), repoDir: aWorkspace(git, root, project), remoteUrl: project.remote });

    expect(result).toMatchObject({ ok: false, code: 'branch_taken' });
    expect(git(project.remote, 'rev-parse', BRANCH)).toBe(project.runCommit);
  });

  it('keeps the token out of the reason when the remote cannot be reached, and a retry on the same workspace delivers once', async () => {
    const project = await aProject(git, root);
    const workspace = aWorkspace(git, root, project);
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

  it('refuses a repository whose "outputs" is a symlink, and touches nothing it points at', async () => {
    const elsewhere = join(root, 'host-dir');
    await mkdir(elsewhere);
    await writeFile(join(elsewhere, 'keep.txt'), 'keep');
    const project = await aProject(git, root, async (dir) => {
      await symlink(elsewhere, join(dir, 'outputs'));
    });
    const outputs = join(root, 'run-outputs');
    await mkdir(outputs);
    await writeFile(join(outputs, 'a.txt'), 'a');

    const result = await pushResultsBranch({ ...aContent(outputs, project.runCommit), repoDir: aWorkspace(git, root, project), remoteUrl: project.remote });

    expect(result).toMatchObject({ ok: false, code: 'outputs_path_taken' });
    expect(await readdir(elsewhere)).toEqual(['keep.txt']);
    expect(remoteHeads(project.remote)).toEqual(['refs/heads/main']);
  });

  it('says so when the run commit is not in the workspace', async () => {
    const project = await aProject(git, root);
    const outputs = join(root, 'outputs');
    await mkdir(outputs);
    const missing = 'f'.repeat(40);

    const result = await pushResultsBranch({ ...aContent(outputs, missing), repoDir: aWorkspace(git, root, project), remoteUrl: project.remote });

    expect(result).toMatchObject({ ok: false, code: 'bad_commit' });
    if (result.ok) throw new Error('unreachable');
    expect(result.reason).toContain(missing);
  });
});

describe('writeLocalResults', () => {
  it('refuses to write into a results folder that already exists', async () => {
    const outputs = join(root, 'outputs');
    await mkdir(outputs);
    const input = { ...aContent(outputs, 'a'.repeat(40)), destRoot: join(root, 'dest') };
    expect((await writeLocalResults(input)).ok).toBe(true);

    const again = await writeLocalResults(input);

    expect(again).toMatchObject({ ok: false, code: 'folder_exists' });
  });
});
