/**
 * The per-user cache layout: `<cache_root>/@<gitlab user id>/<cache_dir>` (DESIGN §13: caches follow
 * the account, not the name, which GitLab lets another account take). Created on first use, one
 * component at a time, refusing any component that is a symlink and checking the real path against
 * the user's folder, so a run can never be handed a folder outside its own user's cache (another
 * user's, or the host's).
 *
 * Why `@<id>` and not `<id>`: earlier versions keyed folders by username, and a GitLab username may
 * be all digits, so `cache_root/17` could be a user named "17"'s old cache; "@" cannot appear in a
 * username, so an id-keyed folder never adopts a name-keyed one. Name-keyed folders are left as they
 * were and never used for a run with an id: caches start empty once after the upgrade, and an
 * operator who has checked who owns `cache_root/ada` may rename it to `cache_root/@<her id>`. A
 * spec without an id (`secd run`, or an older leader's) still uses `<cache_root>/<user>/`.
 *
 * One race needs more than that: a run mounting cache `a` can write inside `a`, so while secd
 * resolves `a/b` for another run of the same user, the first could swap `b` for a symlink between the
 * check and Docker's mount (Docker follows symlinks in a bind's source). secd therefore never lets
 * one user's cache folders nest: each cache_dir ever used is recorded under
 * `<cache_root>/:secd-cache-dirs/<owner folder>/` (":" cannot appear in a user name, so no cache reaches it),
 * and a cache_dir inside, or holding, a recorded one is refused. Recording is mkdir (atomic, also on
 * NFS) followed by a second look, so of two runs racing with nesting folders at most one proceeds.
 */
import { lstat, mkdir, chmod, readdir, realpath, rmdir } from 'node:fs/promises';
import { join, sep } from 'node:path';

const SEGMENT = /^[A-Za-z0-9._-]+$/;
const REGISTRY = ':secd-cache-dirs';

/**
 * Outcome of resolving a cache folder: the host path and the same relative to cache_root (what
 * run.json shows), or why it was refused.
 */
export type CachePathResult = { ok: true; path: string; relative: string } | { ok: false; reason: string };

/** Whose cache: a GitLab account by id, or (no id known) a bare name. */
export type CacheOwner = { userId: number } | { user: string };

/** The owner of a run's cache: its user id when the spec has one, else its name. */
export function cacheOwnerOf(spec: { user: string; userId?: number | undefined }): CacheOwner {
  return spec.userId !== undefined ? { userId: spec.userId } : { user: spec.user };
}

/** The owner's folder under cache_root (`@17`, or `ada` without an id), or why it cannot have one. */
export function cacheOwnerFolder(owner: CacheOwner): { ok: true; folder: string; label: string } | { ok: false; reason: string } {
  if ('userId' in owner) {
    if (!(Number.isSafeInteger(owner.userId) && owner.userId >= 1)) return { ok: false, reason: `user id ${String(owner.userId)} cannot name a cache folder` };
    return { ok: true, folder: `@${owner.userId}`, label: `GitLab user ${owner.userId}` };
  }
  if (badSegment(owner.user)) return { ok: false, reason: `user name "${owner.user}" cannot name a cache folder` };
  return { ok: true, folder: owner.user, label: owner.user };
}

function badSegment(s: string): boolean {
  return !SEGMENT.test(s) || s === '.' || s === '..';
}

function isStrictPrefix(prefix: readonly string[], of: readonly string[]): boolean {
  return prefix.length < of.length && prefix.every((p, i) => p === of[i]);
}

/** Resolve (and create) the cache folder of `owner` (a bare string: a name) named `cacheDir` under `cacheRoot`. */
export async function resolveCacheDir(cacheRoot: string, owner: CacheOwner | string, cacheDir: string): Promise<CachePathResult> {
  const whose = cacheOwnerFolder(typeof owner === 'string' ? { user: owner } : owner);
  if (!whose.ok) return whose;
  const user = whose.folder;
  const parts = cacheDir.split('/');
  if (cacheDir.startsWith('/') || parts.some(badSegment)) {
    return { ok: false, reason: `cache_dir "${cacheDir}" must be relative, made of [A-Za-z0-9._-] segments, without ".."` };
  }
  const key = parts.join(':');
  if (Buffer.byteLength(key) > 255) return { ok: false, reason: `cache_dir "${cacheDir}" is too long (255 bytes at most)` };
  await mkdir(cacheRoot, { recursive: true });
  const root = await realpath(cacheRoot);

  // What exists already must be plain folders: a planted symlink is refused as what it is.
  let existing = root;
  for (const part of [user, ...parts]) {
    existing = join(existing, part);
    const info = await lstat(existing).catch(() => null);
    if (info === null) break;
    if (info.isSymbolicLink()) return { ok: false, reason: `cache folder ${part} is a symlink; secd refuses symlinks in cache paths` };
    if (!info.isDirectory()) return { ok: false, reason: `cache path component ${part} is not a folder` };
  }

  const nested = await registerCacheDir(root, user, parts);
  if (nested !== null) {
    const [inner, outer] = nested.length > parts.length ? [nested.join('/'), cacheDir] : [cacheDir, nested.join('/')];
    return {
      ok: false,
      reason: `cache_dir "${inner}" lies inside your cache "${outer}": secd never mounts one cache inside another (a run could swap a folder for a symlink); pick a separate folder`,
    };
  }

  let current = root;
  const segments = [user, ...parts];
  for (const [i, part] of segments.entries()) {
    current = join(current, part);
    const info = await lstat(current).catch(() => null);
    if (info === null) {
      const created = await mkdir(current).then(
        () => true,
        (err: NodeJS.ErrnoException) => {
          if (err.code !== 'EEXIST') throw err;
          return false;
        },
      );
      // The image's user may not be root: the cache itself must be writable whoever it is. Only this
      // user's runs ever see it. Folders above it keep the umask's mode.
      if (created && i === segments.length - 1) await chmod(current, 0o777);
      if (created) continue;
    }
    const now = info ?? (await lstat(current));
    if (now.isSymbolicLink()) {
      return { ok: false, reason: `cache folder ${part} is a symlink; secd refuses symlinks in cache paths` };
    }
    if (!now.isDirectory()) return { ok: false, reason: `cache path component ${part} is not a folder` };
  }
  const real = await realpath(current);
  if (!real.startsWith(join(root, user) + sep) && real !== join(root, user)) {
    return { ok: false, reason: `cache_dir "${cacheDir}" resolves outside ${whose.label}'s cache` };
  }
  return { ok: true, path: real, relative: [user, ...parts].join('/') };
}

/** Record `parts` as one of the owner folder `user`'s caches; returns a recorded folder it would nest with, or null. */
async function registerCacheDir(root: string, user: string, parts: readonly string[]): Promise<string[] | null> {
  const dir = join(root, REGISTRY, user);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const clash = async (): Promise<string[] | null> => {
    for (const name of await readdir(dir)) {
      const other = name.split(':');
      if (isStrictPrefix(other, parts) || isStrictPrefix(parts, other)) return other;
    }
    return null;
  };
  const before = await clash();
  if (before) return before;
  const entry = join(dir, parts.join(':'));
  const created = await mkdir(entry).then(
    () => true,
    (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
      return false;
    },
  );
  const after = await clash();
  if (after && created) await rmdir(entry).catch(() => undefined);
  return after;
}

/** Size of a cache after a run: regular files' bytes and count; symlinks are counted, never followed. */
export async function measureCache(dir: string): Promise<{ bytes: number; files: number }> {
  let bytes = 0;
  let files = 0;
  const walk = async (path: string): Promise<void> => {
    const entries = await readdir(path, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      const full = join(path, e.name);
      if (e.isDirectory()) {
        await walk(full);
      } else {
        files++;
        if (e.isFile()) bytes += (await lstat(full).catch(() => null))?.size ?? 0;
      }
    }
  };
  await walk(dir);
  return { bytes, files };
}
