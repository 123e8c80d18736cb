/**
 * A node killed at a named failpoint and started again, in one test process, with the fake engine
 * and real git (a bare repository stands in for the researcher's project on GitLab).
 *
 * The kill: each node "life" runs inside its own AsyncLocalStorage context, so the failpoint handler
 * knows whose code passes a point. When the chosen point is passed the n-th time, the handler copies
 * the node's work dir as it is at that instant (what SIGKILL leaves on disk: every awaited write is
 * there, nothing after), halts the life's engine connection (its pending and later engine calls never
 * return, as for a dead process) and throws a Crash; from then on that life throws a Crash at every
 * point it passes, so it stops at its next step boundary. Nothing it does after the kill can reach the
 * next life: its work dir is not the copy, and its engine connection is dead. The remote is checked to
 * be as the kill left it before the next life starts.
 *
 * The next life is a new NodeRuns on the copy and a new connection to the same engine state: it
 * recovers, as a restarted daemon does, and the test asserts on what it reports.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { execFileSync } from 'node:child_process';
import { cpSync } from 'node:fs';
import { join } from 'node:path';
import { armFailpoints } from '../../scheduler/common/failpoints.js';
import { silentLog } from '../../scheduler/common/log.js';
import type { RunOutcome } from '../../scheduler/contract/run-spec.js';
import type { ExecutorDeps } from '../../daemon/executor/executor-deps.js';
import { NodeRuns } from '../../daemon/node/node-runs.js';
import type { FakeContainerEngine } from '../doubles/fake-container-engine.js';
import { testExecutorSettings } from './test-images.js';

/** The in-process stand-in for SIGKILL: thrown at the point, and at every point the dead life passes after it. */
export class Crash extends Error {
  constructor(readonly point: string) {
    super(`killed at ${point}`);
    this.name = 'Crash';
  }
}

/** One node daemon on `root`'s work dir over `engine`, and what it told the leader. */
export function aNodeLife(root: string, engine: FakeContainerEngine, now: () => Date) {
  const deps: ExecutorDeps = {
    engine,
    log: silentLog,
    now,
    settings: testExecutorSettings(root),
    ensureBaseImage: () => Promise.reject(new Error('these projects do not use secd/base')),
  };
  const runs = new NodeRuns({ executor: deps, workDir: deps.settings.workDir, log: silentLog });
  const results: Array<[string, RunOutcome]> = [];
  runs.attach({ phase: () => {}, result: (runId, outcome) => results.push([runId, outcome]) });
  return { runs, results, workDir: deps.settings.workDir };
}

/** How the harness's failpoint handler treats the code of one life. */
interface LifeContext {
  /** `name@hit` of every point passed, in order. */
  passed: string[];
  seen: Map<string, number>;
  /** The point to die at, and what to do at that instant. */
  kill: { point: string; atKill(): void } | null;
  dead: boolean;
}

const lives = new AsyncLocalStorage<LifeContext>();

/**
 * Arm the harness's failpoint handler for a test file (returns the disarm for afterAll). It stays
 * armed for the whole file: a killed life must keep throwing at every point it passes, for good.
 */
export function armNodeLives(): () => void {
  return armFailpoints((name) => {
    const life = lives.getStore();
    if (life === undefined) return;
    if (life.dead) throw new Crash(name);
    const hit = (life.seen.get(name) ?? 0) + 1;
    life.seen.set(name, hit);
    const point = `${name}@${hit}`;
    life.passed.push(point);
    // `next`: whatever point the life passes first (a restarted node killed as soon as it carries on).
    if (life.kill?.point !== point && life.kill?.point !== 'next') return;
    life.kill.point = point;
    life.kill.atKill();
    life.dead = true;
    throw new Crash(name);
  });
}

/** Run `fn` as one life (its code's failpoints counted apart from any other's), and say which points it passed. */
export async function asLife(fn: () => Promise<void>): Promise<string[]> {
  const life: LifeContext = { passed: [], seen: new Map(), kill: null, dead: false };
  await lives.run(life, fn);
  return life.passed;
}

/** What one kill round left: the next life's root, or null when the point was never reached. */
export interface KillRound {
  /** Where the copy of the work dir at the kill lives (pass to aNodeLife). */
  nextRoot: string | null;
  /** The point it died at (`name@hit`). */
  point: string;
}

/**
 * Run `first` (a life's start: assign or recover) until `point` (`name@hit`, or `next`: the first
 * point it passes) is passed, kill it there
 * and copy its work dir under `nextRoot`. Resolves once it died, or once it finished without passing
 * the point (then `nextRoot` is null). Throws when the dead life changed the remote after its kill.
 */
export async function killAt(
  point: string,
  life: { engine: FakeContainerEngine; workDir: string; runs: { idle(): Promise<void> } },
  first: () => Promise<void>,
  nextRoot: string,
  remoteDir: string,
): Promise<KillRound> {
  let refsAtKill = '';
  let died!: () => void;
  const death = new Promise<'died'>((resolve) => (died = () => resolve('died')));
  const ctx: LifeContext = {
    passed: [],
    seen: new Map(),
    dead: false,
    kill: {
      point,
      atKill: () => {
        // The instant of the kill: the disk and the remote as they are now.
        cpSync(life.workDir, join(nextRoot, 'work'), { recursive: true, verbatimSymlinks: true });
        refsAtKill = refsOf(remoteDir);
        life.engine.halt();
        died();
      },
    },
  };
  const ended = await lives.run(ctx, async () => {
    await first();
    return Promise.race([death, life.runs.idle().then(() => 'finished' as const)]);
  });
  if (ended === 'finished' && !ctx.dead) return { nextRoot: null, point };
  // Let the dead life run into its next point, then check it left the remote alone.
  await new Promise((resolve) => setTimeout(resolve, 20));
  const refsNow = refsOf(remoteDir);
  if (refsNow !== refsAtKill) throw new Error(`the killed node changed the remote after ${point}:\n${refsAtKill}\n---\n${refsNow}`);
  return { nextRoot, point: ctx.kill!.point };
}

function refsOf(remoteDir: string): string {
  return execFileSync('git', ['for-each-ref', '--format=%(refname) %(objectname)'], { cwd: remoteDir, encoding: 'utf8', env: { PATH: process.env.PATH ?? '', GIT_CONFIG_NOSYSTEM: '1', HOME: remoteDir } });
}

/** The results branches on the remote (`refs/heads/secd-*`), name -> commit. */
export function resultsBranches(remoteDir: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of refsOf(remoteDir).split('\n')) {
    const [ref, sha] = line.split(' ');
    if (ref?.startsWith('refs/heads/secd-') && sha) out.set(ref.slice('refs/heads/'.length), sha);
  }
  return out;
}
