/**
 * A root container's outputs, collected by an unprivileged node: real Docker runs busybox as root with
 * umask 077, links to host files, a hardlink and a fifo in /outputs, and the node's extraction, run as
 * uid 65534 (as the `secd` user), gets readable files it owns, never the links, and can delete it all.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { aRunSpec, commandRequest, ensureBusyboxImage, BUSYBOX_IMAGE } from '../../test/support/test-images.js';
import type { ContainerEngine } from '../engine/container-engine.js';
import { outputsVolumeName } from '../executor/container-profile.js';
import { createDockerEngine } from '../engine/docker-engine.js';
import { listTree, roomy } from './outputs-archive-test-kit.js';
import type { OutputsManifest } from '../../scheduler/contract/run-spec.js';

const NOBODY = 65534;

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
