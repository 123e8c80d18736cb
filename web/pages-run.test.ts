/** The run page as a researcher reads it after a failed build or with secd.yml warnings. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase, type SqliteDatabase } from '../storage/database.js';
import { RunStore } from '../storage/run-store.js';
import type { RunState } from '../storage/run-states.js';
import { renderRunMain } from './pages.js';

let dir = '';
let db: SqliteDatabase | null = null;
afterEach(() => {
  db?.close();
  db = null;
  rmSync(dir, { recursive: true, force: true });
});

function aRun(path: RunState[], patch: { branch?: string; startedAt?: string; warnings?: string[] } = {}) {
  dir = mkdtempSync(join(tmpdir(), 'secd-pages-'));
  db = openDatabase(join(dir, 'secd.db'));
  let ms = Date.parse('2026-01-01T00:00:00Z');
  const store = new RunStore(db, () => new Date((ms += 1000)));
  store.createRun({ id: 'r1', projectId: 1, project: 'lab/x', ref: 'refs/heads/main', beforeSha: '0'.repeat(40), commit: 'a'.repeat(40), user: 'ada', userId: 1, deliveryKey: 'k', fetchUrl: 'x' });
  for (const state of path) {
    const t = store.transition('r1', state, state === 'failed' ? 'the image build failed: step 2 exited 1' : state, state === 'assigned' ? { node: 'gpu-03' } : {});
    if (!t.ok) throw new Error(`cannot go to ${state}: ${JSON.stringify(t)}`);
  }
  store.update('r1', patch);
  return { run: store.get('r1')!, events: store.events('r1') };
}

describe('the run page of a failed build', () => {
  it('shows no "Ran" row, even with a start time from the node, and says build.log is on the results branch', () => {
    const { run, events } = aRun(['verified', 'queued', 'assigned', 'building', 'failed'], { branch: 'secd-20260101-r1', startedAt: '2026-01-01T00:00:05.000Z' });
    const html = renderRunMain(run, events);
    expect(html).not.toContain('>Ran<');
    expect(html).toContain('>Build failed<');
    expect(html).toContain('<dt>Build log</dt><dd><code>_secd/build.log</code> on branch <code>secd-20260101-r1</code></dd>');
  });

  it('without a results branch it points at the node\'s kept folder', () => {
    const { run, events } = aRun(['verified', 'queued', 'assigned', 'building', 'failed']);
    expect(renderRunMain(run, events)).toContain('on node gpu-03, in <code>kept/r1/build.log</code>');
  });

  it('a run that did run keeps its "Ran" row and no build-log line', () => {
    const { run, events } = aRun(['verified', 'queued', 'assigned', 'building', 'running', 'failed']);
    const html = renderRunMain(run, events);
    expect(html).toContain('>Ran<');
    expect(html).not.toContain('<dt>Build log</dt>');
  });

  it('lists every secd.yml warning', () => {
    const warnings = ['secd.yml: unknown key "run_for" ignored (did you mean "runfor"?)', 'secd.yml: unknown key "notes" ignored'];
    const { run, events } = aRun(['verified', 'queued'], { warnings });
    const html = renderRunMain(run, events);
    expect(html).toContain('<dt>secd.yml warnings</dt>');
    expect(html).toContain('unknown key &quot;run_for&quot; ignored (did you mean &quot;runfor&quot;?)');
    expect(html).toContain('unknown key &quot;notes&quot; ignored');
  });
});
