/**
 * The status page as a person sees it, in real headless Chromium against the leader's real HTTP
 * server and run store, with the nodes' view injected the way the node registry provides it: every
 * GPU with its values, live changes without a reload, the queue and recent runs, the run page, and
 * nothing loaded from anywhere but the leader. Screenshots land in test-artifacts/ (not committed).
 */
import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiNode } from '../../web/api-schema.js';
import { aGpu, aNode, aRun, launchChromium, startStatusServer, type StatusServer } from '../support/status-page-fixtures.js';

const ARTIFACTS = resolve(import.meta.dirname, '../../test-artifacts');
const GiB = 2 ** 30;

describe('status page', () => {
  let server: StatusServer;
  let browser: Browser;
  let page: Page;
  let nodes: ApiNode[];
  const requests: string[] = [];
  const consoleErrors: string[] = [];

  beforeAll(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    nodes = [
      aNode('gpu-02', [
        aGpu('gpu-02', 0, { utilization_pct: 37, memory_used_bytes: 12 * GiB, memory_total_bytes: 80 * GiB, temperature_c: 45, power_w: 250, run_id: 'run0000001' }),
        aGpu('gpu-02', 1, { utilization_pct: null, temperature_c: null, power_w: null, memory_used_bytes: null }),
      ]),
      aNode('gpu-10', [aGpu('gpu-10', 0, { name: 'Tesla K80', utilization_pct: 81, temperature_c: 71, power_w: 149 })], { load: 7.25 }),
      aNode('gpu-01', 0, { state: 'down', last_seen: new Date(Date.now() - 90_000).toISOString(), load: null }),
    ];
    server = await startStatusServer({ nodes: () => nodes, pollMs: 250 });
    await aRun(server.store, { id: 'run0000001', state: 'running', project: 'lab/vision', user: 'alice', node: 'gpu-02', gpus: [nodes[0]!.gpus[0]!.uuid] });
    await aRun(server.store, { id: 'run0000002', state: 'succeeded', project: 'lab/nlp', user: 'bob', node: 'gpu-10' });
    await aRun(server.store, {
      id: 'run0000003',
      state: 'rejected',
      project: 'lab/nlp',
      user: 'bob',
      reason: 'could not fetch https://oauth2:glpat-SECRET@gitlab.example/lab/nlp.git',
    });
    await aRun(server.store, { id: 'run0000004', state: 'queued', project: 'lab/vision', user: 'carol' });
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('request', (r) => requests.push(r.url()));
    page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
    page.on('pageerror', (e) => consoleErrors.push(e.message));
    await page.goto(`${server.url}/`);
    await page.waitForSelector('html[data-ready="true"]');
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  const row = (uuid: string) => page.locator(`tr[data-uuid="${uuid}"]`);

  it('lists every node and every GPU with its utilisation, memory, temperature, power and run', async () => {
    await expect.poll(() => page.locator('#nodes tbody tr').allInnerTexts()).toEqual([
      expect.stringMatching(/^gpu-01\s+down\s+1 min \d+ s ago\s+N\/A/),
      expect.stringMatching(/^gpu-02\s+up\s+\d+ s ago\s+1\.50\s+512 GiB\s+64\s+1 \/ 2\s+1$/),
      expect.stringMatching(/^gpu-10\s+up\s+\d+ s ago\s+7\.25\s+512 GiB\s+64\s+0 \/ 1\s+0$/),
    ]);
    const [a, b] = nodes[0]!.gpus;
    expect(await row(a!.uuid).innerText()).toMatch(/^gpu-02 #0\s+37 %\s+12\.0 \/ 80\.0 GiB\s+45 °C\s+250 W\s+run0000001\s+NVIDIA H100 80GB HBM3$/);
    // N/A from the hardware stays N/A, never 0.
    expect(await row(b!.uuid).innerText()).toMatch(/^gpu-02 #1\s+N\/A\s+N\/A \/ 79\.6 GiB\s+N\/A\s+N\/A\s+—\s+NVIDIA H100 80GB HBM3$/);
    expect(await row(nodes[1]!.gpus[0]!.uuid).innerText()).toMatch(/^gpu-10 #0\s+81 %[\s\S]*Tesla K80$/);
    expect(await page.locator('#t-gpus-busy').innerText()).toBe('1 / 3');
    expect(await page.locator('#t-nodes-up').innerText()).toBe('2 / 3');
    await page.screenshot({ path: `${ARTIFACTS}/status-page.png`, fullPage: true });
  });

  it('shows a new utilisation within 2 s of the report, without reloading', async () => {
    await page.evaluate(() => ((window as unknown as { marker: string }).marker = 'same page'));
    const gpu = nodes[0]!.gpus[0]!;
    const changedAt = Date.now();
    gpu.utilization_pct = 93;
    server.feed.onNodeStatus('gpu-02', [{ uuid: gpu.uuid, utilization_pct: 93 }], new Date());
    await expect.poll(() => row(gpu.uuid).locator('[data-cell="util"]').innerText(), { timeout: 2000, interval: 20 }).toBe('93 %');
    expect(Date.now() - changedAt).toBeLessThan(2000);
    expect(await page.evaluate(() => (window as unknown as { marker?: string }).marker)).toBe('same page');
    // The bar is drawn to scale; the chart (5-second means) and its text alternative move up with it.
    expect(await row(gpu.uuid).locator('[data-cell="utilbar"]').getAttribute('style')).toContain('width: 93');
    const highest = async () => Number(/highest (\d+) %/.exec((await row(gpu.uuid).locator('[role="img"]').getAttribute('aria-label')) ?? '')?.[1]);
    await expect.poll(highest).toBeGreaterThan(37);
  });

  it('picks up a change the registry did not push, by itself, still without a reload', async () => {
    const gpu = nodes[1]!.gpus[0]!;
    gpu.utilization_pct = 5;
    gpu.temperature_c = 52;
    await expect.poll(() => row(gpu.uuid).innerText(), { timeout: 2000, interval: 20 }).toMatch(/5 %[\s\S]*52 °C/);
  });

  it('adds a node that joins and removes one that leaves, keeping the other rows', async () => {
    const kept = await row(nodes[0]!.gpus[0]!.uuid).elementHandle();
    nodes.push(aNode('gpu-03', 2));
    await expect.poll(() => page.locator('#gpus tbody tr').count()).toBe(5);
    nodes = nodes.filter((n) => n.id !== 'gpu-10');
    await expect.poll(() => page.locator('#nodes tbody th').allInnerTexts()).toEqual(['gpu-01', 'gpu-02', 'gpu-03']);
    expect(await kept!.evaluate((el) => el.isConnected)).toBe(true);
  });

  it('shows the queue and the recent runs with their states, and never a credential', async () => {
    expect(await page.locator('#queue-body tr').allInnerTexts()).toEqual([expect.stringMatching(/^1\s+run0000004\s+lab\/vision\s+carol\s+queued\s+waiting for a node/)]);
    const recent = await page.locator('#recent-body tr').allInnerTexts();
    expect(recent).toEqual([
      expect.stringMatching(/^run0000004\s+lab\/vision\s+carol\s+queued/),
      expect.stringMatching(/^run0000003\s+lab\/nlp\s+bob\s+rejected\s+could not fetch https:\/\/\*\*\*@gitlab\.example/),
      expect.stringMatching(/^run0000002\s+lab\/nlp\s+bob\s+succeeded\s+exit code 0.*gpu-10/),
      expect.stringMatching(/^run0000001\s+lab\/vision\s+alice\s+running\s+container running\s+gpu-02\s+gpu-02 #0/),
    ]);
    expect(await page.content()).not.toContain('glpat-SECRET');
    // A run that moves on shows up without a reload.
    await server.store.transition('run0000004', 'assigned', 'assigned to gpu-03', { node: 'gpu-03', gpus: [] });
    await expect.poll(() => page.locator('#recent-body tr').first().innerText()).toMatch(/assigned\s+assigned to gpu-03/);
    await expect.poll(() => page.locator('#queue-body tr').allInnerTexts()).toEqual(['Nothing is waiting.']);
  });

  it('is built of real tables with captions and headers, and loads nothing from outside the leader', async () => {
    const tables = page.locator('main table');
    expect(await tables.count()).toBe(4 + 2); // nodes, queue, held for review, recent runs, and one GPU table per node with GPUs
    for (const table of await tables.all()) {
      expect((await table.locator('caption').innerText()).length).toBeGreaterThan(3);
      expect(await table.locator('thead th[scope="col"]').count()).toBeGreaterThan(5);
    }
    expect(await page.locator('#gpus tbody th[scope="row"]').count()).toBe(4);
    expect(requests.length).toBeGreaterThan(3);
    expect(requests.filter((u) => !u.startsWith(server.url))).toEqual([]);
    expect(consoleErrors).toEqual([]);
  });

  it('reads on a phone: the page itself does not scroll sideways, the tables do', async () => {
    const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
    await phone.goto(`${server.url}/`);
    await phone.waitForSelector('html[data-ready="true"]');
    const widths = await phone.evaluate(() => ({ doc: document.documentElement.scrollWidth, view: window.innerWidth }));
    expect(widths.doc).toBeLessThanOrEqual(widths.view);
    await phone.screenshot({ path: `${ARTIFACTS}/status-page-phone.png`, fullPage: true });
    await phone.close();
  });

  it('the run page shows state, reason, timings, node, GPUs and history', async () => {
    const run = await browser.newPage();
    await run.goto(`${server.url}/runs/run0000001`);
    const text = await run.locator('main').innerText();
    expect(text).toMatch(/Run run0000001\s+running/);
    expect(text).toContain('container running');
    expect(text).toMatch(/Node\s+gpu-02/);
    expect(text).toMatch(/GPUs\s+gpu-02 #0 \(NVIDIA H100 80GB HBM3\)/);
    expect(await run.locator('table').nth(1).locator('tbody tr').allInnerTexts()).toEqual([
      expect.stringMatching(/received\s+push received/),
      expect.stringMatching(/received\s+verified\s+1 commit verified/),
      expect.stringMatching(/verified\s+queued\s+waiting for a node/),
      expect.stringMatching(/queued\s+assigned\s+assigned to gpu-02/),
      expect.stringMatching(/assigned\s+building\s+building the image/),
      expect.stringMatching(/building\s+running\s+container running/),
    ]);
    // It follows the run to its end in place.
    await server.store.transition('run0000001', 'uploading', 'pushing results');
    await server.store.transition('run0000001', 'failed', 'exit code 3');
    await expect.poll(() => run.locator('main h1').innerText(), { timeout: 5000 }).toMatch(/failed/);
    expect(await run.locator('#reason').innerText()).toBe('exit code 3');
    await run.screenshot({ path: `${ARTIFACTS}/run-page.png`, fullPage: true });
    const missing = await run.goto(`${server.url}/runs/nosuchrun0`);
    expect(missing?.status()).toBe(404);
    await run.close();
  });
});
