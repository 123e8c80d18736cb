/**
 * The webhook benchmark's honest setup: the GitLab double in a process of its own
 * (test/support/gitlab-double-process.ts), the leader (`secd leader`'s wiring, no in-process node) in
 * this process where its event loop can be watched, and the webhook sender in a third
 * (hook-client.ts). What the leader's loop does during a burst is then secd's work alone: its
 * verification's git spawns and fetches, its SQLite writes, its commit-status posts and GitLab
 * calls — not the double's `git http-backend` spawns and answers, which a real GitLab does elsewhere.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseLeaderConfig } from '../../daemon/config/leader-config.js';
import { createDockerEngine } from '../../daemon/engine/docker-engine.js';
import { startLeader, type RunningLeader, type StartLeaderOptions } from '../../daemon/wiring/leader.js';
import type { Log } from '../../scheduler/common/log.js';
import type { RecordedDelivery } from '../doubles/gitlab-double.js';
import { startRemoteGitLabDouble, type RemoteGitLabDouble } from '../support/remote-gitlab-double.js';

/** A leader in this process and its GitLab double in another. */
export interface SplitLeader {
  leader: RunningLeader;
  gitlab: RemoteGitLabDouble;
  /** A researcher's signed push of `files` (no Dockerfile: the run is rejected at policy); its deliveries. */
  push(files: Record<string, string>, message: string): Promise<RecordedDelivery[]>;
  /** Wait until the double has sent everything and the leader finished the work it started. */
  settle(): Promise<void>;
  close(): Promise<void>;
}

const SECRET = 'hook-secret-for-bench';

/** Start the double's process, then a leader on it with `log` (and `intakeGate`, when given), then a researcher. */
export async function startSplitLeader(log: Log, intakeGate?: StartLeaderOptions['intakeGate']): Promise<SplitLeader> {
  const root = await mkdtemp(join(tmpdir(), 'secd-bench-split-'));
  const gitlab = await startRemoteGitLabDouble();
  let leader: RunningLeader | null = null;
  try {
    const text = [
      'listen: 127.0.0.1:0',
      'public_url: http://127.0.0.1:1',
      `data_dir: ${join(root, 'leader')}`,
      'gitlab:',
      `  url: ${gitlab.url}`,
      `  token: ${gitlab.token}`,
      `  webhook_secret: ${SECRET}`,
    ].join('\n');
    const config = parseLeaderConfig(text, join(root, 'leader.yml'), {});
    leader = await startLeader(config, { log, engine: createDockerEngine(), localNode: null, say: () => {}, ...(intakeGate ? { intakeGate } : {}) });
    await gitlab.call('addWebhook', { url: `${leader.url}/v1/hook`, secret: SECRET, kind: 'system' });
    await gitlab.call('addResearcher', { username: 'latency', project: 'bench/latency' });
  } catch (err) {
    await leader?.close();
    await gitlab.close();
    await rm(root, { recursive: true, force: true });
    throw err;
  }
  const running = leader;
  const settle = async () => {
    for (let i = 0; i < 3; i++) {
      await gitlab.call('idle', {});
      await running.lifecycle.idle();
    }
  };
  return {
    leader: running,
    gitlab,
    push: (files, message) => gitlab.call('pushRun', { username: 'latency', files, message }),
    settle,
    async close() {
      await running.close();
      await gitlab.close();
      await rm(root, { recursive: true, force: true });
    },
  };
}
