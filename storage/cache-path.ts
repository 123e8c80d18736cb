/**
 * The per-user cache layout: `<cache_root>/<gitlab user>/<cache_dir>`. Created on first use, one
 * component at a time, refusing any component that is a symlink, so a run can never be handed a
 * folder outside its own user's cache (another user's, or the host's).
 */
import { lstat, mkdir, realpath } from 'node:fs/promises';
import { join, sep } from 'node:path';

const SEGMENT = /^[A-Za-z0-9._-]+$/;

/** Outcome of resolving a cache folder: the host path, or why it was refused. */
export type CachePathResult = { ok: true; path: string } | { ok: false; reason: string };

function badSegment(s: string): boolean {
  return !SEGMENT.test(s) || s === '.' || s === '..';
}

/** Resolve (and create) the cache folder of `user` named `cacheDir` under `cacheRoot`. */
export async function resolveCacheDir(cacheRoot: string, user: string, cacheDir: string): Promise<CachePathResult> {
  if (badSegment(user)) return { ok: false, reason: `user name "${user}" cannot name a cache folder` };
  const parts = cacheDir.split('/');
  if (cacheDir.startsWith('/') || parts.some(badSegment)) {
    return { ok: false, reason: `cache_dir "${cacheDir}" must be relative, made of [A-Za-z0-9._-] segments, without ".."` };
  }
  await mkdir(cacheRoot, { recursive: true });
  const root = await realpath(cacheRoot);
  let current = root;
  for (const part of [user, ...parts]) {
    current = join(current, part);
    const info = await lstat(current).catch(() => null);
    if (info === null) {
      await mkdir(current, { mode: 0o777 }).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      });
      continue;
    }
    if (info.isSymbolicLink()) {
      return { ok: false, reason: `cache folder ${part} is a symlink; secd refuses symlinks in cache paths` };
    }
    if (!info.isDirectory()) return { ok: false, reason: `cache path component ${part} is not a folder` };
  }
  const real = await realpath(current);
  if (!real.startsWith(join(root, user) + sep) && real !== join(root, user)) {
    return { ok: false, reason: `cache_dir "${cacheDir}" resolves outside ${user}'s cache` };
  }
  return { ok: true, path: real };
}
