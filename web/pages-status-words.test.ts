/**
 * The run page says what the commit status says, in words, and for a direct run whose build failed
 * it shows the end of the build log — through the real server (app.inject) over real run and
 * release stores (in-memory SQLite). A review run's logs wait for review with its outputs, so its page shows
 * none of them; an anonymous reader of a private leader sees none either.
 */
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLog } from '../scheduler/common/log.js';
import type { RunLifecycle } from '../scheduler/lifecycle/run-lifecycle.js';
import type { RunState } from '../storage/run-states.js';
import { memoryStores } from '../test/support/scratch-state.js';
import { aGpu, aNode, aRelease } from '../test/support/status-page-fixtures.js';
import type { ApiNode } from './api-schema.js';
import { buildLeaderServer } from './leader-server.js';

const TOKEN = 'read-token-0123456789abcdef';
const TAIL = 'Step 2/3 : RUN pip install torch==9.9\nERROR: No matching distribution found for torch==9.9 <script>alert(1)</script>\n[secd] docker build failed: step 2 exited 1';

const apps: FastifyInstance[] = [];
const opened: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  for (const app of apps.splice(0)) await app.close();
  for (const s of opened.splice(0)) await s.close();
});

/** A leader whose store's clock started `agoMs` ago, with gpu-03 (two H100s) reporting. */
async function leader(opts: { readToken?: string | null; agoMs?: number; withReleases?: boolean } = {}) {
  let ms = Date.now() - (opts.agoMs ?? 0);
  const stores = await memoryStores(() => new Date(ms));
  opened.push(stores);
  const { runs: store, releases } = stores;
  const gpus = [aGpu('gpu-03', 0, { run_id: 'r-run' }), aGpu('gpu-03', 1, { run_id: 'r-run' })];
  const nodes: ApiNode[] = [aNode('gpu-03', gpus)];
  const app = buildLeaderServer({
    store,
    lifecycle: {} as RunLifecycle,
    log: silentLog,
    intake: null,
    healthy: async () => true,
    nodes: async () => nodes,
    ...(opts.withReleases === false ? {} : { releases }),
    readToken: opts.readToken ?? null,
  });
  apps.push(app);
  let seq = 0;
  /** A run that went through `path` on gpu-03, each step a second after the last. */
  const runThrough = async (path: RunState[], patch: { buildLogTail?: string } = {}, id = `r${++seq}`) => {
    await store.createRun({ id, projectId: 1, project: 'lab/x', ref: 'refs/heads/main', beforeSha: '0'.repeat(40), commit: 'a'.repeat(40), user: 'ada', userId: 1, deliveryKey: id, fetchUrl: 'x' });
    for (const state of path) {
      ms += 1000;
      const extra = state === 'queued' ? { config: { runforMs: 3 * 3_600_000 } } : state === 'assigned' ? { node: 'gpu-03', gpus: gpus.map((g) => g.uuid) } : {};
      const t = await store.transition(id, state, state === 'failed' ? 'docker build failed: step 2 exited 1' : state, { ...extra, ...(state === 'failed' ? patch : {}) });
      if (!t.ok) throw new Error(`cannot go to ${state}`);
    }
    return id;
  };
  const failedBuild = (patch = { buildLogTail: TAIL }, id?: string) => runThrough(['verified', 'queued', 'assigned', 'building', 'failed'], patch, id);
  return { app, store, releases, runThrough, failedBuild };
}

async function page(app: FastifyInstance, id: string, headers: Record<string, string> = {}): Promise<string> {
  const res = await app.inject({ method: 'GET', url: `/runs/${id}`, headers });
  expect(res.statusCode).toBe(200);
  return res.body;
}

const tailBlock = /<pre class="log" id="build-log-tail"[^>]*>([\s\S]*?)<\/pre>/;

describe('the run page of a failed build', () => {
  it('of a direct run shows the last build.log lines, escaped, and where the whole log is', async () => {
    const { app, releases, failedBuild } = await leader();
    const id = await failedBuild();
    await aRelease(releases, id, { policy: 'direct', datasets: [] });
    const html = await page(app, id);
    expect(html).toContain('<h2 id="build-log-h">End of the build log</h2>');
    const shown = tailBlock.exec(html)?.[1];
    expect(shown).toContain('ERROR: No matching distribution found for torch==9.9 &lt;script&gt;alert(1)&lt;/script&gt;');
    expect(shown).toContain('[secd] docker build failed: step 2 exited 1');
    expect(html).not.toContain('<script>alert(1)</script>');
    expect(html).toContain(`in <code>kept/${id}/build.log</code>`);
    // The part run.js swaps in says the same.
    const main = (await app.inject({ method: 'GET', url: `/runs/${id}/main` })).json() as { html: string };
    expect(tailBlock.exec(main.html)?.[1]).toBe(shown);
  });

  it('of a leader without output release (every run direct) shows it too', async () => {
    const { app, failedBuild } = await leader({ withReleases: false });
    expect(tailBlock.test(await page(app, await failedBuild()))).toBe(true);
  });

  it('of a review run shows nothing of its logs, even if a tail were stored', async () => {
    const { app, releases, failedBuild } = await leader();
    const id = await failedBuild();
    await aRelease(releases, id, { policy: 'review' });
    const html = await page(app, id);
    expect(html).not.toContain('build-log-tail');
    expect(html).not.toContain('No matching distribution');
    expect(html).toContain('<dt>Build log</dt>');
  });

  it('to an anonymous reader of a private leader shows no log line; with the read token it does', async () => {
    const { app, releases, failedBuild } = await leader({ readToken: TOKEN });
    const id = await failedBuild();
    await aRelease(releases, id, { policy: 'direct', datasets: [] });
    const anonymous = await page(app, id);
    expect(anonymous).not.toContain('No matching distribution');
    expect(anonymous).not.toContain('build-log-tail');
    const main = (await app.inject({ method: 'GET', url: `/runs/${id}/main` })).json() as { html: string };
    expect(main.html).not.toContain('No matching distribution');
    expect(await page(app, id, { authorization: `Bearer ${TOKEN}` })).toContain('No matching distribution');
  });

  it('a build that failed without a tail (an older node) shows no empty block', async () => {
    const { app, failedBuild } = await leader();
    expect(await page(app, await failedBuild({ buildLogTail: '' }))).not.toContain('build-log-tail');
  });
});

describe('the run page says what the run is doing, as its commit status does', () => {
  it('running on its node with its GPUs and the time left of runfor', async () => {
    // The build started ten minutes ago (the store's clock), runfor is 3 h.
    const { app, runThrough } = await leader({ agoMs: 10 * 60_000 + 3000 });
    const id = await runThrough(['verified', 'queued', 'assigned', 'building', 'running'], {}, 'r-run');
    const html = await page(app, id);
    expect(html).toContain('<p class="lead" id="reason">running on gpu-03 (2× H100), 2 h 50 min left</p>');
  });

  it('building on its node', async () => {
    const { app, runThrough } = await leader();
    const html = await page(app, await runThrough(['verified', 'queued', 'assigned', 'building']));
    expect(html).toContain('<p class="lead" id="reason">building on gpu-03</p>');
  });

  it('an anonymous reader sees the node and GPUs, not the time left (the run’s config is hidden)', async () => {
    const { app, runThrough } = await leader({ readToken: TOKEN, agoMs: 10 * 60_000 });
    const id = await runThrough(['verified', 'queued', 'assigned', 'building', 'running'], {}, 'r-run');
    expect(await page(app, id)).toContain('<p class="lead" id="reason">running on gpu-03 (2× H100)</p>');
  });
});
