/**
 * The status page of a real cluster, end to end: a leader (with its in-process node) behind the
 * GitLab double, a real `secd node` process whose nvidia-smi is a fake printing a recorded report
 * (2 × RTX A5000, each busy with someone else's llama-server), and real headless Chromium. The page
 * lists the recorded GPUs with their values, follows the fake's telemetry within 2 s without a
 * reload, and shows a finished run and one queued behind the busy GPUs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type Cluster, type Researcher } from '../support/cluster-harness.js';
import { setFakeGpuValues, writeFakeNvidiaSmi } from '../support/fake-nvidia-smi.js';
import { launchChromium } from '../support/status-page-fixtures.js';
import { CLI } from '../support/secd-cli.js';
import { BUSYBOX_IMAGE } from '../support/test-images.js';

const ARTIFACTS = resolve(import.meta.dirname, '../../test-artifacts');
const FIXTURE = 'telegraf_2x-rtx-a5000_drv590.44.01_processes.xml';
const GPU0 = 'GPU-12345678-aaaa-bbbb-cccc-0123456789cd';
const GPU1 = 'GPU-12345678-aaaa-bbbb-cccc-0123456789ab';

describe('status page of a running cluster with a `secd node`', () => {
  let cluster: Cluster;
  let root: string;
  let smiDir: string;
  let node: ChildProcess;
  let nodeOutput = '';
  let browser: Browser;
  let page: Page;

  beforeAll(async () => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "npm run build" (npm test does it first)`);
    cluster = await startCluster();
    root = await mkdtemp(join(tmpdir(), 'secd-status-live-'));
    smiDir = join(root, 'nvidia-smi');
    const smi = await writeFakeNvidiaSmi(smiDir, FIXTURE);
    const token = await cluster.leader.nodeStore.issueToken('gpu-a5000');
    await mkdir(join(root, 'cache'), { recursive: true });
    await writeFile(
      join(root, 'node.yml'),
      [
        `leader: ${cluster.leader.url.replace(/^http/, 'ws')}/v1/nodes`,
        'node_id: gpu-a5000',
        `token: ${token}`,
        `work_dir: ${join(root, 'work')}`,
        `cache_root: ${join(root, 'cache')}`,
        `nvidia_smi: ${smi}`,
        'report_interval_ms: 250',
        'max_cpu_runs: 0',
      ].join('\n'),
    );
    node = spawn(process.execPath, [CLI, 'node', '--config', join(root, 'node.yml')], {
      env: { ...process.env, SECD_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    node.stdout!.on('data', (c: Buffer) => (nodeOutput += c.toString()));
    node.stderr!.on('data', (c: Buffer) => (nodeOutput += c.toString()));
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
    await page.goto(`${cluster.leader.url}/`);
    await page.waitForSelector('html[data-ready="true"]');
  });
  afterAll(async () => {
    await browser?.close();
    if (node && node.exitCode === null) {
      const exited = new Promise((done) => node.once('exit', done));
      node.kill('SIGTERM');
      await exited;
    }
    await cluster?.close();
    if (root) await rm(root, { recursive: true, force: true });
  });

  const util = (uuid: string) => page.locator(`tr[data-uuid="${uuid}"] [data-cell="util"]`);

  it('lists the GPUs the node\'s nvidia-smi reports, with their recorded values', async () => {
    await expect
      .poll(() => page.locator(`tr[data-uuid="${GPU0}"]`).count(), { timeout: 20_000, message: `node output:\n${nodeOutput}` })
      .toBe(1);
    const rows = page.locator('#gpus tbody[data-node="gpu-a5000"] tr');
    await expect.poll(() => rows.allInnerTexts()).toEqual([
      expect.stringMatching(/^gpu-a5000 #0\s+0 %\s+16\.8 \/ 24\.0 GiB\s+15 °C\s+13\.6 W\s+—\s+NVIDIA RTX A5000$/),
      expect.stringMatching(/^gpu-a5000 #1\s+0 %\s+21\.9 \/ 24\.0 GiB\s+13 °C\s+6\.4 W\s+—\s+NVIDIA RTX A5000$/),
    ]);
    expect(await page.locator('tr[data-node="gpu-a5000"]').innerText()).toMatch(/^gpu-a5000\s+up\s+\d+ s ago/);
  });

  it('shows the new utilisation within 2 s after the telemetry changes, without a reload', async () => {
    await page.evaluate(() => ((window as unknown as { marker: string }).marker = 'same page'));
    const changed = Date.now();
    await setFakeGpuValues(smiDir, [
      { uuid: GPU0, utilizationPct: 87, temperatureC: 64 },
      { uuid: GPU1, utilizationPct: 42 },
    ]);
    await expect.poll(() => util(GPU0).innerText(), { timeout: 2000, interval: 25 }).toBe('87 %');
    const seenAfterMs = Date.now() - changed;
    expect(seenAfterMs).toBeLessThan(2000);
    await expect.poll(() => util(GPU1).innerText(), { timeout: 2000, interval: 25 }).toBe('42 %');
    expect(await page.locator(`tr[data-uuid="${GPU0}"]`).innerText()).toContain('64 °C');
    expect(await page.evaluate(() => (window as unknown as { marker?: string }).marker)).toBe('same page');
  });

  it('shows a finished run and a run queued behind the busy GPUs, with their states', async () => {
    const ada: Researcher = await cluster.addResearcher({ username: 'ada', project: 'lab/quick' });
    const quick = (await ada.pushRun({ Dockerfile: `FROM ${BUSYBOX_IMAGE}\nCMD ["true"]\n` }, { message: 'cpu run' })).id;
    const bob: Researcher = await cluster.addResearcher({ username: 'bob', project: 'lab/big' });
    const big = (await bob.pushRun({ Dockerfile: `FROM ${BUSYBOX_IMAGE}\nCMD ["true"]\n`, 'secd.yml': 'gpu: 1\n' }, { message: 'gpu run' })).id;
    expect((await cluster.waitForRun(quick)).state).toBe('succeeded');

    const recent = page.locator('#recent-body');
    await expect.poll(() => recent.locator(`tr[data-run="${quick}"]`).innerText(), { timeout: 5000 }).toMatch(/lab\/quick\s+ada\s+succeeded/);
    await expect.poll(() => page.locator(`#queue-body tr[data-run="${big}"]`).innerText(), { timeout: 5000 }).toMatch(/lab\/big\s+bob\s+queued\s+queued: 1st in line for 1 GPU/);
    expect(await recent.locator(`tr[data-run="${big}"]`).innerText()).toMatch(/queued/);
    await page.screenshot({ path: `${ARTIFACTS}/status-page-live.png`, fullPage: true });
  });
});
