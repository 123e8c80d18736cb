import { describe, expect, it } from 'vitest';
import { assertSafeMounts, containerRequestFor, exposesEngineSocket, type ProfileOptions } from './container-profile.js';
import type { RunSpec } from '../../scheduler/contract/run-spec.js';

function aSpec(over: Partial<RunSpec> = {}): RunSpec {
  return {
    runId: 'r-42',
    project: 'lab/mnist',
    commit: 'a'.repeat(40),
    source: '/srv/mirrors/lab/mnist.git',
    user: 'alice',
    signer: 'F'.repeat(40),
    runforMs: 3 * 3600_000,
    gpus: [],
    cacheDir: null,
    mountPath: '/cache',
    env: {},
    warnings: [],
    createdAt: '2026-01-01T00:00:00.000Z',
    ...over,
  };
}

const opts: ProfileOptions = { imageId: 'sha256:' + 'b'.repeat(64), memoryBytes: 8 * 2 ** 30, pidsLimit: 4096, stopGraceMs: 10_000 };
const paths = { cacheHostDir: null };

function envOf(env: string[]): Record<string, string> {
  return Object.fromEntries(env.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
}

describe('containerRequestFor', () => {
  it('locks a run down: no network, no capabilities, no privilege gain, bounded memory and pids', () => {
    const req = containerRequestFor(aSpec(), paths, opts);
    const hc = req.create.HostConfig;
    expect(hc.NetworkMode).toBe('none');
    expect(hc.CapDrop).toEqual(['ALL']);
    expect(hc.SecurityOpt).toEqual(['no-new-privileges']);
    expect(hc.Privileged).toBe(false);
    expect(hc.PidsLimit).toBe(4096);
    expect(hc.Memory).toBe(8 * 2 ** 30);
    expect(hc.MemorySwap).toBe(hc.Memory);
    expect(hc.ReadonlyRootfs).toBe(false);
    expect(hc.NanoCpus).toBeUndefined();
    expect(hc.AutoRemove).toBe(false);
    expect(req.create.Image).toBe(opts.imageId);
    expect(req.create.Cmd).toBeUndefined();
    expect(req.create).not.toHaveProperty('User');
  });

  it('enforces runfor and the stop grace', () => {
    const req = containerRequestFor(aSpec({ runforMs: 360_000 }), paths, { ...opts, stopGraceMs: 2500 });
    expect(req.timeoutMs).toBe(360_000);
    expect(req.stopGraceMs).toBe(2500);
    expect(req.create.StopTimeout).toBe(3);
    expect(req.keepContainer).toBe(false);
  });

  it('mounts /outputs read-write as the run\'s own empty volume, and nothing else when there is no cache', () => {
    const req = containerRequestFor(aSpec(), paths, opts);
    expect(req.create.HostConfig.Mounts).toEqual([
      {
        Type: 'volume',
        Source: 'secd-outputs-r-42',
        Target: '/outputs',
        ReadOnly: false,
        VolumeOptions: { NoCopy: true, Labels: { 'secd.run': 'r-42' } },
      },
    ]);
    // A fresh volume is root's 0755: the engine opens it for an image whose USER is not root.
    expect(req.writableMountPoints).toEqual(['/outputs']);
    const env = envOf(req.create.Env);
    expect(env).toMatchObject({ OUTPUT_PATH: '/outputs', SECD: 'PRODUCTION', SECD_RUN_ID: 'r-42' });
    expect(env).not.toHaveProperty('SECD_CACHE_DIR');
  });

  it('mounts the cache at mount_path and says where in SECD_CACHE_DIR', () => {
    const req = containerRequestFor(
      aSpec({ cacheDir: 'models', mountPath: '/data/cache' }),
      { ...paths, cacheHostDir: '/mnt/secd-cache/alice/models' },
      opts,
    );
    expect(req.create.HostConfig.Mounts).toContainEqual({
      Type: 'bind',
      Source: '/mnt/secd-cache/alice/models',
      Target: '/data/cache',
      ReadOnly: false,
    });
    expect(envOf(req.create.Env).SECD_CACHE_DIR).toBe('/data/cache');
  });

  it('passes dataset credentials through but never lets them redefine the contract variables', () => {
    const req = containerRequestFor(
      aSpec({ env: { DB_USER: 'secd_r42', DB_PASS: 'p=w d', OUTPUT_PATH: '/elsewhere', SECD: 'DEV', SECD_CACHE_DIR: '/x' } }),
      paths,
      opts,
    );
    const env = envOf(req.create.Env);
    expect(env.DB_USER).toBe('secd_r42');
    expect(env.DB_PASS).toBe('p=w d');
    expect(env.OUTPUT_PATH).toBe('/outputs');
    expect(env.SECD).toBe('PRODUCTION');
    expect(env).not.toHaveProperty('SECD_CACHE_DIR');
  });

  it('labels the container with its run, project and commit so a restarted node can find it', () => {
    const req = containerRequestFor(aSpec(), paths, opts);
    expect(req.create.Labels).toEqual({ 'secd.run': 'r-42', 'secd.project': 'lab/mnist', 'secd.commit': 'a'.repeat(40) });
    expect(req.name).toBe('secd-r-42');
  });

  it('asks for no GPU device when the run has none, and hides any GPU an image asks for', () => {
    const req = containerRequestFor(aSpec(), paths, opts);
    expect(req.create.HostConfig.DeviceRequests).toBeUndefined();
    expect(envOf(req.create.Env).NVIDIA_VISIBLE_DEVICES).toBe('void');
  });

  it('gives exactly the assigned GPUs, by UUID', () => {
    const gpus = ['GPU-11111111-2222-3333-4444-555555555555', 'GPU-66666666-7777-8888-9999-000000000000'];
    const req = containerRequestFor(aSpec({ gpus }), paths, opts);
    expect(req.create.HostConfig.DeviceRequests).toEqual([{ Driver: 'nvidia', DeviceIDs: gpus, Capabilities: [['gpu']] }]);
    expect(envOf(req.create.Env).NVIDIA_VISIBLE_DEVICES).toBe(gpus.join(','));
  });

  it('limits CPUs when the node asks', () => {
    const req = containerRequestFor(aSpec(), paths, { ...opts, cpus: 1.5 });
    expect(req.create.HostConfig.NanoCpus).toBe(1_500_000_000);
  });

  it('adds dataset mounts read-only as given', () => {
    const req = containerRequestFor(
      aSpec(),
      { ...paths, extraMounts: [{ source: '/mnt/secd-datasets/mnist', target: '/datasets/mnist', readOnly: true }] },
      opts,
    );
    expect(req.create.HostConfig.Mounts).toContainEqual({
      Type: 'bind',
      Source: '/mnt/secd-datasets/mnist',
      Target: '/datasets/mnist',
      ReadOnly: true,
    });
  });

  it.each(['/var/run/docker.sock', '/run/docker.sock', '/var/run', '/run', '/', '/run/containerd/containerd.sock', '/home/x/docker.sock', '/var/run/'])(
    'refuses to mount %s, which exposes the container engine',
    (source) => {
      expect(() =>
        containerRequestFor(aSpec(), { ...paths, extraMounts: [{ source, target: '/engine', readOnly: true }] }, opts),
      ).toThrow(/container engine/);
    },
  );

  it('never names a host path as a volume source', () => {
    expect(() => assertSafeMounts([{ Type: 'volume', Source: '/var/run/docker.sock', Target: '/outputs' }])).toThrow(/invalid volume name/);
    expect(() => assertSafeMounts([{ Type: 'volume', Source: '../x', Target: '/outputs' }])).toThrow(/invalid volume name/);
  });

  it('refuses a cache that lands on /outputs', () => {
    expect(() =>
      containerRequestFor(aSpec({ cacheDir: 'c', mountPath: '/outputs' }), { ...paths, cacheHostDir: '/mnt/c' }, opts),
    ).toThrow(/two mounts/);
  });

  it('treats a cache folder without a host path as a bug', () => {
    expect(() => containerRequestFor(aSpec({ cacheDir: 'c' }), paths, opts)).toThrow(/together/);
  });

  it('treats an invalid environment variable name as a bug', () => {
    expect(() => containerRequestFor(aSpec({ env: { 'A=B': 'x' } }), paths, opts)).toThrow(/invalid environment/);
  });
});

describe('exposesEngineSocket', () => {
  it('lets ordinary folders through', () => {
    expect(exposesEngineSocket('/mnt/secd-datasets/mnist')).toBe(false);
    expect(exposesEngineSocket('/var/lib/secd-node/runs/r1/db.sock')).toBe(false);
    expect(exposesEngineSocket('/var/lib/docker-data/x')).toBe(false);
  });
});
