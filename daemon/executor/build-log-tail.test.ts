/**
 * Why a build failed, as the run page shows it: the result of a direct run's failed build carries the
 * last lines of its build.log; a review run's, a successful run's and a run that built carry none.
 * The executor runs on the fake engine (test/doubles/fake-container-engine.ts), its results in a folder.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLog } from '../../scheduler/common/log.js';
import { DEFAULT_DISCLOSURE_CHECKS } from '../../scheduler/contract/disclosure.js';
import { BUILD_LOG_TAIL_LINES, PROTOCOL_LIMITS, runOutcomeSchema } from '../../scheduler/contract/protocol.js';
import type { RunSpec } from '../../scheduler/contract/run-spec.js';
import { FakeContainerEngine } from '../../test/doubles/fake-container-engine.js';
import { aRunSpec, busyboxProject, testExecutorSettings } from '../../test/support/test-images.js';
import { buildLogTail, buildLogTailFor } from './build-log-tail.js';
import type { ExecutorDeps } from './executor-deps.js';
import { executeRun } from './run-executor.js';

describe('the build log tail', () => {
  it('is the last non-blank lines, without colour codes, each line cut short', () => {
    const lines = Array.from({ length: 30 }, (_, i) => `#${i} step ${i}`);
    const log = `${lines.join('\n')}\n\n\u001b[31mERROR: failed to solve\u001b[0m\r\n${'x'.repeat(1000)}\n`;
    const tail = buildLogTail(Buffer.from(log)).split('\n');
    expect(tail).toHaveLength(BUILD_LOG_TAIL_LINES);
    expect(tail.at(-2)).toBe('ERROR: failed to solve');
    expect(tail.at(-1)).toHaveLength(300);
    expect(tail[0]).toBe('#12 step 12');
  });

  it('never says the token of the clone URL, and stays within the protocol limit', () => {
    const tail = buildLogTailFor({ source: 'https://oauth2:glpat-sekret123@gitlab.example.org/lab/x.git', resultsRemote: null }, Buffer.from('fatal: could not read from https://oauth2:glpat-sekret123@gitlab.example.org/lab/x.git\nglpat-sekret123 again\n'));
    expect(tail).not.toContain('glpat-sekret123');
    expect(tail).toContain('https://***@gitlab.example.org/lab/x.git');
    const long = buildLogTail('y'.repeat(299).concat('\n').repeat(40));
    expect(long.length).toBeLessThanOrEqual(PROTOCOL_LIMITS.buildLogTail);
  });

  it('of an empty log is empty', () => {
    expect(buildLogTail(Buffer.alloc(0))).toBe('');
  });
});

describe('the result of a run', () => {
  let root: string;
  let engine: FakeContainerEngine;
  let deps: ExecutorDeps;
  const now = new Date('2026-03-05T14:07:09.000Z');

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'secd-build-tail-'));
    engine = new FakeContainerEngine({ now: () => now });
    deps = { engine, log: silentLog, now: () => now, settings: testExecutorSettings(root), ensureBaseImage: () => Promise.reject(new Error('unused')) };
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  async function run(spec: RunSpec) {
    const dir = join(root, 'project');
    await mkdir(dir, { recursive: true });
    for (const [name, content] of Object.entries(busyboxProject('echo hi\n'))) await writeFile(join(dir, name), content);
    return executeRun(spec, deps, { onPhase: () => undefined, local: { dir, resultsRoot: join(root, 'results') } });
  }

  it('of a direct run whose build failed carries the last build.log lines, and parses as a result', async () => {
    engine.scriptBuild({ outcome: 'fail', reason: 'unknown instruction: RUNN', log: ['Step 1/3 : FROM secd-test/busybox:1'] });
    const outcome = await run(aRunSpec('tail1', { release: { policy: 'direct', checks: DEFAULT_DISCLOSURE_CHECKS } }));
    expect(outcome.buildLogTail).toBe('Step 1/3 : FROM secd-test/busybox:1\nERROR: unknown instruction: RUNN\n[secd] docker build failed: unknown instruction: RUNN');
    expect(runOutcomeSchema.parse(outcome).buildLogTail).toBe(outcome.buildLogTail);
  });

  it('of a review run whose build failed carries none: its logs wait for review with its outputs', async () => {
    engine.scriptBuild({ outcome: 'fail', reason: 'unknown instruction: RUNN', log: ['Step 1/3 : FROM secd-test/busybox:1'] });
    const outcome = await run(aRunSpec('tail2', { release: { policy: 'review', checks: DEFAULT_DISCLOSURE_CHECKS } }));
    expect(outcome).toMatchObject({ end: 'failed', imageId: null });
    expect(outcome.buildLogTail).toBeUndefined();
  });

  it('of a run that built carries none, even when its container failed', async () => {
    engine.scriptContainer({ exitCode: 3, log: 'boom\n' });
    const outcome = await run(aRunSpec('tail3'));
    expect(outcome).toMatchObject({ end: 'failed', exitCode: 3 });
    expect(outcome.buildLogTail).toBeUndefined();
  });
});
