/**
 * Collecting /outputs from the engine's tar stream: the copyOutputs rules on hostile archives, and a
 * root container's private files handed to an unprivileged node (uid 65534, as the `secd` user).
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { pack } from 'tar-stream';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { aRunSpec, commandRequest, ensureBusyboxImage, BUSYBOX_IMAGE } from '../../test/support/test-images.js';
import type { ContainerEngine } from '../engine/container-engine.js';
import { outputsVolumeName } from '../executor/container-profile.js';
import { createDockerEngine } from '../engine/docker-engine.js';
import { archiveEntryPath, extractOutputsArchive, readLimitOf } from './outputs-archive.js';
import { DisclosureScanner } from './disclosure-scan.js';
import { INLINE_BYTES, ThreadedScanner } from './threaded-scanner.js';
import { DEFAULT_DISCLOSURE_CHECKS } from '../../scheduler/contract/disclosure.js';
import type { OutputsManifest } from '../../scheduler/contract/run-spec.js';

const roomy = { maxFileBytes: 1 << 20, maxTotalBytes: 1 << 20 };
const NOBODY = 65534;
let root: string;

type Entry = { name: string; type?: 'file' | 'directory' | 'symlink' | 'link' | 'fifo' | 'character-device'; mode?: number; body?: string; linkname?: string; size?: number };

function archive(entries: Entry[]): Readable {
  const p = pack();
  for (const e of entries) {
    const { body, ...header } = e;
    if (e.type === undefined || e.type === 'file') p.entry({ ...header, type: 'file', mode: e.mode ?? 0o644 }, body ?? '');
    else p.entry({ ...header, mode: e.mode ?? 0o755 });
  }
  p.finalize();
  return p as unknown as Readable;
}

function listTree(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const name of fs.readdirSync(path.join(dir, rel)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const st = fs.lstatSync(path.join(dir, r));
      out.push(`${r}${st.isDirectory() ? '/' : ''} ${(st.mode & 0o7777).toString(8)}`);
      if (st.isDirectory()) walk(r);
    }
  };
  walk('');
  return out;
}

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

describe('extractOutputsArchive with the disclosure checks', () => {
  it('streams every delivered file through the checks, and only those: files left out, links and reserved names flag nothing', async () => {
    const dest = path.join(root, 'checked');
    const scanner = new DisclosureScanner({ ...DEFAULT_DISCLOSURE_CHECKS, maxFileBytes: 64, maxCsvRows: 2 });
    const rows = ['region,SSN,n', ...Array.from({ length: 2000 }, (_, i) => `r${i},x,${i === 1500 ? 4 : 40}`)].join('\n');
    const manifest = await extractOutputsArchive(
      archive([
        { name: './tables/', type: 'directory' },
        { name: './tables/cohort.csv', body: rows },
        { name: './summary.xlsx', body: 'PK' },
        { name: './clean.csv', body: 'region,n\nnorth,40\n' },
        { name: './too-big.xlsx', body: 'z'.repeat(30_000) },
        { name: './_secd/', type: 'directory' },
        { name: './_secd/run.json', body: '{}' },
        { name: './link.xlsx', type: 'symlink', linkname: '/etc/passwd' },
      ]),
      dest,
      { maxFileBytes: 25_000, maxTotalBytes: 200_000 },
      { isReserved: (rel) => rel === '_secd', scanner },
    );
    expect(manifest.files).toBe(3);
    expect(manifest.leftOut.map((l) => l.path)).toEqual(['too-big.xlsx', '_secd', 'link.xlsx']);
    expect(scanner.findings()).toEqual([
      { file: 'tables/cohort.csv', rule: 'forbidden_column', detail: 'column 2 "SSN" is a forbidden column' },
      { file: 'tables/cohort.csv', rule: 'small_cell', detail: 'row 1501, column "n": a count below 10' },
      { file: 'tables/cohort.csv', rule: 'file_size', detail: `${Buffer.byteLength(rows)} bytes (${Number((Buffer.byteLength(rows) / 1024).toPrecision(3))} KiB), over the cap of 64 bytes` },
      { file: 'tables/cohort.csv', rule: 'csv_rows', detail: '2000 data rows, over the cap of 2' },
      { file: 'summary.xlsx', rule: 'extension', detail: '".xlsx" is not an allowed extension' },
    ]);
    // The checks read the bytes; what is written is the same file.
    expect(fs.readFileSync(path.join(dest, 'tables/cohort.csv'), 'utf8')).toBe(rows);
  });
});

describe('extractOutputsArchive with the checks in a worker thread', () => {
  it('a large CSV read back through a ThreadedScanner is written whole and flags what the event loop flags', async () => {
    const rows = ['region,ssn,n', ...Array.from({ length: 150_000 }, (_, i) => `r${i},x,${i === 120_000 ? 4 : 40 + (i % 9)}`)].join('\n');
    const entries: Entry[] = [
      { name: './summary.xlsx', body: 'PK' },
      { name: './tables/', type: 'directory' },
      { name: './tables/cohort.csv', body: rows },
      { name: './notes.txt', body: 'fine' },
    ];
    const big = { maxFileBytes: 16 << 20, maxTotalBytes: 16 << 20 };
    const checks = { ...DEFAULT_DISCLOSURE_CHECKS, maxCsvRows: 100_000 };
    const workers: unknown[] = [];
    // The node's threshold, whatever this machine's load: a 1.5 MB CSV goes to the worker.
    const threaded = new ThreadedScanner(checks, { inlineBytes: INLINE_BYTES, onWorker: (w) => workers.push(w) });
    const inline = new DisclosureScanner(checks);
    const dest = path.join(root, 'threaded');
    const manifest = await extractOutputsArchive(archive(entries), dest, big, { scanner: threaded });
    await extractOutputsArchive(archive(entries), path.join(root, 'threaded-inline'), big, { scanner: inline });
    expect(workers).toHaveLength(1);
    expect(manifest).toEqual({ files: 3, bytes: Buffer.byteLength(rows) + 6, leftOut: [] });
    expect(fs.readFileSync(path.join(dest, 'tables/cohort.csv'), 'utf8')).toBe(rows);
    const found = await threaded.findings();
    expect(found).toEqual(inline.findings());
    expect(found.map((f) => `${f.file} ${f.rule}`)).toEqual([
      'summary.xlsx extension',
      'tables/cohort.csv forbidden_column',
      'tables/cohort.csv small_cell',
      'tables/cohort.csv csv_rows',
    ]);
  });
});

describe('a root container\'s outputs, collected by an unprivileged node', () => {
  let engine: ContainerEngine;
  let childDir: string;
  const runId = `oa-${randomBytes(4).toString('hex')}`;

  beforeAll(async () => {
    engine = createDockerEngine();
    await ensureBusyboxImage(engine);
    // The node's extraction, compiled to plain JS so a process running as uid 65534 can run it. It sits
    // under node_modules so `tar-stream` resolves as it does for the daemon.
    childDir = fs.mkdtempSync(path.join(process.cwd(), 'node_modules', '.secd-test-outputs-archive-'));
    fs.chmodSync(childDir, 0o755);
    // With every module it imports at runtime, each at its place in the repository.
    const repoRoot = path.resolve(import.meta.dirname, '../..');
    const pending = [path.join(import.meta.dirname, 'outputs-archive.ts')];
    const done = new Set<string>();
    while (pending.length > 0) {
      const file = pending.pop()!;
      if (done.has(file)) continue;
      done.add(file);
      const { outputText } = ts.transpileModule(fs.readFileSync(file, 'utf8'), {
        compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: false },
      });
      const dest = path.join(childDir, path.relative(repoRoot, file).replace(/\.ts$/, '.js'));
      fs.mkdirSync(path.dirname(dest), { recursive: true, mode: 0o755 });
      fs.writeFileSync(dest, outputText, { mode: 0o644 });
      for (const m of outputText.matchAll(/from\s+'(\.[^']+)\.js'/g)) pending.push(path.resolve(path.dirname(file), `${m[1]}.ts`));
    }
    // mkdir's mode is cut by the umask: uid 65534 must be able to walk in.
    for (const entry of fs.readdirSync(childDir, { recursive: true, withFileTypes: true })) {
      if (entry.isDirectory()) fs.chmodSync(path.join(entry.parentPath, entry.name), 0o755);
    }
    fs.writeFileSync(path.join(childDir, 'package.json'), '{"type":"module"}\n', { mode: 0o644 });
    fs.writeFileSync(
      path.join(childDir, 'extract.js'),
      [
        "import { extractOutputsArchive } from './daemon/results/outputs-archive.js';",
        `const m = await extractOutputsArchive(process.stdin, process.argv[2], ${JSON.stringify(roomy)});`,
        'process.stdout.write(JSON.stringify(m));',
      ].join('\n'),
      { mode: 0o644 },
    );
  }, 120_000);

  afterAll(async () => {
    if (childDir) fs.rmSync(childDir, { recursive: true, force: true });
    if (engine) {
      for (const c of await engine.findRunContainers()) if (c.runId === runId) await engine.removeContainer(c.id);
      await engine.removeVolume(outputsVolumeName(runId));
    }
  });

  function extractAsNobody(tar: NodeJS.ReadableStream, dest: string): Promise<OutputsManifest> {
    const child = spawn('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', process.execPath, path.join(childDir, 'extract.js'), dest], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    tar.pipe(child.stdin);
    return new Promise((resolve, reject) => {
      child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out) as OutputsManifest) : reject(new Error(`extraction as uid ${NOBODY} failed (${code}): ${err}`))));
    });
  }

  it('hands back 0600 files and 0700 folders, leaves out links to host files, and the node can delete all of it', async () => {
    const workspace = fs.mkdtempSync(path.join(os.tmpdir(), 'secd-ws-'));
    fs.chownSync(workspace, NOBODY, NOBODY);
    const dest = path.join(workspace, 'outputs');
    const script = [
      'umask 077',
      'mkdir -p "$OUTPUT_PATH/model/private"',
      'echo 0.93 > "$OUTPUT_PATH/model/accuracy.txt"',
      'echo secret-weights > "$OUTPUT_PATH/model/private/w.bin"',
      'ln -s /etc/passwd "$OUTPUT_PATH/passwd"',
      'ln "$OUTPUT_PATH/model/accuracy.txt" "$OUTPUT_PATH/zz-hardlink.txt"',
      'mkfifo "$OUTPUT_PATH/pipe"',
      'id -u',
    ].join('; ');
    const request = commandRequest(aRunSpec(runId, { project: 'secd-test/outputs', createdAt: new Date().toISOString() }), BUSYBOX_IMAGE, ['sh', '-c', script], {
      memoryBytes: 128 * 2 ** 20,
      pidsLimit: 64,
    });
    let manifest: OutputsManifest | null = null;
    let log = '';
    const result = await engine.runContainer(
      request,
      {
        onLog: (b) => (log += b.toString()),
        onExited: async (id) => {
          const tar = await engine.readArchive(id, '/outputs/.');
          if (tar) manifest = await extractAsNobody(tar, dest);
        },
      },
    );
    expect(log).toBe('0\n');
    expect(result).toMatchObject({ end: 'exited', exitCode: 0 });
    expect(manifest).toEqual({
      files: 2,
      bytes: 20,
      leftOut: [
        { path: 'passwd', reason: 'symlink' },
        { path: 'pipe', reason: 'not_a_regular_file' },
        { path: 'zz-hardlink.txt', reason: 'not_a_regular_file' },
      ],
    });
    expect(listTree(dest)).toEqual(['model/ 755', 'model/accuracy.txt 644', 'model/private/ 755', 'model/private/w.bin 644']);
    expect(fs.readFileSync(path.join(dest, 'model/private/w.bin'), 'utf8')).toBe('secret-weights\n');
    for (const rel of ['model', 'model/accuracy.txt', 'model/private', 'model/private/w.bin']) {
      expect(fs.statSync(path.join(dest, rel)).uid).toBe(NOBODY);
    }
    const passwd = fs.readFileSync('/etc/passwd', 'utf8').split('\n')[0]!;
    const everything = listTree(dest).filter((l) => !l.includes('/ ')).map((l) => fs.readFileSync(path.join(dest, l.split(' ')[0]!), 'utf8'));
    expect(everything.some((text) => text.includes(passwd))).toBe(false);

    // The node (not root) cleans its workspace up: nothing in it belongs to anyone else.
    const rm = spawnSync('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', 'rm', '-rf', dest], { encoding: 'utf8' });
    expect(rm.stderr).toBe('');
    expect(rm.status).toBe(0);
    expect(fs.existsSync(dest)).toBe(false);
    fs.rmSync(workspace, { recursive: true, force: true });

    // The container went after the collection; its volume is the executor's to remove, once.
    expect((await engine.findRunContainers()).filter((c) => c.runId === runId)).toEqual([]);
    expect(await engine.removeVolume(outputsVolumeName(runId))).toBe(true);
  }, 60_000);
});
