/**
 * Delivering a run's results as git: one new branch on the project's remote, a child of the run's
 * commit, carrying /outputs byte for byte with run.json and both logs, whatever a hostile run or the
 * repository's own .gitignore/.gitattributes try, pushed over HTTP with the URL's credentials; and the
 * same tree written to a local folder for `secd run`. Real git, a bare repository as the remote.
 * What is refused, and how a failed push is retried, is results-branch-refusals.test.ts.
 */
import { execFileSync } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { pushResultsBranch, writeLocalResults } from './results-branch.js';
import {
  aContent, aProject, aReport, aWorkspace, BRANCH, FOLDER, HOSTILE_LEFT_OUT, hostileOutputs, RUN_ID, SECRET, testGitEnv, TOKEN,
} from './results-branch-test-kit.js';
import type { RunReport } from '../../scheduler/contract/run-spec.js';
import { branchFiles, diskFiles, remoteHeads } from '../../test/support/file-trees.js';
import { startGitHttpServer } from '../../test/support/git-http-server.js';

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

function gitBytes(cwd: string, ...args: string[]): Buffer {
  return execFileSync('git', args, { cwd, env: testGitEnv, maxBuffer: 64 << 20 });
}

describe('pushResultsBranch', () => {
  it('pushes one new branch, a child of the run commit, carrying the outputs, run.json and both logs', async () => {
    const project = await aProject(git, root);
    const workspace = aWorkspace(git, root, project);
    const outputs = await hostileOutputs(root);
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
    const project = await aProject(git, root);
    const workspace = aWorkspace(git, root, project);
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

  it('pushes over HTTP with the credentials from the URL, and says so without the token when they are wrong', async () => {
    const project = await aProject(git, root);
    const server = await startGitHttpServer(root, 'oauth2', TOKEN);
    try {
      const outputs = join(root, 'outputs');
      await mkdir(outputs);
      await writeFile(join(outputs, 'a.txt'), 'a');
      const url = (token: string): string => `http://oauth2:${token}@127.0.0.1:${server.port}/remote.git`;

      const wrong = await pushResultsBranch({ ...aContent(outputs, project.runCommit), repoDir: aWorkspace(git, root, project, 'ws1'), remoteUrl: url('wrong-token-123') });
      expect(wrong).toMatchObject({ ok: false, code: 'push_failed' });
      if (wrong.ok) throw new Error('unreachable');
      expect(wrong.reason).toContain('credentials');
      expect(wrong.reason).not.toContain('wrong-token-123');

      const right = await pushResultsBranch({ ...aContent(outputs, project.runCommit), repoDir: aWorkspace(git, root, project, 'ws2'), remoteUrl: url(TOKEN) });
      expect(right).toMatchObject({ ok: true, branch: BRANCH });
      expect(remoteHeads(project.remote)).toEqual(['refs/heads/main', `refs/heads/${BRANCH}`]);
      // The workspace's git config does not remember the credentials either.
      expect(await readFile(join(root, 'ws2', '.git', 'config'), 'utf8')).not.toContain(TOKEN);
    } finally {
      await server.close();
    }
  });
});

describe('writeLocalResults', () => {
  it('writes the same tree as the results branch, plus the empty folders git cannot carry', async () => {
    const project = await aProject(git, root);
    const outputs = await hostileOutputs(root);
    const content = aContent(outputs, project.runCommit);
    const pushed = await pushResultsBranch({ ...content, repoDir: aWorkspace(git, root, project), remoteUrl: project.remote });
    if (!pushed.ok) throw new Error(pushed.reason);

    const local = await writeLocalResults({ ...content, destRoot: join(root, 'project', 'outputs') });

    expect(local).toMatchObject({ ok: true, folder: join(root, 'project', FOLDER) });
    if (!local.ok) throw new Error(local.reason);
    expect(local.manifest).toEqual(pushed.manifest);
    expect(await diskFiles(local.folder)).toEqual(branchFiles(project.remote, BRANCH, FOLDER));
    expect((await lstat(join(local.folder, 'empty'))).isDirectory()).toBe(true);
    expect(await readdir(join(local.folder, 'nested-repo'))).toEqual([]);
  });
});
