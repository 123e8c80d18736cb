/**
 * `secd up` is a leader with a node inside; other machines join it with `secd node` (DESIGN §4): the
 * in-process node and a `secd node` process side by side, GPU runs going where the GPUs are.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type Cluster } from '../support/cluster-harness.js';
import { writeFakeNvidiaSmi } from '../support/fake-nvidia-smi.js';
import { CLI } from '../support/secd-cli.js';
import { busyboxProject } from '../support/test-images.js';

describe('secd up with a secd node joining it', () => {
  let cluster: Cluster;
  let dir: string;
  const children: ChildProcess[] = [];

  async function startNode(id: string, token: string): Promise<{ child: ChildProcess; log: string }> {
    const smi = await writeFakeNvidiaSmi(join(dir, id, 'smi'), 'openpai_2x-rtx-2080ti_drv410.73.xml');
    const yml = join(dir, id, 'node.yml');
    await writeFile(
      yml,
      [
        `leader: ${cluster.leader.url.replace(/^http/, 'ws')}/v1/nodes`,
        `node_id: ${id}`,
        `token: ${token}`,
        `work_dir: ${join(dir, id, 'work')}`,
        `cache_root: ${join(dir, 'cache')}`,
        `nvidia_smi: ${smi}`,
        'report_interval_ms: 300',
        'memory_limit_bytes: 268435456',
      ].join('\n'),
    );
    const log = join(dir, `${id}.log`);
    const out = createWriteStream(log);
    const child = spawn(process.execPath, [CLI, 'node', '--config', yml], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SECD_LOG_LEVEL: 'info' } });
    child.stdout!.pipe(out);
    child.stderr!.pipe(out);
    children.push(child);
    return { child, log };
  }

  async function waitFor<T>(what: string, check: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = await check();
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  const apiNodes = async () =>
    ((await (await fetch(`${cluster.leader.url}/api/v1/nodes`)).json()) as { nodes: Array<{ id: string; state: string; gpus: Array<{ uuid: string }> }> }).nodes;

  beforeAll(async () => {
    cluster = await startCluster();
    dir = await mkdtemp(join(tmpdir(), 'secd-up-nodes-'));
  });
  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    await cluster?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('lists the in-process node and the joined node, and sends a GPU run to the one with GPUs', async () => {
    await startNode('gpu-box', await cluster.leader.nodeStore.issueToken('gpu-box'));
    const nodes = await waitFor('the joined node', async () => {
      const list = await apiNodes();
      return list.some((n) => n.id === 'gpu-box' && n.state === 'up' && n.gpus.length === 2) ? list : undefined;
    });
    expect(nodes.map((n) => [n.id, n.state, n.gpus.length])).toEqual([
      ['e2e-node', 'up', 0],
      ['gpu-box', 'up', 2],
    ]);

    const ada = await cluster.addResearcher({ username: 'ada', project: 'lab/gpu' });
    const pushed = await ada.pushRun(busyboxProject('echo "$NVIDIA_VISIBLE_DEVICES" > $OUTPUT_PATH/gpus.txt\n', 'gpu: 1\n'), { message: 'gpu run' });
    const run = await cluster.waitForRun(pushed.id);
    expect(run.state, run.reason).toBe('succeeded');
    expect(run.node).toBe('gpu-box');
    expect(run.gpus).toHaveLength(1);
  });

  it('refuses a node that claims the in-process node\'s id', async () => {
    const { log } = await startNode('e2e-node', await cluster.leader.nodeStore.issueToken('e2e-node'));
    const line = await waitFor('the refusal', async () => (await readFile(log, 'utf8').catch(() => '')).split('\n').find((l) => l.includes('answered 401')));
    expect(line).toContain('node token refused');
    expect((await apiNodes()).filter((n) => n.id === 'e2e-node')).toHaveLength(1);
  });
});
