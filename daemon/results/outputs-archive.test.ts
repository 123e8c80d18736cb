/**
 * Collecting /outputs from the engine's tar stream: the copyOutputs rules on hostile archives (names
 * that climb out, links, special files, modes, caps, reserved folders, a stream that breaks), and the
 * bound on how much of a stream is ever read, whatever it claims or however long it stalls.
 * The checks run on the way are in outputs-archive-checks.test.ts; a root container's files handed to
 * an unprivileged node in outputs-archive-unprivileged.test.ts.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pack } from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { archiveEntryPath, extractOutputsArchive, readLimitOf } from './outputs-archive.js';
import { archive, listTree, roomy, type Entry } from './outputs-archive-test-kit.js';

let root: string;

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'secd-outputs-archive-'));
});
afterAll(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

describe('archiveEntryPath', () => {
  it('keeps names inside the archive and refuses those that climb out or are absolute', () => {
    expect(archiveEntryPath('./')).toBe('');
    expect(archiveEntryPath('./model/w.bin')).toBe('model/w.bin');
    expect(archiveEntryPath('model/')).toBe('model');
    expect(archiveEntryPath('../etc/passwd')).toBeNull();
    expect(archiveEntryPath('./a/../../b')).toBeNull();
    expect(archiveEntryPath('/etc/passwd')).toBeNull();
    expect(archiveEntryPath('a\0b')).toBeNull();
  });
});

describe('extractOutputsArchive', () => {
  it('writes files and folders the researcher can read (0644/0755, executables kept) whatever modes the container used', async () => {
    const dest = path.join(root, 'modes');
    const manifest = await extractOutputsArchive(
      archive([
        { name: './', type: 'directory', mode: 0o700 },
        { name: './private/', type: 'directory', mode: 0o700 },
        { name: './private/weights.bin', mode: 0o600, body: 'w' },
        { name: './train.sh', mode: 0o700, body: '#!/bin/sh\n' },
        { name: './metrics.json', mode: 0o4666, body: '{}' },
      ]),
      dest,
      roomy,
    );
    expect(manifest).toEqual({ files: 3, bytes: 13, leftOut: [] });
    expect(listTree(dest)).toEqual(['metrics.json 644', 'private/ 755', 'private/weights.bin 644', 'train.sh 755']);
  });

  it('lists links, hardlinks and special files and never writes them; names that climb out are refused', async () => {
    const dest = path.join(root, 'hostile');
    const manifest = await extractOutputsArchive(
      archive([
        { name: './a.txt', body: 'a' },
        { name: './hard.txt', type: 'link', linkname: './a.txt' },
        { name: './passwd', type: 'symlink', linkname: '/etc/passwd' },
        { name: './etc', type: 'symlink', linkname: '/etc' },
        { name: './etc/passwd', body: 'through the link' },
        { name: './fifo', type: 'fifo' },
        { name: './tty', type: 'character-device' },
        { name: '../escaped.txt', body: 'x' },
        { name: '/abs.txt', body: 'x' },
        { name: './a.txt', body: 'second a' },
      ]),
      dest,
      roomy,
    );
    expect(manifest.leftOut).toEqual([
      { path: 'hard.txt', reason: 'not_a_regular_file' },
      { path: 'passwd', reason: 'symlink' },
      { path: 'etc', reason: 'symlink' },
      { path: 'fifo', reason: 'not_a_regular_file' },
      { path: 'tty', reason: 'not_a_regular_file' },
      { path: '../escaped.txt', reason: 'unreadable' },
      { path: '/abs.txt', reason: 'unreadable' },
      { path: 'a.txt', reason: 'not_a_regular_file' },
    ]);
    // A name below a link becomes a plain folder of ours: the link itself was never written.
    expect(listTree(dest)).toEqual(['a.txt 644', 'etc/ 755', 'etc/passwd 644']);
    expect(fs.readFileSync(path.join(dest, 'a.txt'), 'utf8')).toBe('a');
    expect(fs.existsSync(path.join(root, 'escaped.txt'))).toBe(false);
    expect(fs.existsSync('/abs.txt')).toBe(false);
  });

  it('enforces the caps while streaming, greedily in archive order, and lists sizes', async () => {
    const dest = path.join(root, 'caps');
    const manifest = await extractOutputsArchive(
      archive([
        { name: './big.ckpt', body: 'x'.repeat(200) },
        { name: './a.txt', body: 'a'.repeat(60) },
        { name: './b.txt', body: 'b'.repeat(60) },
        { name: './c.txt', body: 'c'.repeat(30) },
      ]),
      dest,
      { maxFileBytes: 100, maxTotalBytes: 100 },
    );
    expect(manifest).toEqual({
      files: 2,
      bytes: 90,
      leftOut: [
        { path: 'big.ckpt', reason: 'file_too_large', size: 200 },
        { path: 'b.txt', reason: 'total_too_large', size: 60 },
      ],
    });
    expect(listTree(dest)).toEqual(['a.txt 644', 'c.txt 644']);
  });

  it('leaves out reserved folders with everything in them, listed once', async () => {
    const dest = path.join(root, 'reserved');
    const manifest = await extractOutputsArchive(
      archive([
        { name: './.git/', type: 'directory' },
        { name: './.git/config', body: '[core]' },
        { name: './keep.txt', body: 'k' },
      ]),
      dest,
      roomy,
      { isReserved: (_rel, name) => name === '.git' },
    );
    expect(manifest).toEqual({ files: 1, bytes: 1, leftOut: [{ path: '.git', reason: 'reserved_name' }] });
    expect(listTree(dest)).toEqual(['keep.txt 644']);
  });

  it('a stream that breaks part way keeps what came whole and says the rest was unreadable', async () => {
    const dest = path.join(root, 'broken');
    const whole = await new Promise<Buffer>((resolve) => {
      const chunks: Buffer[] = [];
      const s = archive([
        { name: './first.txt', body: 'first' },
        { name: './second.bin', body: 'y'.repeat(4096) },
      ]);
      s.on('data', (c: Buffer) => chunks.push(c));
      s.on('end', () => resolve(Buffer.concat(chunks)));
    });
    const cut = new Readable({ read() {} });
    cut.push(whole.subarray(0, 512 + 512 + 512 + 1024));
    // The connection drops while the second file's bytes are still expected.
    setTimeout(() => cut.destroy(new Error('engine connection reset')), 200);
    const manifest = await extractOutputsArchive(cut, dest, roomy);
    expect(manifest.files).toBe(1);
    expect(manifest.leftOut).toEqual([{ path: 'second.bin', reason: 'unreadable' }]);
    expect(listTree(dest)).toEqual(['first.txt 644']);
  });
});

describe('extractOutputsArchive bounds its reading', () => {
  /** A tar of `small` files and then one `hugeBytes` file whose zeros are made only as they are read. */
  function lazyArchive(small: Entry[], hugeBytes: number, after: Entry[] = []): { stream: Readable; produced: () => number } {
    const p = pack();
    let produced = 0;
    for (const e of small) p.entry({ name: e.name, type: 'file', mode: 0o644 }, e.body ?? '');
    const body = p.entry({ name: './huge.bin', type: 'file', mode: 0o644, size: hugeBytes }, (err) => {
      // Destroyed by the reader that stopped: nothing more to pack.
      if (err) return;
      for (const e of after) p.entry({ name: e.name, type: 'file', mode: 0o644 }, e.body ?? '');
      p.finalize();
    });
    const zeros = Buffer.alloc(1 << 20);
    const pump = () => {
      while (produced < hugeBytes) {
        produced += zeros.length;
        if (!body.write(zeros)) return void body.once('drain', pump);
      }
      (body as unknown as { end(): void }).end();
    };
    pump();
    // As a Node stream, like the engine's HTTP response (destroying it stops the packing).
    return { stream: Readable.from(p as unknown as AsyncIterable<Buffer>), produced: () => produced };
  }

  it('stops before an entry that would pass the read bound: an 8 GiB file is listed, not streamed', async () => {
    const dest = path.join(root, 'read-bound');
    const { stream, produced } = lazyArchive([{ name: './metrics.csv', body: 'a,b\n1,2\n' }], 8 * 2 ** 30, [{ name: './after.txt', body: 'x' }]);
    const t0 = Date.now();
    const manifest = await extractOutputsArchive(stream, dest, { maxFileBytes: 1 << 20, maxTotalBytes: 4 << 20 });
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(manifest).toEqual({ files: 1, bytes: 8, leftOut: [{ path: 'huge.bin', reason: 'file_too_large', size: 8 * 2 ** 30 }] });
    // Only what the pipes buffered was ever made: far less than the file.
    expect(produced()).toBeLessThan(64 << 20);
    expect(listTree(dest)).toEqual(['metrics.csv 644']);
  });

  it('counts skipped entries against the bound too, greedily delivering until then', async () => {
    const dest = path.join(root, 'read-bound-skipped');
    const manifest = await extractOutputsArchive(
      archive([
        { name: './big.ckpt', body: 'x'.repeat(80) },
        { name: './b.txt', body: 'b'.repeat(60) },
        { name: './c.txt', body: 'c'.repeat(70) },
        { name: './d.txt', body: 'd' },
      ]),
      dest,
      { maxFileBytes: 70, maxTotalBytes: 100 },
      { readLimitBytes: 200 },
    );
    // 80 skipped + 60 kept = 140 read; c's 70 would make 210, past readLimitBytes: reading stops there.
    expect(manifest).toEqual({
      files: 1,
      bytes: 60,
      leftOut: [
        { path: 'big.ckpt', reason: 'file_too_large', size: 80 },
        { path: 'c.txt', reason: 'total_too_large', size: 70 },
      ],
    });
    expect(listTree(dest)).toEqual(['b.txt 644']);
    await expect(extractOutputsArchive(archive([]), dest, roomy, { readLimitBytes: -1 })).rejects.toThrow(/readLimitBytes/);
    expect(readLimitOf({ maxFileBytes: 70, maxTotalBytes: 100 })).toBe(340);
  });

  it('an abort mid-file keeps what came whole, removes the file in progress and lists the rest', async () => {
    const dest = path.join(root, 'aborted');
    // The engine is still streaming a file whose end never comes (a stalled or endless stream).
    const { stream } = lazyArchive([{ name: './first.txt', body: 'first' }], 2 ** 40);
    const stop = new AbortController();
    setTimeout(() => stop.abort('deadline'), 300);
    const t0 = Date.now();
    const manifest = await extractOutputsArchive(stream, dest, { maxFileBytes: 2 ** 41, maxTotalBytes: 2 ** 41 }, { signal: stop.signal, readLimitBytes: 2 ** 42 });
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(manifest.files).toBe(1);
    expect(manifest.leftOut).toEqual([
      { path: 'huge.bin', reason: 'unreadable' },
      { path: '.', reason: 'unreadable' },
    ]);
    expect(listTree(dest)).toEqual(['first.txt 644']);
    const already = await extractOutputsArchive(archive([{ name: './a.txt', body: 'a' }]), path.join(root, 'aborted-before'), roomy, { signal: AbortSignal.abort() });
    expect(already).toEqual({ files: 0, bytes: 0, leftOut: [{ path: '.', reason: 'unreadable' }] });
  });
});
