/**
 * Benchmark: the status page with 100 nodes × 8 GPUs, in real headless Chromium.
 *
 * Against the leader's real HTTP server (nodes' view injected, 10 minutes of utilisation history
 * already recorded, 50 recent runs) it prints:
 *  - first render: navigation start → every node, GPU and run drawn from the first snapshot
 *    (the page's `secd-first-render` mark), and the snapshot's size;
 *  - update latency: a node's status report reaching the leader (`onNodeStatus`) → the new value in
 *    the page's DOM, for one GPU changing and for all 800 changing at once (a whole cluster's reports);
 *  - the longest main-thread task seen during the updates (long tasks ≥ 50 ms are what a person feels
 *    as lag).
 * Goals: first render < 1 s, update latency p95 < 500 ms, no long task over 100 ms.
 *
 * Run: npm run build && npm run bench:status-page [rounds]
 */
import type { Page } from 'playwright-core';
import type { ApiNode } from '../../web/api-schema.js';
import { aGpu, aNode, aRun, launchChromium, startStatusServer } from '../support/status-page-fixtures.js';

const NODES = 100;
const GPUS = 8;
const ROUNDS = Number(process.argv[2] ?? 20);

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}
const ms = (x: number) => `${x.toFixed(0)} ms`;
const pct = (seed: number) => Math.round((Math.sin(seed) * 0.5 + 0.5) * 100);

/** Resolve (in the page) with Date.now() once the GPU's utilisation cell reads `text`. */
async function armWatch(page: Page, uuid: string, text: string): Promise<void> {
  await page.evaluate(
    ({ uuid, text }) => {
      const cell = document.querySelector(`tr[data-uuid="${uuid}"] [data-cell="util"]`)!;
      (window as unknown as { seenAt: Promise<number> }).seenAt = new Promise((done) => {
        const check = () => {
          if (cell.textContent === text) {
            observer.disconnect();
            done(Date.now());
          }
        };
        const observer = new MutationObserver(check);
        observer.observe(cell, { childList: true, characterData: true, subtree: true });
        check();
      });
    },
    { uuid, text },
  );
}

async function main(): Promise<void> {
  const nodes: ApiNode[] = Array.from({ length: NODES }, (_, n) => {
    const id = `gpu-${String(n + 1).padStart(3, '0')}`;
    return aNode(
      id,
      Array.from({ length: GPUS }, (_, i) => aGpu(id, i, { utilization_pct: pct(n * GPUS + i), run_id: i < 4 ? `run${String(n).padStart(7, '0')}` : null })),
    );
  });
  const server = await startStatusServer({ nodes: () => nodes });
  // Ten minutes of history, as a leader that has been up a while has it.
  const now = Date.now();
  for (let t = now - 600_000; t <= now; t += 2_000) {
    for (const n of nodes) server.feed.onNodeStatus(n.id, n.gpus.map((g, i) => ({ uuid: g.uuid, utilization_pct: pct(t / 10_000 + i) })), t);
  }
  for (let i = 0; i < 50; i++) await aRun(server.store, { state: i % 5 === 0 ? 'queued' : 'succeeded', node: 'gpu-001' });
  await server.feed.tick(true);
  const snapshotBytes = JSON.stringify(await server.feed.snapshot()).length;

  const browser = await launchChromium();
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.addInitScript(() => {
      const w = window as unknown as { longest: number };
      w.longest = 0;
      new PerformanceObserver((list) => {
        for (const e of list.getEntries()) w.longest = Math.max(w.longest, e.duration);
      }).observe({ type: 'longtask', buffered: true });
    });
    const t0 = performance.now();
    await page.goto(`${server.url}/`);
    await page.waitForSelector('html[data-ready="true"]');
    const wall = performance.now() - t0;
    const firstRender = await page.evaluate(() => performance.getEntriesByName('secd-first-render')[0]!.startTime);
    const rows = await page.locator('#gpus tbody tr').count();
    if (rows !== NODES * GPUS) throw new Error(`expected ${NODES * GPUS} GPU rows, the page has ${rows}`);
    const longestAtLoad = await page.evaluate(() => (window as unknown as { longest: number }).longest);
    await page.evaluate(() => ((window as unknown as { longest: number }).longest = 0));

    // One GPU changes.
    const single: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const node = nodes[(r * 37) % NODES]!;
      const gpu = node.gpus[r % GPUS]!;
      const value = gpu.utilization_pct === 99 ? 1 : 99 - (r % 50);
      await armWatch(page, gpu.uuid, `${value} %`);
      gpu.utilization_pct = value;
      const sent = Date.now();
      server.feed.onNodeStatus(node.id, [{ uuid: gpu.uuid, utilization_pct: value }], new Date());
      const seen = await page.evaluate(() => (window as unknown as { seenAt: Promise<number> }).seenAt);
      single.push(seen - sent);
      await new Promise((r) => setTimeout(r, 150));
    }

    // Every GPU changes (all 100 nodes report at once); timed to the last row in the table.
    const all: number[] = [];
    const last = nodes[NODES - 1]!.gpus[GPUS - 1]!;
    for (let r = 0; r < Math.max(5, Math.floor(ROUNDS / 2)); r++) {
      const value = 10 + r;
      await armWatch(page, last.uuid, `${value} %`);
      const sent = Date.now();
      for (const n of nodes) {
        for (const g of n.gpus) g.utilization_pct = value;
        n.last_seen = new Date().toISOString();
        server.feed.onNodeStatus(n.id, n.gpus.map((g) => ({ uuid: g.uuid, utilization_pct: value })), new Date());
      }
      const seen = await page.evaluate(() => (window as unknown as { seenAt: Promise<number> }).seenAt);
      all.push(seen - sent);
      await new Promise((r) => setTimeout(r, 300));
    }
    const longestAtUpdates = await page.evaluate(() => (window as unknown as { longest: number }).longest);

    console.log(`status page, ${NODES} nodes × ${GPUS} GPUs (${NODES * GPUS} GPU rows), headless Chromium ${browser.version()}`);
    console.log(`  snapshot                         ${(snapshotBytes / 1024).toFixed(0)} KiB of JSON (10 min history per GPU)`);
    console.log(`  first render (navigation → drawn) ${ms(firstRender)}   (goto → ready from the test: ${ms(wall)})`);
    console.log(`  longest main-thread task, load    ${ms(longestAtLoad)}`);
    console.log(`  update latency, 1 GPU changes     p50 ${ms(percentile(single, 50))}  p95 ${ms(percentile(single, 95))}  max ${ms(Math.max(...single))}  (${single.length} rounds)`);
    console.log(`  update latency, all GPUs change   p50 ${ms(percentile(all, 50))}  p95 ${ms(percentile(all, 95))}  max ${ms(Math.max(...all))}  (${all.length} rounds)`);
    console.log(`  longest main-thread task, updates ${ms(longestAtUpdates)}`);
  } finally {
    await browser.close();
    await server.close();
  }
}

await main();
