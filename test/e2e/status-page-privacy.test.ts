/**
 * Who runs what (issue 13, finding 10): anyone on the network could read from the leader which
 * researcher pushed which project when. With leader.yml `api.read_token` set, a reader without it
 * asks every endpoint and page that shows runs and learns states, nodes and times only; the token
 * (as a bearer header or the browser cookie) shows everything, and `secd status` keeps working.
 * Without a token everything stays public, as before. Real HTTP against the real leader server.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { fetchStatus } from '../../daemon/commands/status-command.js';
import { silentLog } from '../../scheduler/common/log.js';
import type { RunLifecycle } from '../../scheduler/lifecycle/run-lifecycle.js';
import { buildLeaderServer } from '../../web/leader-server.js';
import { StatusFeed } from '../../web/status-feed.js';
import { scratchStores } from '../support/scratch-state.js';
import { aNode, aRun } from '../support/status-page-fixtures.js';

const TOKEN = 'c0ffee5eed0ddba11c0ffee5eed0ddba11';
const SECRETS = ['alice-researcher', 'oncology/tumour-model', 'deadbeefcafe'];

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function startLeader(readToken: string | null) {
  const stores = await scratchStores('sqlite');
  const store = stores.runs;
  const nodes = async () => [aNode('gpu-01', 2)];
  const feed = new StatusFeed({ nodes, store, now: () => new Date() });
  const app = buildLeaderServer({ store, lifecycle: {} as RunLifecycle, log: silentLog, intake: null, healthy: async () => true, nodes, status: feed, readToken });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  const url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  cleanups.push(async () => {
    feed.close();
    await app.close();
    await stores.dispose();
  });
  const run = await aRun(store, { state: 'failed', user: 'alice-researcher', project: 'oncology/tumour-model', node: 'gpu-01', reason: 'oncology/tumour-model: exit 1' });
  await store.createRun({ id: 'queued0001', projectId: 1, project: 'oncology/tumour-model', ref: 'refs/heads/main', beforeSha: '0'.repeat(40), commit: 'deadbeefcafe'.padEnd(40, '0'), user: 'alice-researcher', userId: 1, deliveryKey: null, fetchUrl: 'x' });
  await feed.tick(true);
  return { url, runId: run.id };
}

/** Everything a reader gets from the endpoints and pages that show runs, as one text. */
async function readAll(url: string, runId: string, headers: Record<string, string> = {}): Promise<string> {
  const get = async (path: string) => {
    const res = await fetch(`${url}${path}`, { headers });
    expect(res.status, path).toBe(200);
    return res.text();
  };
  const texts = await Promise.all(['/api/v1/runs', `/api/v1/runs/${runId}`, '/api/v1/status', `/runs/${runId}`, `/runs/${runId}/main`].map(get));
  return [...texts, await firstEvent(url, headers)].join('\n');
}

/** The snapshot the live stream starts with. */
async function firstEvent(url: string, headers: Record<string, string>): Promise<string> {
  const ac = new AbortController();
  const res = await fetch(`${url}/api/v1/events`, { headers, signal: ac.signal });
  const reader = res.body!.getReader();
  let text = '';
  while (!text.includes('event: snapshot\ndata: ') || !text.endsWith('\n\n')) text += new TextDecoder().decode((await reader.read()).value);
  ac.abort();
  return text;
}

describe('who pushed which project, on a leader with a read token', () => {
  it('an anonymous reader sees states, nodes and times, and never the researcher, project, commit or reason', async () => {
    const { url, runId } = await startLeader(TOKEN);
    const seen = await readAll(url, runId);
    for (const secret of SECRETS) expect(seen).not.toContain(secret);
    expect(seen).toContain('(hidden)');
    const runs = (await (await fetch(`${url}/api/v1/runs`)).json()) as { runs: Array<{ id: string; state: string; node: string | null }> };
    expect(runs.runs.map((r) => [r.id, r.state, r.node]).sort()).toEqual([
      ['queued0001', 'received', null],
      [runId, 'failed', 'gpu-01'],
    ].sort());
  });

  it('the token, as a bearer header or once in the page address, shows everything', async () => {
    const { url, runId } = await startLeader(TOKEN);
    const seen = await readAll(url, runId, { authorization: `Bearer ${TOKEN}` });
    for (const secret of SECRETS) expect(seen).toContain(secret);

    const wrong = await fetch(`${url}/?read_token=guess-guess-guess-guess`, { redirect: 'manual' });
    expect(wrong.status).toBe(401);
    const given = await fetch(`${url}/runs/${runId}?read_token=${TOKEN}`, { redirect: 'manual' });
    expect(given.status).toBe(303);
    expect(given.headers.get('location')).toBe(`/runs/${runId}`);
    const cookie = given.headers.get('set-cookie') ?? '';
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/SameSite=Strict/);
    const page = await (await fetch(`${url}/runs/${runId}`, { headers: { cookie: cookie.split(';')[0]! } })).text();
    expect(page).toContain('alice-researcher');
  });

  it('secd status still lists the nodes and runs, with who pushed what hidden', async () => {
    const { url } = await startLeader(TOKEN);
    const status = await fetchStatus(url, 20);
    expect(status.ok).toBe(true);
    if (!status.ok) return;
    expect(status.nodes.map((n) => n.id)).toEqual(['gpu-01']);
    expect(status.runs.map((r) => [r.state, r.user, r.project]).sort()).toEqual([
      ['failed', '(hidden)', '(hidden)'],
      ['received', '(hidden)', '(hidden)'],
    ]);
  });
});

describe('who pushed which project, on a leader without a read token (secd up, the default)', () => {
  it('everyone sees everything, as before', async () => {
    const { url, runId } = await startLeader(null);
    const seen = await readAll(url, runId);
    for (const secret of SECRETS) expect(seen).toContain(secret);
    expect(seen).not.toContain('(hidden)');
  });
});
