/**
 * What the leader's web surface shows of output release (DESIGN §10), through the real server with
 * app.inject over real run and release stores (in-memory SQLite): the API's release object, the findings
 * on one run, the run page's Output release section, the status page's held runs — and what an
 * anonymous reader of a private leader no longer learns from them.
 */
import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLog } from '../scheduler/common/log.js';
import type { RunLifecycle } from '../scheduler/lifecycle/run-lifecycle.js';
import { memoryStores } from '../test/support/scratch-state.js';
import { aRelease, aRun } from '../test/support/status-page-fixtures.js';
import { apiRunDetailSchema, apiRunsAnswerSchema } from './api-schema.js';
import { buildLeaderServer } from './leader-server.js';

const TOKEN = 'read-token-0123456789abcdef';
const MR = 'https://gitlab.example/secd/output-review/-/merge_requests/4';
const FINDINGS = [
  { file: 'patients<script>alert(1)</script>.csv', rule: 'forbidden_column', detail: 'column 2 "patient_id" is forbidden' },
  { file: 'counts.csv', rule: 'small_cell', detail: 'row 7, column "n": a count below 10' },
];

const apps: FastifyInstance[] = [];
const opened: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  for (const app of apps.splice(0)) await app.close();
  for (const s of opened.splice(0)) await s.close();
});

async function stores() {
  const s = await memoryStores();
  opened.push(s);
  return s;
}

async function leader(readToken: string | null = null) {
  const { runs: store, releases } = await stores();
  const app = buildLeaderServer({ store, lifecycle: {} as RunLifecycle, log: silentLog, intake: null, healthy: async () => true, nodes: async () => [], releases, readToken });
  apps.push(app);
  const held = await aRun(store, { state: 'held', user: 'alice-researcher', project: 'oncology/tumour', node: 'gpu-01' });
  await aRelease(releases, held.id, { approvalsRequired: 2, datasets: ['tumour_registry'], findings: FINDINGS, approvedBy: ['bob-checker'], mrUrl: MR });
  const queued = await aRun(store, { state: 'queued' });
  const released = await aRun(store, { state: 'succeeded', user: 'alice-researcher' });
  await aRelease(releases, released.id, { approvedBy: ['bob-checker', 'carol-checker'], mrUrl: MR, outcome: 'released' });
  const withheld = await aRun(store, { state: 'withheld' });
  await aRelease(releases, withheld.id, { approvedBy: ['bob-checker'], mrUrl: MR, outcome: 'withheld', decidedBy: 'olga-owner' });
  const direct = await aRun(store, { state: 'succeeded' });
  await aRelease(releases, direct.id, { policy: 'direct', approvalsRequired: 2, datasets: [], findings: [FINDINGS[1]!] });
  return { app, held, queued, released, withheld, direct };
}

const get = async (app: FastifyInstance, url: string, headers: Record<string, string> = {}) => {
  const res = await app.inject({ method: 'GET', url, headers });
  expect(res.statusCode, url).toBe(200);
  return res;
};

describe('output release in the API', () => {
  it('lists each run with its release: a held run has 1 of 2 approvals, its reviewer, its merge request and how many findings', async () => {
    const { app, held, queued, withheld } = await leader();
    const answer = apiRunsAnswerSchema.parse((await get(app, '/api/v1/runs')).json());
    const byId = new Map(answer.runs.map((r) => [r.id, r]));
    expect(byId.get(held.id)).toMatchObject({
      state: 'held',
      release: { policy: 'review', approvals_required: 2, approvals: 1, reviewers: ['bob-checker'], review_url: MR, findings: 2, outcome: null },
    });
    expect(byId.get(queued.id)?.release).toBeNull();
    expect(byId.get(withheld.id)?.release).toMatchObject({ outcome: 'withheld', decided_by: 'olga-owner' });
    // The list carries counts, not the findings themselves.
    expect(JSON.stringify(answer)).not.toContain('patient_id');
  });

  it('shows one run with every finding: file, rule and detail', async () => {
    const { app, held } = await leader();
    const run = apiRunDetailSchema.parse((await get(app, `/api/v1/runs/${held.id}`)).json());
    expect(run.release?.disclosure).toEqual(FINDINGS);
    expect(run.release?.findings).toBe(2);
    expect(run.events.at(-1)?.to).toBe('held');
  });

  it('an anonymous reader of a private leader sees the policy, counts, outcome and rules, never who reviewed, the merge request or which files', async () => {
    const { app, held, withheld } = await leader(TOKEN);
    const list = apiRunsAnswerSchema.parse((await get(app, '/api/v1/runs')).json());
    expect(list.runs.find((r) => r.id === held.id)?.release).toMatchObject({ policy: 'review', approvals: 1, approvals_required: 2, findings: 2, reviewers: ['(hidden)'], review_url: null });
    expect(list.runs.find((r) => r.id === withheld.id)?.release).toMatchObject({ outcome: 'withheld', decided_by: '(hidden)' });
    const one = apiRunDetailSchema.parse((await get(app, `/api/v1/runs/${held.id}`)).json());
    expect(one.release?.disclosure.map((f) => [f.file, f.rule, f.detail])).toEqual([
      ['(hidden)', 'forbidden_column', '(hidden)'],
      ['(hidden)', 'small_cell', '(hidden)'],
    ]);
    const pages = [(await get(app, `/runs/${held.id}`)).body, (await get(app, `/runs/${held.id}/main`)).body, (await get(app, `/runs/${withheld.id}`)).body];
    const seen = [JSON.stringify(list), JSON.stringify(one), ...pages].join('\n');
    for (const secret of ['bob-checker', 'olga-owner', 'merge_requests', 'patients', 'counts.csv', 'patient_id', 'tumour_registry', 'alice-researcher']) {
      expect(seen, secret).not.toContain(secret);
    }
    expect(pages[0]).toContain('held for review: 1/2 approvals');
    // The token shows everything.
    const full = apiRunDetailSchema.parse((await get(app, `/api/v1/runs/${held.id}`, { authorization: `Bearer ${TOKEN}` })).json());
    expect(full.release?.reviewers).toEqual(['bob-checker']);
    expect(full.release?.disclosure).toEqual(FINDINGS);
  });
});

describe('output release on the run page', () => {
  it('a held run says how many approvals it has, links its merge request and lists its findings, escaped', async () => {
    const { app, held } = await leader();
    const html = (await get(app, `/runs/${held.id}`)).body;
    expect(html).toMatch(/<h1>Run <code>run\d+<\/code> <span class="pill state-held">held<\/span><\/h1>/);
    expect(html).toContain('review: 2 approvals from output checkers');
    expect(html).toContain('<code>tumour_registry</code>');
    expect(html).toContain(`held for review: 1/2 approvals — <a href="${MR}" rel="noreferrer">`);
    expect(html).toMatch(/Approved by<\/dt><dd><ul class="plain" id="approvals"><li>bob-checker /);
    expect(html).toContain('<th scope="row" class="mono">patients&lt;script&gt;alert(1)&lt;/script&gt;.csv</th><td>forbidden_column</td><td class="reason">column 2 &quot;patient_id&quot; is forbidden</td>');
    expect(html).not.toContain('<script>alert(1)');
    expect(html).toContain('none yet: the outputs wait for review');
    // Still held: the page keeps itself current, so approvals show up as they come.
    expect(html).toContain('data-live="true"');
  });

  it('once decided it shows the outcome and the reviewers', async () => {
    const { app, released, withheld, direct } = await leader();
    expect((await get(app, `/runs/${released.id}`)).body).toContain('released after review by bob-checker, carol-checker at <time');
    const w = (await get(app, `/runs/${withheld.id}`)).body;
    expect(w).toContain('<span class="pill state-withheld">withheld</span>');
    expect(w).toContain('withheld at review by olga-owner at <time');
    expect(w).toContain('none: the outputs were withheld at review');
    const d = (await get(app, `/runs/${direct.id}`)).body;
    expect(d).toContain("direct: outputs go straight to the project's results branch; release.default (the run was given no dataset)");
    expect(d).toContain('1 finding of the automated checks (reported only: this run was released directly)');
    expect(d).not.toContain('id="review"');
  });

  it('a run with no release record has no release section, and a clean run says its outputs passed', async () => {
    const { app, queued, released } = await leader();
    expect((await get(app, `/runs/${queued.id}`)).body).not.toContain('Output release');
    expect((await get(app, `/runs/${released.id}`)).body).toContain('None: every output passed the automated checks.');
  });

  it('a merge request URL that is not http(s) is shown as text, never as a link', async () => {
    const { runs: store, releases } = await stores();
    const app = buildLeaderServer({ store, lifecycle: {} as RunLifecycle, log: silentLog, intake: null, healthy: async () => true, nodes: async () => [], releases });
    apps.push(app);
    const run = await aRun(store, { state: 'held' });
    await aRelease(releases, run.id, { mrUrl: 'javascript:alert(1)' });
    const html = (await get(app, `/runs/${run.id}`)).body;
    expect(html).not.toContain('href="javascript:');
    expect(html).toContain('(merge request: javascript:alert(1))');
  });
});

describe('output release on the status page', () => {
  it('lists held runs with their approval count and nothing of their files, findings or reviewers', async () => {
    const { app, held } = await leader();
    const status = (await get(app, '/api/v1/status')).json() as { held: Array<{ id: string; state: string; review: unknown }>; held_total: number; recent: Array<{ id: string; review: unknown }> };
    expect(status.held_total).toBe(1);
    expect(status.held.map((r) => [r.id, r.state, r.review])).toEqual([[held.id, 'held', { approvals: 1, approvals_required: 2 }]]);
    // Recent runs carry the count for a held run only.
    expect(status.recent.filter((r) => r.review !== null).map((r) => r.id)).toEqual([held.id]);
    const text = JSON.stringify(status);
    for (const secret of ['patients', 'counts.csv', 'patient_id', 'small_cell', 'bob-checker', 'merge_requests', 'tumour_registry']) expect(text, secret).not.toContain(secret);
  });
});

describe('merge-request hooks at /v1/hook', () => {
  const sample = JSON.parse(readFileSync(new URL('../test/fixtures/gitlab/merge_request_event_webhook.json', import.meta.url), 'utf8')) as Record<string, unknown>;
  const hook = (app: FastifyInstance, body: unknown, token = 'hook-secret') =>
    app.inject({ method: 'POST', url: '/v1/hook', headers: { 'x-gitlab-token': token, 'x-gitlab-event': 'Merge Request Hook', 'content-type': 'application/json' }, payload: JSON.stringify(body) });
  // The lifecycle's part: which held run the merge request reviews (it reads the review from GitLab itself).
  const withHandler = async (onMergeRequestEvent: (projectId: number, iid: number) => Promise<{ run_id: string | null }>) => {
    const app = buildLeaderServer({
      store: (await stores()).runs,
      lifecycle: { onMergeRequestEvent } as unknown as RunLifecycle,
      log: silentLog,
      intake: { webhookSecret: 'hook-secret', runBranch: 'main' },
      healthy: async () => true,
      nodes: async () => [],
    });
    apps.push(app);
    return app;
  };

  it('hands the merge request named by a hook to the lifecycle, which says which held run it reviews', async () => {
    const asked: Array<[number, number]> = [];
    const app = await withHandler(async (projectId, iid) => {
      asked.push([projectId, iid]);
      return { run_id: iid === 1 ? 'run0000301' : null };
    });
    const res = await hook(app, sample);
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ action: 'review_checked', held_run: 'run0000301' });
    expect(asked).toEqual([[1, 1]]);
    const other = await hook(app, { ...sample, object_attributes: { ...(sample.object_attributes as object), iid: 9 } });
    expect(other.json()).toMatchObject({ action: 'ignored', reason: 'merge request !9 of project 1 reviews no held run' });
  });

  it('a hook with a wrong token or without an iid reaches nothing', async () => {
    const asked: number[] = [];
    const app = await withHandler(async (_p, iid) => (asked.push(iid), { run_id: null }));
    expect((await hook(app, sample, 'guess')).statusCode).toBe(401);
    const bad = await hook(app, { ...sample, object_attributes: {} });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error).toContain('body.object_attributes.iid');
    expect(asked).toEqual([]);
  });
});
