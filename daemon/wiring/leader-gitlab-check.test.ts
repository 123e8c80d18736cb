import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLog } from '../../scheduler/common/log.js';
import { startGitLabDouble, type GitLabDouble } from '../../test/doubles/gitlab-double.js';
import { parseLeaderConfig } from '../config/leader-config.js';
import type { ContainerEngine } from '../engine/container-engine.js';
import { startLeader, type RunningLeader } from './leader.js';

let dir = '';
let gitlab: GitLabDouble | null = null;
let leader: RunningLeader | null = null;

afterEach(async () => {
  await leader?.close();
  await gitlab?.close();
  leader = null;
  gitlab = null;
  await rm(dir, { recursive: true, force: true });
});

async function leaderWithToken(token: string): Promise<{ leader: RunningLeader; said: string[] }> {
  dir = await mkdtemp(join(tmpdir(), 'secd-leader-gitlab-'));
  gitlab = await startGitLabDouble({ token: 'glpat-the-right-one' });
  const text = [
    'listen: 127.0.0.1:0',
    'public_url: https://secd.example.org/',
    `data_dir: ${dir}`,
    'gitlab:',
    `  url: ${gitlab.url}`,
    `  token: ${token}`,
    '  webhook_secret: s3cret',
  ].join('\n');
  const config = parseLeaderConfig(text, join(dir, 'leader.yml'), {}, { baseDir: dir });
  const said: string[] = [];
  // No run is started here, so the engine is never reached.
  leader = await startLeader(config, { log: silentLog, engine: {} as ContainerEngine, localNode: null, say: (l) => said.push(l) });
  await leader.gitlabWatches?.token?.check();
  return { leader, said };
}

describe('a leader checks its GitLab token at start', () => {
  it('a wrong token: the leader still starts, says why on stderr, and /healthz shows it', async () => {
    const { leader, said } = await leaderWithToken('glpat-a-wrong-one');
    expect(said.join('\n')).toContain('refused gitlab.token (401): the token is wrong, revoked or expired');
    const health = await fetch(`${leader.url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ ok: true, gitlab: { state: 'failing', problem: 'token_refused' } });
  });

  it('the right token: /healthz names the user and nothing is said on stderr', async () => {
    const { leader, said } = await leaderWithToken('glpat-the-right-one');
    expect(said).toEqual([]);
    expect(await (await fetch(`${leader.url}/healthz`)).json()).toMatchObject({ ok: true, gitlab: { state: 'ok', user: 'secd-bot' } });
  });

  it('a request to /v1/hook, even with a wrong secret, counts as GitLab reaching the leader', async () => {
    const { leader } = await leaderWithToken('glpat-the-right-one');
    expect(leader.gitlabWatches?.hook.lastDelivery()).toBeNull();
    await fetch(`${leader.url}/v1/hook`, { method: 'POST', headers: { 'x-gitlab-token': 'nope', 'content-type': 'application/json' }, body: '{}' });
    expect(leader.gitlabWatches?.hook.lastDelivery()).toBeInstanceOf(Date);
  });
});
