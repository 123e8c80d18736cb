/**
 * One `secd leader` and three `secd node` processes on this machine (real websockets, real Docker):
 * signed pushes asking for 2, 1 or no GPUs are spread over the nodes, each container sees exactly the
 * GPUs the leader gave its run, no GPU serves two runs at once, a GPU busy with someone else's
 * process is never given out, and the API shows every node and GPU as the fake nvidia-smi reports it.
 */
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setFakeGpuValues } from '../support/fake-nvidia-smi.js';
import { busyboxProject, startProcessCluster, type ApiRun, type ProcessCluster } from '../support/process-cluster.js';

const K80 = 'openpai_4x-tesla-k80_drv430.26_processes.xml';
const RTX2080 = 'openpai_2x-rtx-2080ti_drv410.73.xml';
// From the K80 fixture: index 1 runs a process that is not secd's (pid 58813); index 2's process is
// cleared below so that the node has three GPUs to give.
const K80_FOREIGN = 'GPU-c3b26f7a-8dcb-619c-fa1b-8029265a4db0';
const K80_CLEARED = 'GPU-b01b80eb-0f18-1df0-cf88-0725bd90f1e1';
const MiB = 1024 * 1024;

function git(dir: string, args: string[]): string {
  return execFileSync('git', ['-C', dir, ...args], { env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1' } }).toString();
}

const SCRIPT = 'echo "$NVIDIA_VISIBLE_DEVICES" > $OUTPUT_PATH/gpus.txt\nsleep 2\n';

describe('a leader and three node processes', () => {
  let cluster: ProcessCluster;

  beforeAll(async () => {
    cluster = await startProcessCluster({
      nodes: [
        { id: 'k80', gpus: K80 },
        { id: 'rtx', gpus: RTX2080 },
        { id: 'cpu', gpus: null },
        { id: 'impostor', gpus: null, badToken: true },
      ],
      startNodes: false,
    });
    await setFakeGpuValues(cluster.smiDir('k80'), [
      { uuid: K80_CLEARED, processes: [] },
      // The driver says N/A for this reading: the API must say null, never 0.
      { index: 3, powerW: null },
    ]);
    await Promise.all(['k80', 'rtx', 'cpu'].map((id) => cluster.nodes.get(id)!.start()));
  });
  afterAll(async () => {
    await cluster?.close();
  });

  it('lists every node and GPU with the values nvidia-smi reports, N/A as null', async () => {
    // The leader picks up a node registered with `secd admin node-token` on its next registry tick
    // (every second): on a loaded machine the GPU nodes can report before that tick came.
    const nodes = await cluster.waitFor('telemetry from both GPU nodes, and the impostor registered', async () => {
      const list = await cluster.apiNodes();
      const ready = list.filter((n) => n.gpus.length > 0 && n.gpus.every((g) => g.temperature_c !== null));
      return ready.length === 2 && list.some((n) => n.id === 'impostor') ? list : undefined;
    });
    const byId = new Map(nodes.map((n) => [n.id, n]));
    expect([...byId.keys()].sort()).toEqual(['cpu', 'impostor', 'k80', 'rtx']);
    expect(byId.get('cpu')).toMatchObject({ state: 'up', gpus: [], runs: [] });
    expect(byId.get('cpu')!.cpus).toBeGreaterThan(0);
    expect(byId.get('cpu')!.memory_bytes).toBeGreaterThan(0);

    const k80 = byId.get('k80')!;
    expect(k80.state).toBe('up');
    // Listed by minor number, whatever the order in nvidia-smi's report.
    expect(k80.gpus.map((g) => g.index)).toEqual([0, 1, 2, 3]);
    expect(k80.gpus[0]).toEqual({
      uuid: 'GPU-3341aba2-f01d-2c1f-7dd4-e389779faec2',
      index: 0,
      name: 'Tesla K80',
      memory_total_bytes: 11441 * MiB,
      memory_used_bytes: 0,
      utilization_pct: 0,
      temperature_c: 26,
      power_w: 34.44,
      run_id: null,
      health: 'ok',
      problem: null,
      mig_mode: null,
      mig_devices: [],
    });
    expect(k80.gpus[1]).toMatchObject({ uuid: K80_FOREIGN, health: 'busy_foreign', memory_used_bytes: 587 * MiB, utilization_pct: 99, temperature_c: 64, power_w: 135.72 });
    expect(k80.gpus[3]).toMatchObject({ uuid: 'GPU-30bc2701-3bc2-5f35-0ebd-9867a077e138', temperature_c: 28, power_w: null });

    const rtx = byId.get('rtx')!;
    expect(rtx.gpus).toEqual([
      expect.objectContaining({ uuid: 'GPU-57567e11-0be2-381b-5132-2ad95c262e58', index: 0, name: 'GeForce RTX 2080 Ti', memory_total_bytes: 10989 * MiB, temperature_c: 24, power_w: 2.12 }),
      expect.objectContaining({ uuid: 'GPU-ef1d0068-5bfd-f1e4-7e79-ff35d71d44b8', index: 1, name: 'GeForce RTX 2080 Ti', memory_total_bytes: 10989 * MiB, temperature_c: 24, power_w: 19.11 }),
    ]);
  });

  it('refuses a node whose token is not its own, and logs who tried', async () => {
    const impostor = cluster.nodes.get('impostor')!;
    await impostor.start();
    const line = await cluster.waitFor('the refusal in the leader log', async () => {
      const log = await readFile(join(cluster.root, 'leader.log'), 'utf8');
      return log.split('\n').find((l) => l.includes('"node refused"') && l.includes('"node":"impostor"'));
    });
    expect(JSON.parse(line)).toMatchObject({ node: 'impostor', remote: expect.stringMatching(/^127\.0\.0\.1:\d+$/) });
    // The node logs the 401 once its upgrade request is answered, which may be after the leader logged the refusal.
    const nodeLine = await cluster.waitFor('the 401 in the node log', async () => {
      const log = await readFile(join(cluster.root, 'node-impostor.log'), 'utf8');
      return log.split('\n').find((l) => l.includes('the leader answered 401'));
    });
    expect(nodeLine).toContain('the leader answered 401');
    expect((await cluster.apiNodes()).find((n) => n.id === 'impostor')).toMatchObject({ state: 'down', last_seen: null });
    await impostor.kill();
  });

  it('runs GPU and CPU pushes on the nodes, each container seeing exactly its GPUs, no GPU shared', async () => {
    const wants: Array<[string, string]> = [
      ['gpu: 2', 'two-a'],
      ['gpu: 2', 'two-b'],
      ['gpu: 1', 'one-a'],
      ['gpu: 1', 'one-b'],
      ['gpu: false', 'cpu-a'],
      ['gpu: false', 'cpu-b'],
    ];
    const pushed: Array<{ id: string; want: number; project: string }> = [];
    for (const [yml, name] of wants) {
      const r = await cluster.addResearcher({ username: name, project: `lab/${name}` });
      const { id } = await r.pushRun(busyboxProject(SCRIPT, `runfor: 0.05\n${yml}\n`));
      pushed.push({ id, want: yml === 'gpu: false' ? 0 : Number(yml.split(' ')[1]), project: `lab/${name}` });
    }
    const giant = await cluster.addResearcher({ username: 'giant', project: 'lab/giant' });
    const { id: giantRun } = await giant.pushRun(busyboxProject(SCRIPT, 'gpu: 5\n'));

    const runs: ApiRun[] = [];
    for (const p of pushed) runs.push(await cluster.waitForRunState(p.id, ['succeeded', 'failed', 'lost', 'rejected', 'cancelled', 'timed_out'], 120_000));
    const inventory = new Map((await cluster.apiNodes()).map((n) => [n.id, n.gpus.map((g) => g.uuid)]));

    for (const [i, run] of runs.entries()) {
      const p = pushed[i]!;
      expect(run.state, `${run.id}: ${run.reason}`).toBe('succeeded');
      expect(run.gpus).toHaveLength(p.want);
      if (p.want > 0) {
        expect(['k80', 'rtx']).toContain(run.node);
        for (const g of run.gpus) expect(inventory.get(run.node!)).toContain(g);
      }
      expect(run.gpus).not.toContain(K80_FOREIGN);
      // What the container itself saw, as it wrote it into its outputs on the results branch.
      const repo = cluster.gitlab.repoDir(p.project);
      const folder = `outputs/${run.branch!.slice('secd-'.length)}`;
      const seen = git(repo, ['show', `${run.branch}:${folder}/gpus.txt`]).trim();
      expect(seen).toBe(p.want > 0 ? run.gpus.join(',') : 'void');
    }

    // Two runs holding the same GPU never overlap: from assignment to the end of the run.
    const held = runs.map((r) => ({
      id: r.id,
      gpus: r.gpus,
      from: Date.parse(r.events.find((e) => e.to === 'assigned')!.at),
      to: Date.parse(r.finished_at!),
    }));
    let shared = 0;
    for (const a of held) {
      for (const b of held) {
        if (a.id >= b.id || !a.gpus.some((g) => b.gpus.includes(g))) continue;
        shared++;
        expect(a.to <= b.from || b.to <= a.from, `${a.id} and ${b.id} share a GPU while both hold it`).toBe(true);
      }
    }
    // Six GPUs asked for, five free: at least one GPU served two runs, one after the other.
    expect(shared).toBeGreaterThan(0);

    const rejected = await cluster.waitForRunState(giantRun, ['rejected']);
    expect(rejected.reason).toMatch(/5 GPUs/);
    expect(rejected.reason).toMatch(/largest has 4/);
  });
});
