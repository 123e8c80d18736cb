/**
 * `secd run <dir>`: run a project folder on this machine exactly as the cluster would — same
 * secd.yml rules, build, container profile and environment — with no GitLab. Outputs and logs land in
 * `<dir>/outputs/<stamp>-<run id>/`.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { userInfo } from 'node:os';
import { newRunId } from '../../storage/run-id.js';
import type { Log } from '../../scheduler/common/log.js';
import { resolveRunConfig } from '../../scheduler/policy/project-policy.js';
import type { UpConfig } from '../config/up-config.js';
import type { ContainerEngine } from '../engine/container-engine.js';
import { nodeExecutorDeps } from '../executor/node-executor.js';
import { executeRun } from '../executor/run-executor.js';
import { readHead } from '../results/node-git.js';
import { withImageSettings, type BuildOverrides } from './build-settings.js';
import { chooseLocalDatasets, type LocalDataset } from './local-datasets.js';
import type { RunOutcome } from '../../scheduler/contract/run-spec.js';

/** Where `secd run` writes what a person reads. */
export interface LocalRunOutput {
  line(text: string): void;
  raw(chunk: Buffer): void;
}

/** The end of a local run: its outcome, or a refusal before anything ran. */
export type LocalRunResult = { ok: true; runId: string; outcome: RunOutcome } | { ok: false; reason: string };

/** Run the project in `dir`. */
export async function runLocalProject(
  dir: string,
  config: UpConfig,
  deps: {
    engine: ContainerEngine;
    log: Log;
    out: LocalRunOutput;
    signal?: AbortSignal;
    now?: () => Date;
    build?: BuildOverrides;
    /** `--dataset NAME=DIR` folders (local-datasets.ts). */
    datasets?: readonly LocalDataset[];
  },
): Promise<LocalRunResult> {
  const now = deps.now ?? (() => new Date());
  const projectDir = resolve(dir);
  if (!existsSync(projectDir) || !statSync(projectDir).isDirectory()) return { ok: false, reason: `${dir} is not a folder` };
  if (!existsSync(join(projectDir, 'Dockerfile'))) {
    return { ok: false, reason: `no Dockerfile in ${dir}: secd builds the project's Dockerfile` };
  }
  const ymlPath = join(projectDir, 'secd.yml');
  const policy = resolveRunConfig(existsSync(ymlPath) ? readFileSync(ymlPath, 'utf8') : null, {
    maxRunforHours: config.limits.max_runfor_hours,
    maxGpusPerRun: config.limits.max_gpus_per_run,
    largestNodeGpus: 0,
  });
  if (!policy.ok) return { ok: false, reason: policy.reason };
  for (const warning of policy.warnings) deps.out.line(`secd: warning: ${warning}`);
  const served = chooseLocalDatasets(deps.datasets ?? [], policy.config.datasets ?? null);
  for (const note of served.notes) deps.out.line(`secd: note: ${note}`);

  const runId = newRunId();
  const spec = {
    runId,
    project: basename(projectDir),
    commit: (await readHead(projectDir)) ?? 'working-tree',
    source: projectDir,
    user: localUser(),
    signer: null,
    runforMs: policy.config.runforMs,
    gpus: [],
    cacheDir: policy.config.cacheDir,
    mountPath: policy.config.mountPath,
    env: served.env,
    warnings: policy.warnings,
    createdAt: now().toISOString(),
    resultsRemote: null,
  };
  const executor = withImageSettings(nodeExecutorDeps(config.node, config.limits, deps.engine, deps.log, now), config.node, deps.build);
  deps.out.line(`secd: run ${runId} of ${projectDir} (runfor ${policy.config.runforHours} h)`);
  const outcome = await executeRun(spec, executor, {
    onPhase: (phase) => deps.out.line(`secd: ${phase}`),
    onBuildLog: (line) => deps.out.line(line),
    onRunLog: (chunk) => deps.out.raw(chunk),
    local: { dir: projectDir, resultsRoot: join(projectDir, 'outputs'), datasets: served.datasets },
    ...(deps.signal ? { signal: deps.signal } : {}),
  });
  return { ok: true, runId, outcome };
}

function localUser(): string {
  const name = (process.env.SUDO_USER || userInfo().username || 'local').replace(/[^A-Za-z0-9._-]/g, '_');
  return name === '.' || name === '..' ? 'local' : name;
}
