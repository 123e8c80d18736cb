/** The run page as a researcher reads it after a failed build or with secd.yml warnings. */
import { afterEach, describe, expect, it } from 'vitest';
import type { RunState } from '../storage/run-states.js';
import { scratchStores, type ScratchStores } from '../test/support/scratch-state.js';
import { renderRunMain } from './pages.js';

let stores: ScratchStores | null = null;
afterEach(async () => {
  await stores?.dispose();
  stores = null;
});

async function aRun(path: RunState[], patch: { branch?: string; startedAt?: string; warnings?: string[] } = {}) {
  let ms = Date.parse('2026-01-01T00:00:00Z');
  stores = await scratchStores('sqlite', () => new Date((ms += 1000)));
  const store = stores.runs;
  await store.createRun({ id: 'r1', projectId: 1, project: 'lab/x', ref: 'refs/heads/main', beforeSha: '0'.repeat(40), commit: 'a'.repeat(40), user: 'ada', userId: 1, deliveryKey: 'k', fetchUrl: 'x' });
  for (const state of path) {
    const t = await store.transition('r1', state, state === 'failed' ? 'the image build failed: step 2 exited 1' : state, state === 'assigned' ? { node: 'gpu-03' } : {});
    if (!t.ok) throw new Error(`cannot go to ${state}: ${JSON.stringify(t)}`);
  }
  await store.update('r1', patch);
  return { run: (await store.get('r1'))!, events: await store.events('r1') };
}

describe('the run page of a failed build', () => {
  it('shows no "Ran" row, even with a start time from the node, and says build.log is on the results branch', async () => {
    const { run, events } = await aRun(['verified', 'queued', 'assigned', 'building', 'failed'], { branch: 'secd-20260101-r1', startedAt: '2026-01-01T00:00:05.000Z' });
    const html = renderRunMain(run, events);
    expect(html).not.toContain('>Ran<');
    expect(html).toContain('>Build failed<');
    expect(html).toContain('<dt>Build log</dt><dd><code>_secd/build.log</code> on branch <code>secd-20260101-r1</code></dd>');
  });

  it('without a results branch it points at the node\'s kept folder', async () => {
    const { run, events } = await aRun(['verified', 'queued', 'assigned', 'building', 'failed']);
    expect(renderRunMain(run, events)).toContain('on node gpu-03, in <code>kept/r1/build.log</code>');
  });

  it('a run that did run keeps its "Ran" row and no build-log line', async () => {
    const { run, events } = await aRun(['verified', 'queued', 'assigned', 'building', 'running', 'failed']);
    const html = renderRunMain(run, events);
    expect(html).toContain('>Ran<');
    expect(html).not.toContain('<dt>Build log</dt>');
  });

  it('lists every secd.yml warning', async () => {
    const warnings = ['secd.yml: unknown key "run_for" ignored (did you mean "runfor"?)', 'secd.yml: unknown key "notes" ignored'];
    const { run, events } = await aRun(['verified', 'queued'], { warnings });
    const html = renderRunMain(run, events);
    expect(html).toContain('<dt>secd.yml warnings</dt>');
    expect(html).toContain('unknown key &quot;run_for&quot; ignored (did you mean &quot;runfor&quot;?)');
    expect(html).toContain('unknown key &quot;notes&quot; ignored');
  });
});
