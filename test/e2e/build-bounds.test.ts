/**
 * Finding 5 of the security review, for real on Docker: a build's RUN step is bounded in processes.
 * The legacy builder gives its step containers no pids limit and root ignores RLIMIT_NPROC, so the
 * bound is the cgroup they are made under (node.yml `build.cgroup_parent`), whose pids limit the
 * sysadmin sets. Here the test is that sysadmin: it makes a cgroup with pids.max 100 (cgroup v1's
 * pids controller, as on this machine; v2 where that is what runs), and a step that tries to start
 * 400 `sleep 30` gets under 100 of them, where the same step without the parent starts all 400.
 * Skipped where this process cannot make cgroups (not root, or a layout it does not know).
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, rmdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUSYBOX_IMAGE, ensureBusyboxImage } from '../support/test-images.js';
import type { ContainerEngine } from '../../daemon/engine/container-engine.js';
import { createDockerEngine } from '../../daemon/engine/docker-engine.js';

const marker = randomBytes(4).toString('hex');
const parent = `/secd-test-build-${marker}`;
const PIDS_MAX = 100;
const TRIES = 400;
// cgroup v1 keeps pids in its own hierarchy; v2 has one, with pids.max in each cgroup.
const pidsRoot = existsSync('/sys/fs/cgroup/pids') ? '/sys/fs/cgroup/pids' : existsSync('/sys/fs/cgroup/cgroup.controllers') ? '/sys/fs/cgroup' : null;
const canMakeCgroups = pidsRoot !== null && process.getuid?.() === 0;
const tags: string[] = [];
let root: string;

beforeAll(async () => {
  if (!canMakeCgroups) return;
  root = await mkdtemp(join(tmpdir(), 'secd-build-bounds-'));
  await mkdir(join(pidsRoot!, parent));
  await writeFile(join(pidsRoot!, parent, 'pids.max'), `${PIDS_MAX}\n`);
  await ensureBusyboxImage(createDockerEngine());
}, 120_000);

afterAll(async () => {
  if (!canMakeCgroups) return;
  const engine = createDockerEngine();
  for (const tag of tags) {
    const left = await engine.inspectImage(tag).catch(() => null);
    if (left) await engine.removeImage(left.id).catch(() => false);
  }
  // dockerd made the parent in every controller; the step containers' own cgroups are gone with them.
  for (const controller of await readdir('/sys/fs/cgroup').catch(() => [])) {
    const dir = pidsRoot === '/sys/fs/cgroup' ? join('/sys/fs/cgroup', parent) : join('/sys/fs/cgroup', controller, parent);
    await rmdir(dir).catch(() => undefined);
  }
  if (root) await rm(root, { recursive: true, force: true });
});

/** Builds a step that tries to start TRIES sleeps; says how many started, from its build log. */
async function startedSleeps(engine: ContainerEngine, name: string): Promise<number> {
  const dir = join(root, name);
  await mkdir(dir, { recursive: true });
  // The subshell dies at the first fork that fails; the outer shell then reads the count with builtins
  // only (a fork would fail too while the sleeps hold every pid). The sleeps go with the step's container.
  await writeFile(
    join(dir, 'Dockerfile'),
    `FROM ${BUSYBOX_IMAGE}\n` +
      `RUN echo ${marker}-${name}; echo 0 > /n; ( i=0; while [ $i -lt ${TRIES} ]; do sleep 30 & i=$((i+1)); echo $i > /n; done ) 2>/dev/null; read n < /n; echo "started=$n"\n`,
  );
  const tag = `secd-test/build-bounds-${name}-${marker}:latest`;
  tags.push(tag);
  const lines: string[] = [];
  const built = await engine.buildImage({ contextDir: dir, tag, networkMode: 'none', onLog: (l) => lines.push(l) });
  expect(built.ok, lines.join('\n')).toBe(true);
  const counted = lines.map((l) => /^started=(\d+)$/.exec(l.trim())).find((m) => m !== null);
  expect(counted, lines.join('\n')).toBeTruthy();
  return Number(counted![1]);
}

describe.skipIf(!canMakeCgroups)('build processes under build.cgroup_parent, on Docker', () => {
  it(`a RUN step under a parent with pids.max ${PIDS_MAX} starts fewer than ${PIDS_MAX} of ${TRIES} processes; without it, all`, async () => {
    const bounded = await startedSleeps(createDockerEngine({ buildCgroupParent: parent }), 'bounded');
    expect(bounded).toBeGreaterThan(10);
    expect(bounded).toBeLessThan(PIDS_MAX);
    const unbounded = await startedSleeps(createDockerEngine(), 'unbounded');
    expect(unbounded).toBe(TRIES);
  }, 180_000);
});
