/**
 * GPUs as clusters really have them, through one `secd leader` and two `secd node` processes with the
 * fake nvidia-smi (real websockets, real Docker): an A100 in MIG mode whose MIG device a push asking
 * for `gpu: { count: 1, mig: 1g.20gb }` gets by its MIG UUID (the container sees it in
 * NVIDIA_VISIBLE_DEVICES) and that a plain `gpu: 1` never gets whole; and a K80 machine that loses a
 * GPU mid-run: nvidia-smi fails, the node keeps its inventory marked stale with that GPU lost, the
 * run on it fails saying so, the run on the machine's other GPUs finishes, and the lost GPU is given
 * to nobody.
 */
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setFakeGpuValues } from '../support/fake-nvidia-smi.js';
import { setFakeNvidiaSmiFailure } from '../support/fake-nvidia-smi-faults.js';
import { busyboxProject, startProcessCluster, type ProcessCluster } from '../support/process-cluster.js';

const A100_MIG = 'telegraf_a100-sxm4-80gb-mig_drv535.54.03.xml';
const K80 = 'openpai_4x-tesla-k80_drv430.26_processes.xml';
const A100 = 'GPU-513536b6-7d19-9063-b049-1e69664bb298';
const MIG_0 = 'MIG-5e1a0f3c-2b7d-5a48-9c61-0d3f8e2b7a14';
// K80 GPUs by index; index 2 is at bus id 00002DF7:00:00.0, the GPU k80-gpu-lost_q-x.txt says is lost.
const K80_GPUS = [
  'GPU-3341aba2-f01d-2c1f-7dd4-e389779faec2',
  'GPU-c3b26f7a-8dcb-619c-fa1b-8029265a4db0',
  'GPU-b01b80eb-0f18-1df0-cf88-0725bd90f1e1',
  'GPU-30bc2701-3bc2-5f35-0ebd-9867a077e138',
];
const ENDED = ['succeeded', 'failed', 'lost', 'rejected', 'cancelled', 'timed_out'];
const script = (sleep: number) => `echo "$NVIDIA_VISIBLE_DEVICES" > $OUTPUT_PATH/gpus.txt\nsleep ${sleep}\n`;

function git(dir: string, args: string[]): string {
  return execFileSync('git', ['-C', dir, ...args], { env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1' } }).toString();
}

describe('MIG devices and lost GPUs through node processes', () => {
  let cluster: ProcessCluster;

  beforeAll(async () => {
    cluster = await startProcessCluster({
      nodes: [
        { id: 'a100', gpus: A100_MIG },
        { id: 'k80', gpus: K80 },
      ],
      startNodes: false,
    });
    // Clear the K80 report's foreign processes so that all four GPUs can be given.
    await setFakeGpuValues(cluster.smiDir('k80'), [
      { uuid: K80_GPUS[1], processes: [] },
      { uuid: K80_GPUS[2], processes: [] },
    ]);
    await Promise.all(['a100', 'k80'].map((id) => cluster.nodes.get(id)!.start()));
  });
  afterAll(async () => {
    await cluster?.close();
  });

  it('a MIG request gets a MIG device by its MIG UUID; the MIG-mode GPU is listed with its devices and never given whole', async () => {
    const nodes = await cluster.waitFor('both nodes with their GPUs', async () => {
      const list = await cluster.apiNodes();
      return list.filter((n) => n.gpus.length > 0).length === 2 ? list : undefined;
    });
    const a100 = nodes.find((n) => n.id === 'a100')!;
    expect(a100.gpus).toEqual([
      expect.objectContaining({ uuid: A100, name: 'NVIDIA A100-SXM4-80GB', health: 'ok', mig_mode: true, mig_devices: expect.arrayContaining([expect.objectContaining({ uuid: MIG_0, profile: '1g.20gb', run_id: null })]) }),
    ]);
    expect(a100.gpus[0]!.mig_devices).toHaveLength(4);

    const mig = await cluster.addResearcher({ username: 'mia', project: 'lab/mig' });
    const { id: migRun } = await mig.pushRun(busyboxProject(script(1), 'runfor: 0.05\ngpu: { count: 1, mig: 1g.20gb }\n'));
    const whole = await cluster.addResearcher({ username: 'wes', project: 'lab/whole' });
    const { id: wholeRun } = await whole.pushRun(busyboxProject(script(1), 'runfor: 0.05\ngpu: { count: 1, model: A100 }\n'));

    const done = await cluster.waitForRunState(migRun, ENDED, 120_000);
    expect(done.state, done.reason).toBe('succeeded');
    expect(done).toMatchObject({ node: 'a100', gpus: [MIG_0] });
    const folder = `outputs/${done.branch!.slice('secd-'.length)}`;
    expect(git(cluster.gitlab.repoDir('lab/mig'), ['show', `${done.branch}:${folder}/gpus.txt`]).trim()).toBe(MIG_0);

    // The only A100 is in MIG mode: a whole one can never be given.
    const refused = await cluster.waitForRunState(wholeRun, ['rejected']);
    expect(refused.reason).toBe('secd.yml: gpu cannot be met: no node has 1 GPU matching model A100; none has even one');
  });

  it('a GPU lost mid-run: that run fails saying so, the machine’s other GPUs finish their work, the lost GPU goes to nobody', async () => {
    const ann = await cluster.addResearcher({ username: 'ann', project: 'lab/ann' });
    const { id: steady } = await ann.pushRun(busyboxProject(script(25), 'runfor: 0.05\ngpu: 2\n'));
    const running = await cluster.waitForRunState(steady, ['running'], 120_000);
    expect(running).toMatchObject({ node: 'k80', gpus: [K80_GPUS[0], K80_GPUS[1]] });
    const ben = await cluster.addResearcher({ username: 'ben', project: 'lab/ben' });
    const { id: doomed } = await ben.pushRun(busyboxProject(script(120), 'runfor: 0.05\ngpu: 2\n'));
    expect(await cluster.waitForRunState(doomed, ['running'], 120_000)).toMatchObject({ node: 'k80', gpus: [K80_GPUS[2], K80_GPUS[3]] });

    await setFakeNvidiaSmiFailure(cluster.smiDir('k80'), { output: 'k80-gpu-lost_q-x.txt', exitCode: 15 });

    const failed = await cluster.waitForRunState(doomed, ENDED, 120_000);
    expect(failed.state).toBe('failed');
    expect(failed.reason).toMatch(new RegExp(`^failed: GPU ${K80_GPUS[2]} on node k80 is lost \\(nvidia-smi: Unable to determine the device handle for GPU 00002DF7:00:00.0: GPU is lost`));

    const k80 = (await cluster.apiNodes()).find((n) => n.id === 'k80')!;
    expect(k80.gpus.map((g) => [g.uuid, g.health])).toEqual([
      [K80_GPUS[0], 'ok'],
      [K80_GPUS[1], 'ok'],
      [K80_GPUS[2], 'lost'],
      [K80_GPUS[3], 'ok'],
    ]);
    expect(k80.gpus_stale).toEqual({ since: expect.any(String), reason: expect.stringMatching(/-q -x failed \(exit code 15\)/) });
    expect(k80.memory_free_bytes).toBeGreaterThan(0);

    // A new run while the steady one still holds GPUs 0 and 1: it gets GPU 3, never the lost GPU 2.
    const cyd = await cluster.addResearcher({ username: 'cyd', project: 'lab/cyd' });
    const { id: next } = await cyd.pushRun(busyboxProject(script(1), 'runfor: 0.05\ngpu: 1\n'));
    const after = await cluster.waitForRunState(next, ENDED, 120_000);
    expect(after).toMatchObject({ state: 'succeeded', node: 'k80', gpus: [K80_GPUS[3]] });

    const finished = await cluster.waitForRunState(steady, ENDED, 120_000);
    expect(finished.state, finished.reason).toBe('succeeded');
  });
});
