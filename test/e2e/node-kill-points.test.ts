/**
 * A real `secd node` process killed with SIGKILL at a sample of its failpoints, with real Docker, a
 * real leader and the GitLab double: the node arms `SECD_FAILPOINTS=<point>` and kills itself there
 * (no cleanup, no flush, as `kill -9` or a power cut leaves it), is started again without it, and
 * the run ends once, as it truly ended, with exactly one results branch, one success status, and no
 * container or volume of it left on Docker. Every point is covered in-process with the fake engine
 * (daemon/node/node-kill-points.test.ts); this is the sample that proves the same on the real thing.
 */
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { outputsVolumeName } from '../../daemon/executor/container-profile.js';
import { startProcessCluster, type ProcessCluster } from '../support/process-cluster.js';
import { gitOutput as git, outputsFolder } from '../support/repo-reader.js';
import { busyboxProject } from '../support/test-images.js';

const ENDED = ['succeeded', 'failed', 'lost', 'rejected', 'cancelled', 'timed_out'];
/**
 * One point per step where a kill leaves the most to derive: an image built, a container made, one
 * started, an end journaled, a results commit journaled, a push landed, a cleanup half done, a result saved.
 */
const SAMPLE = [
  'node.build.journaled',
  'node.start.created',
  'node.start.started',
  'node.collect.journaled',
  'node.deliver.commit-recorded',
  'node.deliver.pushed',
  'node.clean.src-removed',
  'node.result.saved',
];
const docker = (...args: string[]) => execFileSync('docker', args, { encoding: 'utf8' }).trim();

describe('a node process killed with SIGKILL at a step of a run, and started again', () => {
  let cluster: ProcessCluster;
  let seq = 0;

  beforeAll(async () => {
    cluster = await startProcessCluster({ nodes: [{ id: 'kp', gpus: null, maxCpuRuns: 1 }], nodeTimeoutMs: 2000, lostAfterMs: 60_000, reportIntervalMs: 250, startNodes: false });
  }, 120_000);
  afterAll(async () => {
    await cluster?.close();
  });

  for (const point of SAMPLE) {
    it(`killed at ${point}: the run ends succeeded once, with one results branch, and nothing of it is left on Docker`, async () => {
      const name = `kp${++seq}`;
      const project = `lab/${name}`;
      const r = await cluster.addResearcher({ username: name, project });
      const node = cluster.nodes.get('kp')!;
      // Only this start of the node is armed: the leader and the restart are not.
      process.env.SECD_FAILPOINTS = point;
      try {
        await node.start();
      } finally {
        delete process.env.SECD_FAILPOINTS;
      }
      const { id } = await r.pushRun(busyboxProject('echo working\necho 42 > $OUTPUT_PATH/answer.txt\n'));
      await cluster.waitFor(`the node to kill itself at ${point}`, async () => !node.running, 60_000);
      // It died at the point, by its own SIGKILL, and said so on its way out.
      const said = `secd: failpoint ${point} (hit 1): killing the process`;
      await cluster.waitFor(`the node's log to say ${said}`, async () => (await readFile(join(cluster.root, 'node-kp.log'), 'utf8')).includes(said), 5000);

      await node.start();
      const run = await cluster.waitForRunState(id, ENDED, 60_000);

      expect(run.state, run.reason).toBe('succeeded');
      const repo = cluster.gitlab.repoDir(project);
      const branches = git(repo, ['for-each-ref', '--format=%(refname:short)', 'refs/heads/']).split('\n').filter((b) => b.startsWith('secd-'));
      expect(branches).toEqual([run.branch]);
      expect(git(repo, ['show', `${run.branch}:${outputsFolder(run.branch!)}/answer.txt`])).toBe('42\n');
      expect(git(repo, ['show', `${run.branch}:${outputsFolder(run.branch!)}/_secd/run.log`])).toBe('working\n');
      const successes = () => cluster.gitlab.statuses.filter((s) => s.sha === run.commit && s.name === 'secd' && s.state === 'success');
      await cluster.waitFor('the success status', async () => successes().length > 0);
      expect(successes()).toHaveLength(1);
      expect(docker('ps', '-aq', '--filter', `label=secd.run=${id}`)).toBe('');
      expect(docker('volume', 'ls', '-q', '--filter', `name=^${outputsVolumeName(id)}$`)).toBe('');
      await node.kill('SIGTERM');
    }, 120_000);
  }
});
