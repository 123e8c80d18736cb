/**
 * The Docker adapter against the real engine: builds, the secd profile as a container sees it,
 * runfor, cancel, and log capture. Images are FROM scratch with a static busybox (no registry here).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ContainerEngine, ContainerRequest } from './container-engine.js';
import { outputsVolumeName } from '../executor/container-profile.js';
import { aRunSpec, commandRequest } from '../../test/support/test-images.js';
import { createDockerEngine } from './docker-engine.js';
import { LogCapture } from '../executor/log-capture.js';
import { extractOutputsArchive } from '../results/outputs-archive.js';
import type { OutputsManifest, RunSpec } from '../../scheduler/contract/run-spec.js';

const BUSYBOX = '/bin/busybox';
const suffix = randomBytes(4).toString('hex');
const tag = `secd-test/busybox:${suffix}`;
const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'secd-engine-test-'));
const createdTags: string[] = [];
const runIds: string[] = [];

let engine: ContainerEngine;
let imageId: string;

function makeContext(name: string, dockerfile: string, files: Record<string, string> = {}): string {
  const dir = path.join(tmpRoot, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.copyFileSync(BUSYBOX, path.join(dir, 'busybox'));
  fs.chmodSync(path.join(dir, 'busybox'), 0o755);
  fs.writeFileSync(path.join(dir, 'Dockerfile'), dockerfile);
  for (const [rel, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), text);
  }
  return dir;
}

const BUSYBOX_DOCKERFILE = [
  'FROM scratch',
  'COPY busybox /bin/busybox',
  'RUN ["/bin/busybox", "--install", "-s", "/bin"]',
  'RUN echo "built-by-secd-test" > /built.txt',
  'COPY ctx/ /ctx/',
  'CMD ["sh", "-c", "echo default-cmd"]',
  '',
].join('\n');

function aSpec(over: Partial<RunSpec> = {}): RunSpec {
  const runId = `t-${suffix}-${runIds.length}`;
  runIds.push(runId);
  return aRunSpec(runId, { project: 'secd-test/engine', createdAt: new Date().toISOString(), ...over });
}

function requestFor(script: string, over: Partial<RunSpec> = {}, image?: string): { req: ContainerRequest } {
  return { req: commandRequest(aSpec(over), image ?? imageId, ['sh', '-c', script]) };
}

/** Runs `req` and reads its /outputs back through the engine before the container goes, as the executor does. */
async function runCollecting(req: ContainerRequest) {
  const dest = fs.mkdtempSync(path.join(tmpRoot, 'collected-'));
  let manifest: OutputsManifest | null = null;
  const log = new LogCapture();
  const result = await engine.runContainer(req, {
    onLog: (b) => log.append(b),
    onExited: async (id) => {
      const tar = await engine.readArchive(id, '/outputs/.');
      if (tar) manifest = await extractOutputsArchive(tar, dest, { maxFileBytes: 1 << 20, maxTotalBytes: 1 << 20 });
    },
  });
  return { result, log: log.toString(), dest, manifest: manifest as OutputsManifest | null };
}

async function run(req: ContainerRequest, signal?: AbortSignal) {
  const log = new LogCapture();
  const result = await engine.runContainer(req, { onLog: (b) => log.append(b), ...(signal ? { signal } : {}) });
  return { result, log: log.toString() };
}

beforeAll(async () => {
  engine = createDockerEngine();
  const dir = makeContext('busybox', BUSYBOX_DOCKERFILE, {
    'ctx/hello.txt': 'hello from the context\n',
    'ctx/secret.key': 'must not be sent\n',
    '.dockerignore': '# keys stay on the node\n**/*.key\n',
  });
  const lines: string[] = [];
  const built = await engine.buildImage({ contextDir: dir, tag, labels: { 'secd.test': suffix }, onLog: (l) => lines.push(l) });
  createdTags.push(tag);
  if (!built.ok) throw new Error(`test image did not build: ${built.reason}\n${lines.join('\n')}`);
  imageId = built.imageId;
});

afterAll(async () => {
  if (!engine) return;
  for (const c of await engine.findRunContainers()) if (runIds.includes(c.runId)) await engine.removeContainer(c.id);
  for (const runId of runIds) await engine.removeVolume(outputsVolumeName(runId));
  for (const t of createdTags) await engine.removeImage(t);
  fs.rmSync(tmpRoot, { recursive: true, force: true });
});

describe('what the engine logs', () => {
  it('an expected absence (an image not built yet, a volume already gone) is debug, never a warning; a real failure warns', async () => {
    const lines: Array<[string, string]> = [];
    const record = (level: string) => (_fields: Record<string, unknown>, msg: string) => void lines.push([level, msg]);
    const logged = createDockerEngine({ logger: { debug: record('debug'), info: record('info'), warn: record('warn'), error: record('error') } });
    expect(await logged.inspectImage('secd-test/never-built:nope')).toBeNull();
    expect(await logged.removeVolume('secd-test-volume-that-never-was')).toBe(false);
    expect(lines.filter(([level]) => level === 'warn' || level === 'error')).toEqual([]);
    expect(lines.filter(([level]) => level === 'debug').map(([, msg]) => msg)).toEqual(['docker image.inspect: 404, as may be', 'docker volume.remove: 404, as may be']);
    // An image reference docker refuses outright is not an absence: that still warns.
    await expect(logged.inspectImage('UPPER/Case:bad')).rejects.toThrow();
    expect(lines.filter(([level]) => level === 'warn').map(([, msg]) => msg)).toEqual(['docker image.inspect failed']);
  });
});

describe('building', () => {
  it('builds a Dockerfile, captures every line of the build log and returns the image id', async () => {
    const lines: string[] = [];
    const t = `secd-test/rebuild:${suffix}`;
    createdTags.push(t);
    const dir = makeContext('rebuild', `${BUSYBOX_DOCKERFILE}RUN echo "step output $((6*7))"\n`, { 'ctx/a.txt': 'a' });
    const built = await engine.buildImage({ contextDir: dir, tag: t, labels: { 'secd.run': 'build-test' }, onLog: (l) => lines.push(l) });
    expect(built.ok).toBe(true);
    if (!built.ok) return;
    expect(built.imageId).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(lines.filter((l) => /^Step \d+\/\d+ : /.test(l))[0]).toMatch(/^Step 1\/\d+ : FROM scratch$/);
    expect(lines).toContain('step output 42');
    expect(lines.some((l) => /^Successfully built [0-9a-f]+$/.test(l))).toBe(true);
    expect(lines.every((l) => !l.includes('\n'))).toBe(true);
    const info = await engine.inspectImage(t);
    expect(info).toEqual({ id: built.imageId, labels: { 'secd.run': 'build-test' } });
  });

  it('honours .dockerignore: ignored files never reach the image', async () => {
    const { req } = requestFor('cat /ctx/hello.txt; cat /built.txt; ls /ctx');
    const { result, log } = await run(req);
    expect(result.exitCode).toBe(0);
    expect(log).toBe('hello from the context\nbuilt-by-secd-test\nhello.txt\n');
  });

  it('reports a failing RUN step as ok:false with the error line, and logs it', async () => {
    const lines: string[] = [];
    const t = `secd-test/broken:${suffix}`;
    createdTags.push(t);
    const dir = makeContext('broken', 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "sh", "-c", "echo about to fail; exit 3"]\n');
    const built = await engine.buildImage({ contextDir: dir, tag: t, onLog: (l) => lines.push(l) });
    expect(built).toEqual({
      ok: false,
      code: 'build_failed',
      reason: expect.stringMatching(/returned a non-zero code: 3/) as unknown as string,
    });
    expect(lines).toContain('about to fail');
    expect(lines[lines.length - 1]).toMatch(/^ERROR: .*non-zero code: 3/);
    expect(await engine.imageExists(t)).toBe(false);
  });

  it('reports a Dockerfile with an unknown instruction as ok:false naming it', async () => {
    const lines: string[] = [];
    const dir = makeContext('typo', 'FROM scratch\nCOPPY busybox /bin/busybox\n');
    const built = await engine.buildImage({ contextDir: dir, tag: `secd-test/typo:${suffix}`, onLog: (l) => lines.push(l) });
    expect(built.ok).toBe(false);
    if (built.ok) return;
    expect(built.code).toBe('build_failed');
    expect(built.reason).toMatch(/unknown instruction: COPPY/i);
    expect(lines.join('\n')).toMatch(/unknown instruction: COPPY/i);
  });

  it('a build cancelled while a RUN step works stops promptly and says so', async () => {
    const lines: string[] = [];
    const dir = makeContext('slow', 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "sh", "-c", "echo slow-step; /bin/busybox sleep 30"]\n');
    const ac = new AbortController();
    const started = Date.now();
    setTimeout(() => ac.abort(), 1500);
    const built = await engine.buildImage({ contextDir: dir, tag: `secd-test/slow:${suffix}`, onLog: (l) => lines.push(l), signal: ac.signal });
    expect(built).toEqual({ ok: false, code: 'cancelled', reason: 'build cancelled' });
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(lines).toContain('slow-step');
  });

  it('a build cancelled before it starts says so', async () => {
    const ac = new AbortController();
    ac.abort();
    const built = await engine.buildImage({ contextDir: tmpRoot, tag: `secd-test/never:${suffix}`, onLog: () => {}, signal: ac.signal });
    expect(built).toEqual({ ok: false, code: 'cancelled', reason: 'build cancelled' });
  });
});

describe('running under the secd profile', () => {
  it('has no network but loopback, no capabilities, and the secd environment', async () => {
    const { req } = requestFor('ls /sys/class/net; grep -E "^Cap(Eff|Prm|Bnd):" /proc/self/status; grep NoNewPrivs /proc/self/status; env | sort', {
      env: { DB_USER: 'secd_user' },
    });
    const { result, log } = await run(req);
    expect(result).toMatchObject({ end: 'exited', exitCode: 0, oomKilled: false, reason: null });
    const lines = log.split('\n');
    expect(lines[0]).toBe('lo');
    expect(lines[1]).toMatch(/^CapPrm:\s+0{16}$/);
    expect(lines[2]).toMatch(/^CapEff:\s+0{16}$/);
    expect(lines[3]).toMatch(/^CapBnd:\s+0{16}$/);
    expect(lines[4]).toMatch(/^NoNewPrivs:\s+1$/);
    const runId = req.create.Labels['secd.run']!;
    expect(lines).toEqual(expect.arrayContaining(['OUTPUT_PATH=/outputs', 'SECD=PRODUCTION', `SECD_RUN_ID=${runId}`, 'DB_USER=secd_user']));
  });

  it('gets a /dev/shm of half its memory limit, for DataLoader workers', async () => {
    const { req } = requestFor('grep " /dev/shm " /proc/mounts');
    const { result, log } = await run(req);
    expect(result.exitCode).toBe(0);
    expect(log).toMatch(/^shm \/dev\/shm tmpfs \S*size=131072k/);
  });

  it('writes to /outputs come back through the engine before the container is removed', async () => {
    const { req } = requestFor('mkdir -p "$OUTPUT_PATH/model" && echo 0.93 > "$OUTPUT_PATH/model/accuracy.txt"');
    const { result, dest, manifest } = await runCollecting(req);
    expect(result.exitCode).toBe(0);
    expect(fs.readFileSync(path.join(dest, 'model', 'accuracy.txt'), 'utf8')).toBe('0.93\n');
    expect(manifest).toEqual({ files: 1, bytes: 5, leftOut: [] });
    // The container is gone; its volume is the executor's to remove, and nothing else holds it now.
    expect((await engine.findRunContainers()).filter((c) => c.runId === req.create.Labels['secd.run'])).toEqual([]);
    expect(await engine.removeVolume(outputsVolumeName(req.create.Labels['secd.run']!))).toBe(true);
    expect(await engine.removeVolume(outputsVolumeName(req.create.Labels['secd.run']!))).toBe(false);
  });

  it('starts every run with an empty /outputs that an image running as a non-root USER can write', async () => {
    const t = `secd-test/nonroot:${suffix}`;
    createdTags.push(t);
    const dir = makeContext('nonroot', `${BUSYBOX_DOCKERFILE}RUN mkdir /outputs && echo from-the-image > /outputs/stale.txt\nUSER 1000:1000\n`, { 'ctx/a.txt': 'a' });
    const built = await engine.buildImage({ contextDir: dir, tag: t, onLog: () => {} });
    if (!built.ok) throw new Error(built.reason);
    const { req } = requestFor('id -u; ls -A "$OUTPUT_PATH"; echo by-uid-1000 > "$OUTPUT_PATH/mine.txt"', {}, built.imageId);
    const { result, log, dest, manifest } = await runCollecting(req);
    expect(log).toBe('1000\n');
    expect(result).toMatchObject({ end: 'exited', exitCode: 0 });
    expect(fs.readFileSync(path.join(dest, 'mine.txt'), 'utf8')).toBe('by-uid-1000\n');
    expect(manifest?.files).toBe(1);
  });

  it('hands back partial outputs of a run stopped at its runfor limit', async () => {
    const { req } = requestFor('echo epoch-1 > "$OUTPUT_PATH/progress.txt"; sleep 30', { runforMs: 1500 });
    const { result, dest } = await runCollecting(req);
    expect(result.end).toBe('timed_out');
    expect(fs.readFileSync(path.join(dest, 'progress.txt'), 'utf8')).toBe('epoch-1\n');
  });

  it('captures every byte of a container that prints a lot and exits at once, stdout and stderr', async () => {
    const { req } = requestFor('seq 1 20000; echo to-stderr >&2; exit 3');
    const { result, log } = await run(req);
    expect(result.end).toBe('exited');
    expect(result.exitCode).toBe(3);
    // The two pipes are buffered separately by the program, so only stdout's own order is fixed.
    const expected = Array.from({ length: 20000 }, (_, i) => `${i + 1}\n`).join('');
    expect(log.replace('to-stderr\n', '')).toBe(expected);
    expect(log.split('to-stderr\n')).toHaveLength(2);
  });

  it('captures the output of a container that exits within milliseconds', async () => {
    for (let i = 0; i < 5; i++) {
      const { req } = requestFor(`echo quick-${i}`);
      const { result, log } = await run(req);
      expect(result.exitCode).toBe(0);
      expect(log).toBe(`quick-${i}\n`);
    }
  });

  it('stops a container that runs past runfor, reports timed_out, and keeps what it printed', async () => {
    const { req } = requestFor('echo before-the-limit; sleep 30; echo after-the-limit');
    const started = Date.now();
    const { result, log } = await run({ ...req, timeoutMs: 1500 });
    expect(result.end).toBe('timed_out');
    expect(result.exitCode).toBe(143);
    expect(log).toBe('before-the-limit\n');
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(result.startedAt! <= result.finishedAt).toBe(true);
  });

  it('a container that ignores SIGTERM is killed after the grace period', async () => {
    const { req } = requestFor('trap "echo got-term" TERM; echo waiting; while true; do sleep 1; done');
    const { result, log } = await run({ ...req, timeoutMs: 1000, stopGraceMs: 1000 });
    expect(result.end).toBe('timed_out');
    expect(result.exitCode).toBe(137);
    expect(log.startsWith('waiting\n')).toBe(true);
  });

  it('a container that finishes before runfor is reported exited', async () => {
    const { req } = requestFor('sleep 0.2; echo done');
    const { result, log } = await run({ ...req, timeoutMs: 30_000 });
    expect(result).toMatchObject({ end: 'exited', exitCode: 0 });
    expect(log).toBe('done\n');
  });

  it('cancels a running container through its AbortSignal', async () => {
    const { req } = requestFor('echo started; sleep 30');
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 1000);
    const { result, log } = await run(req, ac.signal);
    expect(result.end).toBe('cancelled');
    expect(log).toBe('started\n');
    expect((await engine.findRunContainers()).map((c) => c.runId)).not.toContain(req.create.Labels['secd.run']);
  });

  it('does not start a run that was cancelled before it began', async () => {
    const { req } = requestFor('echo should-not-run');
    const ac = new AbortController();
    ac.abort();
    const { result, log } = await run(req, ac.signal);
    expect(result).toMatchObject({ end: 'cancelled', exitCode: null, startedAt: null, containerId: null });
    expect(log).toBe('');
  });

  it('reports start_failed with the engine sentence when the image is missing', async () => {
    const { req } = requestFor('true');
    const { result } = await run({ ...req, create: { ...req.create, Image: `secd-test/missing:${suffix}` } });
    expect(result.end).toBe('start_failed');
    expect(result.reason).toMatch(/No such image/i);
  });

  it('reports an out-of-memory kill', async () => {
    // Grows a shell variable until the 32 MiB limit kills it.
    const { req } = requestFor('x=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; while true; do x="$x$x"; done');
    const small = { ...req, create: { ...req.create, HostConfig: { ...req.create.HostConfig, Memory: 32 * 2 ** 20, MemorySwap: 32 * 2 ** 20 } } };
    const { result } = await run(small);
    expect(result.end).toBe('exited');
    expect(result.oomKilled).toBe(true);
    expect(result.exitCode).toBe(137);
  });

  it('removes the container after the run, unless asked to keep it; a kept one is found by its secd.run label', async () => {
    const { req } = requestFor('echo kept');
    const runId = req.create.Labels['secd.run']!;
    const { result } = await run({ ...req, keepContainer: true });
    const found = (await engine.findRunContainers()).filter((c) => c.runId === runId);
    expect(found).toEqual([{ id: result.containerId, name: req.name, runId, state: 'exited', labels: expect.objectContaining({ 'secd.project': 'secd-test/engine' }) as unknown }]);
    await engine.removeContainer(found[0]!.id);
    await engine.removeContainer(found[0]!.id); // a second removal is not an error
    expect((await engine.findRunContainers()).filter((c) => c.runId === runId)).toEqual([]);
  });

  it('logs each docker call with the run and container ids, start and end', async () => {
    const records: Array<{ msg: string; fields: Record<string, unknown> }> = [];
    const record = (fields: Record<string, unknown>, msg: string) => records.push({ msg, fields });
    const logged = createDockerEngine({ logger: { info: record, warn: record, error: record } });
    const { req } = requestFor('true');
    const { containerId } = await logged.runContainer(req, { onLog: () => {} });
    const runId = req.create.Labels['secd.run'];
    const calls = records.filter((r) => r.msg.startsWith('docker ')).map((r) => r.msg);
    expect(calls).toEqual([
      'docker container.create', 'docker container.create done',
      'docker container.putArchive', 'docker container.putArchive done',
      'docker container.attach', 'docker container.attach done',
      'docker container.start', 'docker container.start done',
      'docker container.wait', 'docker container.wait done',
      'docker container.inspect', 'docker container.inspect done',
      'docker container.remove', 'docker container.remove done',
    ]);
    expect(records.filter((r) => r.msg.startsWith('docker ')).every((r) => r.fields.run === runId || r.fields.container === containerId)).toBe(true);
    expect(records.find((r) => r.msg === 'docker container.wait done')?.fields).toMatchObject({ run: runId, container: containerId });
  });

  it('refuses a request that would mount the docker socket, before creating anything', async () => {
    const { req } = requestFor('true');
    const bad = {
      ...req,
      create: {
        ...req.create,
        HostConfig: {
          ...req.create.HostConfig,
          Mounts: [...req.create.HostConfig.Mounts, { Type: 'bind' as const, Source: '/var/run/docker.sock', Target: '/d.sock', ReadOnly: true }],
        },
      },
    };
    await expect(engine.runContainer(bad, { onLog: () => {} })).rejects.toThrow(/container engine/);
  });
});
