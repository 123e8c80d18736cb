import { mkdir, mkdtemp, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cacheOwnerOf, measureCache, resolveCacheDir } from './cache-path.js';
import { relativeDatasetPath, resolveDatasetDir } from './dataset-path.js';

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'secd-cache-path-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('cache folders', () => {
  it('live under <cache_root>/<user>/<cache_dir>, created writable on first use', async () => {
    const got = await resolveCacheDir(join(root, 'cache'), 'ada', 'models/v1');
    expect(got).toEqual({ ok: true, path: join(root, 'cache', 'ada', 'models', 'v1'), relative: 'ada/models/v1' });
    expect((await stat(join(root, 'cache', 'ada', 'models', 'v1'))).mode & 0o777).toBe(0o777);
    expect(await resolveCacheDir(join(root, 'cache'), 'ada', 'models/v1')).toEqual(got);
  });

  it('refuse traversal and absolute names', async () => {
    for (const bad of ['../x', '/etc', 'a/../../b', '.', 'a//b']) {
      const got = await resolveCacheDir(root, 'ada', bad);
      expect(got.ok, bad).toBe(false);
    }
    expect(await resolveCacheDir(root, '..', 'x')).toMatchObject({ ok: false, reason: expect.stringContaining('cannot name a cache folder') });
  });

  it('refuse a symlink planted inside a cache, whatever it points at', async () => {
    await resolveCacheDir(root, 'ada', 'work');
    await symlink('/etc', join(root, 'ada', 'work', 'link'));
    await mkdir(join(root, 'bob', 'secret'), { recursive: true });
    await symlink(join(root, 'bob'), join(root, 'ada', 'other'));
    expect(await resolveCacheDir(root, 'ada', 'other')).toEqual({
      ok: false,
      reason: 'cache folder other is a symlink; secd refuses symlinks in cache paths',
    });
    expect(await resolveCacheDir(root, 'ada', 'work/link')).toEqual({
      ok: false,
      reason: 'cache folder link is a symlink; secd refuses symlinks in cache paths',
    });
    expect(await resolveCacheDir(root, 'ada', 'elsewhere/x')).toMatchObject({ ok: true });
  });

  it('never mount one cache inside another of the same user, so a run cannot swap a folder under a mount', async () => {
    expect(await resolveCacheDir(root, 'ada', 'models')).toMatchObject({ ok: true });
    expect(await resolveCacheDir(root, 'ada', 'models/v2')).toMatchObject({
      ok: false,
      reason: expect.stringContaining('cache_dir "models/v2" lies inside your cache "models"'),
    });
    expect(await resolveCacheDir(root, 'ada', 'data/a')).toMatchObject({ ok: true });
    expect(await resolveCacheDir(root, 'ada', 'data')).toMatchObject({ ok: false, reason: expect.stringContaining('"data/a" lies inside your cache "data"') });
    // Another user's folders are theirs: no clash across users, and "models-old" is not inside "models".
    expect(await resolveCacheDir(root, 'bob', 'models/v2')).toMatchObject({ ok: true });
    expect(await resolveCacheDir(root, 'ada', 'models-old')).toMatchObject({ ok: true });
  });

  it('measure a cache without following its symlinks', async () => {
    const got = await resolveCacheDir(root, 'ada', 'm');
    if (!got.ok) throw new Error(got.reason);
    await writeFile(join(got.path, 'a.bin'), Buffer.alloc(1000));
    await mkdir(join(got.path, 'sub'));
    await writeFile(join(got.path, 'sub', 'b.bin'), Buffer.alloc(24));
    await symlink('/usr', join(got.path, 'usr'));
    expect(await measureCache(got.path)).toEqual({ bytes: 1024, files: 3 });
  });
});

describe('cache folders follow the GitLab account, not the name', () => {
  it('live under <cache_root>/@<user id>/<cache_dir> when the spec names the account', async () => {
    expect(cacheOwnerOf({ user: 'ada', userId: 7 })).toEqual({ userId: 7 });
    expect(cacheOwnerOf({ user: 'ada' })).toEqual({ user: 'ada' });
    const got = await resolveCacheDir(root, { userId: 7 }, 'models/v1');
    expect(got).toEqual({ ok: true, path: join(root, '@7', 'models', 'v1'), relative: '@7/models/v1' });
    expect((await stat(join(root, '@7', 'models', 'v1'))).mode & 0o777).toBe(0o777);
  });

  it('a new account that took the name "ada" never gets the cache ada filled, nor is a name-keyed folder adopted by an id', async () => {
    // An earlier secd keyed caches by name: ada (GitLab user 7) filled cache_root/ada/steps.
    const before = await resolveCacheDir(root, 'ada', 'steps');
    if (!before.ok) throw new Error(before.reason);
    await writeFile(join(before.path, 'result.pkl'), 'ada-only');
    // A user named "19" kept one too: id 19's folder must not be it.
    await mkdir(join(root, '19', 'steps'), { recursive: true });
    await writeFile(join(root, '19', 'steps', 'theirs.pkl'), 'user-named-19');

    const taker = await resolveCacheDir(root, cacheOwnerOf({ user: 'ada', userId: 19 }), 'steps');
    expect(taker).toMatchObject({ ok: true, relative: '@19/steps' });
    if (!taker.ok) return;
    expect(await readdir(taker.path)).toEqual([]);
    const herself = await resolveCacheDir(root, cacheOwnerOf({ user: 'ada', userId: 7 }), 'steps');
    expect(herself).toMatchObject({ ok: true, relative: '@7/steps' });
    if (herself.ok) expect(await readdir(herself.path)).toEqual([]);
    // The old folders are left as they were.
    expect(await readdir(join(root, 'ada', 'steps'))).toEqual(['result.pkl']);
    expect(await readdir(join(root, '19', 'steps'))).toEqual(['theirs.pkl']);
  });

  it('nesting is checked per account: the name\'s old caches do not block the account\'s', async () => {
    expect(await resolveCacheDir(root, 'ada', 'models')).toMatchObject({ ok: true });
    expect(await resolveCacheDir(root, { userId: 7 }, 'models/v2')).toMatchObject({ ok: true });
    expect(await resolveCacheDir(root, { userId: 7 }, 'models')).toMatchObject({ ok: false, reason: expect.stringContaining('"models/v2" lies inside your cache "models"') });
  });

  it('refuse an id that is not one', async () => {
    for (const userId of [0, -1, 1.5, Number.NaN]) {
      expect(await resolveCacheDir(root, { userId }, 'x')).toEqual({ ok: false, reason: `user id ${String(userId)} cannot name a cache folder` });
    }
  });
});

describe('file dataset folders', () => {
  it('resolve under dataset_root and refuse symlinked components and missing folders', async () => {
    await mkdir(join(root, 'scans', '2024'), { recursive: true });
    await symlink('/etc', join(root, 'etc-link'));
    expect(await resolveDatasetDir(root, 'scans', 'scans/2024')).toEqual({ ok: true, path: join(root, 'scans', '2024') });
    expect(await resolveDatasetDir(root, 'x', 'etc-link')).toMatchObject({ ok: false, reason: expect.stringContaining('is a symlink') });
    expect(await resolveDatasetDir(root, 'x', 'nope')).toMatchObject({ ok: false, reason: expect.stringContaining('missing') });
    expect(await resolveDatasetDir(root, 'x', '../x')).toMatchObject({ ok: false });
  });

  it('take what an operator typed, relative or under dataset_root', () => {
    expect(relativeDatasetPath('scans/2024/', null)).toEqual({ ok: true, path: 'scans/2024' });
    expect(relativeDatasetPath('/mnt/ds/scans', '/mnt/ds')).toEqual({ ok: true, path: 'scans' });
    expect(relativeDatasetPath('/etc', '/mnt/ds')).toMatchObject({ ok: false, reason: expect.stringContaining('not under dataset_root') });
    expect(relativeDatasetPath('/mnt/ds/scans', null)).toMatchObject({ ok: false });
  });
});
