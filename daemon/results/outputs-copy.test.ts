import { execFileSync } from 'node:child_process';
import { chmod, chown, lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { copyOutputs, reservedReason } from './outputs-copy.js';

// To replay the race where a container swaps an entry for a symlink between secd's lstat and its
// open, lstat is made to lie about the paths named here (it reports the stat of `as` instead).
const lstatLies = vi.hoisted(() => new Map<string, string>());
vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs/promises')>();
  return {
    ...real,
    lstat: (path: string) => real.lstat(lstatLies.get(path) ?? path),
  };
});

const SECRET = 'TOP-SECRET-host-file-7f3a9c';
const roomy = { maxFileBytes: 1 << 20, maxTotalBytes: 10 << 20 };

let root: string;
let src: string;
let dest: string;
let secretDir: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'secd-outputs-copy-'));
  src = join(root, 'outputs');
  dest = join(root, 'results');
  secretDir = join(root, 'host-secrets');
  await mkdir(src);
  await mkdir(secretDir);
  await writeFile(join(secretDir, 'shadow'), `${SECRET}\n`);
});

afterEach(async () => {
  lstatLies.clear();
  await rm(root, { recursive: true, force: true });
});

/** Every regular file under dir, as relative path -> content; fails on anything else. */
async function treeOf(dir: string, prefix = ''): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const name of (await readdir(dir)).sort()) {
    const path = join(dir, name);
    const st = await lstat(path);
    const rel = prefix + name;
    if (st.isDirectory()) {
      out.set(`${rel}/`, '');
      for (const [k, v] of await treeOf(path, `${rel}/`)) out.set(k, v);
    } else if (st.isFile()) {
      out.set(rel, await readFile(path, 'utf8'));
    } else {
      throw new Error(`unexpected non-regular entry in results: ${rel}`);
    }
  }
  return out;
}

describe('copyOutputs', () => {
  it('leaves symlinks out — to a secret file, to a folder, dangling — and the secret appears nowhere', async () => {
    await writeFile(join(src, 'metrics.json'), '{"acc":0.9}\n');
    await symlink(join(secretDir, 'shadow'), join(src, 'absolute-link'));
    await symlink('../host-secrets/shadow', join(src, 'relative-link'));
    await symlink(secretDir, join(src, 'dir-link'));
    await symlink('/nonexistent/nowhere', join(src, 'dangling'));
    await mkdir(join(src, 'sub'));
    await symlink('../../host-secrets', join(src, 'sub', 'up-link'));

    const manifest = await copyOutputs(src, dest, roomy);

    expect(manifest.files).toBe(1);
    expect(manifest.bytes).toBe(12);
    expect(manifest.leftOut).toEqual([
      { path: 'absolute-link', reason: 'symlink' },
      { path: 'dangling', reason: 'symlink' },
      { path: 'dir-link', reason: 'symlink' },
      { path: 'relative-link', reason: 'symlink' },
      { path: 'sub/up-link', reason: 'symlink' },
    ]);
    const tree = await treeOf(dest);
    expect([...tree.keys()]).toEqual(['metrics.json', 'sub/']);
    for (const content of tree.values()) expect(content).not.toContain(SECRET);
  });

  it('leaves out a file swapped for a symlink after it was looked at', async () => {
    await writeFile(join(src, 'decoy'), 'looks harmless');
    await symlink(join(secretDir, 'shadow'), join(src, 'swapped'));
    lstatLies.set(join(src, 'swapped'), join(src, 'decoy'));

    const manifest = await copyOutputs(src, dest, roomy);

    expect(manifest.leftOut).toEqual([{ path: 'swapped', reason: 'symlink' }]);
    for (const content of (await treeOf(dest)).values()) expect(content).not.toContain(SECRET);
  });

  it('leaves out files reached through a folder swapped for a symlink after it was looked at', async () => {
    await mkdir(join(src, 'decoy-dir'));
    await symlink(secretDir, join(src, 'swapped-dir'));
    lstatLies.set(join(src, 'swapped-dir'), join(src, 'decoy-dir'));

    const manifest = await copyOutputs(src, dest, roomy);

    expect(manifest.files).toBe(0);
    expect(manifest.leftOut).toEqual([{ path: 'swapped-dir/shadow', reason: 'symlink' }]);
    for (const content of (await treeOf(dest)).values()) expect(content).not.toContain(SECRET);
  });

  it('leaves fifos and sockets out without opening them', async () => {
    execFileSync('mkfifo', [join(src, 'pipe')]);
    const net = await import('node:net');
    const server = net.createServer();
    await new Promise<void>((ok) => server.listen(join(src, 'sock'), ok));
    try {
      await writeFile(join(src, 'z.txt'), 'z');
      const manifest = await copyOutputs(src, dest, roomy);
      expect(manifest.leftOut).toEqual([
        { path: 'pipe', reason: 'not_a_regular_file' },
        { path: 'sock', reason: 'not_a_regular_file' },
      ]);
      expect(manifest.files).toBe(1);
    } finally {
      server.close();
    }
  });

  it('leaves a file over the per-file cap out, listed with its size, and copies the others', async () => {
    await writeFile(join(src, 'checkpoint.pt'), Buffer.alloc(5000, 1));
    await writeFile(join(src, 'loss.csv'), 'step,loss\n1,0.5\n');
    await writeFile(join(src, 'exactly-at-cap.bin'), Buffer.alloc(4096, 2));

    const manifest = await copyOutputs(src, dest, { maxFileBytes: 4096, maxTotalBytes: 1 << 20 });

    expect(manifest.leftOut).toEqual([{ path: 'checkpoint.pt', reason: 'file_too_large', size: 5000 }]);
    expect(manifest.files).toBe(2);
    expect(manifest.bytes).toBe(4096 + 16);
    expect((await readdir(dest)).sort()).toEqual(['exactly-at-cap.bin', 'loss.csv']);
  });

  it('stops at the total cap: a file that would break it is left out, smaller ones after it still fit', async () => {
    await writeFile(join(src, 'a.bin'), Buffer.alloc(400));
    await writeFile(join(src, 'b.bin'), Buffer.alloc(400));
    await writeFile(join(src, 'c.bin'), Buffer.alloc(400));
    await writeFile(join(src, 'd.txt'), Buffer.alloc(100));
    await writeFile(join(src, 'e.txt'), Buffer.alloc(150));

    const manifest = await copyOutputs(src, dest, { maxFileBytes: 1000, maxTotalBytes: 1000 });

    expect(manifest.files).toBe(3);
    expect(manifest.bytes).toBe(900);
    expect(manifest.leftOut).toEqual([
      { path: 'c.bin', reason: 'total_too_large', size: 400 },
      { path: 'e.txt', reason: 'total_too_large', size: 150 },
    ]);
    expect((await readdir(dest)).sort()).toEqual(['a.bin', 'b.bin', 'd.txt']);
  });

  it('keeps nested and empty folders, with contents byte for byte', async () => {
    await mkdir(join(src, 'runs', 'epoch-1', 'plots'), { recursive: true });
    await mkdir(join(src, 'empty', 'also-empty'), { recursive: true });
    await writeFile(join(src, 'runs', 'epoch-1', 'plots', 'loss.svg'), '<svg/>');
    await writeFile(join(src, 'runs', 'summary.txt'), 'line1\r\nline2\r\n');

    const manifest = await copyOutputs(src, dest, roomy);

    expect(manifest).toEqual({ files: 2, bytes: 6 + 14, leftOut: [] });
    expect(await treeOf(dest)).toEqual(
      new Map([
        ['empty/', ''],
        ['empty/also-empty/', ''],
        ['runs/', ''],
        ['runs/epoch-1/', ''],
        ['runs/epoch-1/plots/', ''],
        ['runs/epoch-1/plots/loss.svg', '<svg/>'],
        ['runs/summary.txt', 'line1\r\nline2\r\n'],
      ]),
    );
  });

  it('gives copies 0644/0755 owned by secd, keeping only the executable bit', async () => {
    await writeFile(join(src, 'train.sh'), '#!/bin/sh\n');
    await chmod(join(src, 'train.sh'), 0o700);
    await writeFile(join(src, 'private.txt'), 'p');
    await chmod(join(src, 'private.txt'), 0o600);
    await writeFile(join(src, 'setuid'), 's');
    await chmod(join(src, 'setuid'), 0o4777);
    await mkdir(join(src, 'locked'));
    await writeFile(join(src, 'locked', 'inner.txt'), 'i');
    await chmod(join(src, 'locked'), 0o700);
    // The container runs as some other uid; as root here we can hand the files to one.
    if (process.getuid?.() === 0) {
      for (const p of ['train.sh', 'private.txt', 'locked', 'locked/inner.txt']) await chown(join(src, p), 12345, 12345);
    }
    const oldUmask = process.umask(0o077);
    try {
      await copyOutputs(src, dest, roomy);
    } finally {
      process.umask(oldUmask);
    }

    const modeOf = async (p: string): Promise<number> => (await stat(join(dest, p))).mode & 0o7777;
    expect(await modeOf('train.sh')).toBe(0o755);
    expect(await modeOf('private.txt')).toBe(0o644);
    expect(await modeOf('setuid')).toBe(0o755);
    expect(await modeOf('locked')).toBe(0o755);
    expect(await modeOf('locked/inner.txt')).toBe(0o644);
    expect(await modeOf('.')).toBe(0o755);
    const me = process.getuid?.();
    if (me !== undefined) expect((await stat(join(dest, 'locked', 'inner.txt'))).uid).toBe(me);
  });

  it('leaves out entries the caller reserves, without looking inside them', async () => {
    await mkdir(join(src, 'nested', '.git'), { recursive: true });
    await writeFile(join(src, 'nested', '.git', 'config'), '[core]\n');
    await writeFile(join(src, 'nested', 'kept.txt'), 'k');

    const manifest = await copyOutputs(src, dest, roomy, { isReserved: (_rel, name) => name === '.git' });

    expect(manifest.leftOut).toEqual([{ path: 'nested/.git', reason: reservedReason }]);
    expect([...(await treeOf(dest)).keys()]).toEqual(['nested/', 'nested/kept.txt']);
  });

  it('gives the same manifest for the same tree, whatever order files were written in', async () => {
    for (const name of ['zeta', 'alpha', 'Beta', 'mid', '10', '9']) {
      await symlink('/etc/passwd', join(src, `${name}-link`));
      await writeFile(join(src, name), name);
    }
    const first = await copyOutputs(src, dest, { maxFileBytes: 100, maxTotalBytes: 8 });
    await rm(dest, { recursive: true });
    const second = await copyOutputs(src, dest, { maxFileBytes: 100, maxTotalBytes: 8 });
    expect(second).toEqual(first);
    expect(first.leftOut.map((l) => l.path)).toEqual([
      '10-link', '9-link', 'Beta-link', 'alpha', 'alpha-link', 'mid', 'mid-link', 'zeta', 'zeta-link',
    ]);
  });

  it('delivers nothing, without failing, when the run never created /outputs', async () => {
    const manifest = await copyOutputs(join(root, 'missing'), dest, roomy);
    expect(manifest).toEqual({ files: 0, bytes: 0, leftOut: [] });
    expect(await readdir(dest)).toEqual([]);
  });

  it('treats caps that are not sizes as a bug', async () => {
    await expect(copyOutputs(src, dest, { maxFileBytes: -1, maxTotalBytes: 10 })).rejects.toThrow(/maxFileBytes/);
    await expect(copyOutputs(src, dest, { maxFileBytes: 1, maxTotalBytes: Number.NaN })).rejects.toThrow(/maxTotalBytes/);
  });
});
