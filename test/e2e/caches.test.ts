/**
 * Per-user caches end to end: @secd.cache results survive between pushes and are recomputed when the
 * cached function changes; bad cache settings and planted symlinks are refused with a reason; one
 * user's runs never see another's cache. Caches are keyed by GitLab user id (identity-by-id.test.ts
 * has the account that takes a released name).
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type Cluster, type Researcher } from '../support/cluster-harness.js';
import { busyboxProject } from '../support/test-images.js';
import { gitOutput as git, outputsFolder } from '../support/repo-reader.js';

const CACHED = (body: string) => `
import secd

@secd.cache
def slow_step(n):
    print("computing slow_step", flush=True)
    ${body}

print("answer", slow_step(1000), flush=True)
`;

const PYTHON_PROJECT = { Dockerfile: 'FROM secd/base\nCOPY main.py /main.py\nCMD ["python3", "/main.py"]\n', 'secd.yml': 'cache_dir: steps\n' };

describe('per-user caches', () => {
  let cluster: Cluster;
  let ada: Researcher;
  let bob: Researcher;

  beforeAll(async () => {
    cluster = await startCluster();
    ada = await cluster.addResearcher({ username: 'ada', project: 'lab/ada-cache' });
    bob = await cluster.addResearcher({ username: 'bob', project: 'lab/bob-cache' });
  });
  afterAll(async () => {
    await cluster?.close();
  });

  async function pushAndWait(r: Researcher, message: string, files: Record<string, string>) {
    const run = await cluster.waitForRun((await r.pushRun(files, { message })).id, 240_000);
    const repo = cluster.gitlab.repoDir(r.project.path);
    const folder = run.branch ? outputsFolder(run.branch) : null;
    const read = (file: string) => (folder ? git(repo, ['show', `${run.branch}:${folder}/${file}`]) : '');
    const listed = () => (folder ? git(repo, ['ls-tree', '-r', '--name-only', run.branch!, folder]).trim().split('\n') : []);
    return { run, read, listed };
  }

  it('a second push reuses the cached step, and a change to its source recomputes it', async () => {
    const first = await pushAndWait(ada, 'cached step', { ...PYTHON_PROJECT, 'main.py': CACHED('return sum(range(n))') });
    expect(first.run.state, first.run.reason).toBe('succeeded');
    expect(first.read('_secd/run.log')).toContain('computing slow_step');
    expect(first.read('_secd/run.log')).toContain('answer 499500');
    const report = JSON.parse(first.read('_secd/run.json')) as { cache: { dir: string; bytes: number; files: number } };
    // The folder used is the account's (cache_root/@<user id>/), not the name's.
    expect(report.cache).toMatchObject({ dir: 'steps', path: `@${ada.user.id}/steps`, mount_path: '/cache', files: 1 });
    expect(report.cache.bytes).toBeGreaterThan(0);

    const second = await pushAndWait(ada, 'unrelated change', { 'notes.txt': 'hello\n' });
    expect(second.run.state, second.run.reason).toBe('succeeded');
    expect(second.read('_secd/run.log')).toContain('Using cached result for slow_step');
    expect(second.read('_secd/run.log')).not.toContain('computing slow_step');
    expect(second.read('_secd/run.log')).toContain('answer 499500');

    const third = await pushAndWait(ada, 'change the cached function', { 'main.py': CACHED('return sum(range(n)) + 1') });
    expect(third.run.state, third.run.reason).toBe('succeeded');
    expect(third.read('_secd/run.log')).toContain('computing slow_step');
    expect(third.read('_secd/run.log')).toContain('answer 499501');
  }, 300_000);

  it('cache_dir ../x, an absolute cache_dir and mount_path /etc are refused with a reason', async () => {
    for (const [yml, says] of [
      ['cache_dir: ../x\n', 'cache_dir must not contain ".."'],
      ['cache_dir: /srv/cache\n', 'cache_dir must be a relative folder name, not an absolute path'],
      ['cache_dir: c\nmount_path: /etc\n', 'mount_path must not be /etc or inside it'],
    ] as const) {
      const { run } = await pushAndWait(ada, `try ${yml.trim()}`, { 'secd.yml': yml });
      expect(run.state, yml).toBe('rejected');
      expect(run.reason, yml).toContain(says);
    }
  }, 120_000);

  it('a symlink planted inside a cache is refused with a reason when a run would mount through it', async () => {
    const plant = await pushAndWait(ada, 'plant a symlink', busyboxProject('ln -s / "$SECD_CACHE_DIR/escape"\nls -la "$SECD_CACHE_DIR"\n', 'cache_dir: plant\n'));
    expect(plant.run.state, plant.run.reason).toBe('succeeded');
    const through = await pushAndWait(ada, 'mount through it', { 'secd.yml': 'cache_dir: plant/escape\n', 'run.sh': 'ls /cache > $OUTPUT_PATH/ls.txt\n' });
    expect(through.run.state).toBe('failed');
    expect(through.run.reason).toBe('cache folder escape is a symlink; secd refuses symlinks in cache paths');
    // The container never started: only secd's own files came back.
    expect(through.listed().some((f) => f.endsWith('/ls.txt'))).toBe(false);
  }, 180_000);

  it("one user's runs never see another user's cache", async () => {
    const a = await pushAndWait(ada, 'keep a secret in my cache', busyboxProject('echo ada-secret > "$SECD_CACHE_DIR/secret.txt"\n', 'cache_dir: shared\n'));
    expect(a.run.state, a.run.reason).toBe('succeeded');
    const b = await pushAndWait(
      bob,
      'look around',
      busyboxProject(
        'ls -a "$SECD_CACHE_DIR" > $OUTPUT_PATH/mine.txt\nls -a "$SECD_CACHE_DIR/.." > $OUTPUT_PATH/parent.txt\n' +
          "find / -name secret.txt -not -path '/proc/*' -not -path '/sys/*' > $OUTPUT_PATH/found.txt 2>/dev/null; true\n",
        'cache_dir: shared\nrunfor: 0.05\n',
      ),
    );
    expect(b.run.state, b.run.reason).toBe('succeeded');
    expect(b.read('mine.txt').trim().split('\n').sort()).toEqual(['.', '..']);
    expect(b.read('parent.txt')).not.toContain('ada');
    expect(b.read('found.txt')).toBe('');
    // On the node the two caches are separate folders of the same name, one per GitLab account.
    expect(await readdir(join(cluster.cacheRoot, `@${ada.user.id}`, 'shared'))).toEqual(['secret.txt']);
    expect(await readdir(join(cluster.cacheRoot, `@${bob.user.id}`, 'shared'))).toEqual([]);
  }, 180_000);
});
