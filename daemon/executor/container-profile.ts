/**
 * The secd container profile: how every run container is locked down (DESIGN §1, §5). A pure
 * function from a RunSpec to the engine request, so the whole profile is visible in one unit test.
 */
import path from 'node:path';
import type { BindMount, ContainerCreateOptions, ContainerRequest, EngineBindMount, EngineVolumeMount } from '../engine/container-engine.js';
import type { RunSpec } from '../../scheduler/contract/run-spec.js';

/** Where the run's outputs folder appears in the container (DESIGN §5: OUTPUT_PATH). */
export const OUTPUTS_MOUNT = '/outputs';

/**
 * The named volume holding a run's /outputs. A volume, not a bind: files the container makes (as root,
 * mode 0600...) stay dockerd's; the node reads them back through the archive API and removes the volume.
 */
export function outputsVolumeName(runId: string): string {
  return `secd-outputs-${runId.replace(/[^a-zA-Z0-9_.-]/g, '_')}`;
}

/** Host paths a run container sees (its /outputs is the run's volume, outputsVolumeName). */
export interface ProfilePaths {
  /** Host folder of the researcher's cache; non-null exactly when spec.cacheDir is set. */
  cacheHostDir: string | null;
  /** Datasets (ro) and the dataset socket; the caller sets the matching env (DB_SOCKET...). */
  extraMounts?: BindMount[];
}

/** Node-level limits applied to every run. */
export interface ProfileOptions {
  imageId: string;
  memoryBytes: number;
  pidsLimit: number;
  /** CPU share as a count of cores (1.5 = one and a half); unset = no CPU limit. */
  cpus?: number;
  stopGraceMs: number;
  /** /dev/shm size; default half the memory limit, since PyTorch DataLoader workers pass tensors through it. */
  shmBytes?: number;
  keepContainer?: boolean;
}

// Paths that expose the engine's API: a bind of any of these (or a folder holding one) would hand the
// container root on the node, so the profile refuses them whatever the caller asks.
const ENGINE_SOCKETS = [
  '/var/run/docker.sock',
  '/run/docker.sock',
  '/var/run/docker',
  '/run/docker',
  '/run/containerd/containerd.sock',
  '/var/run/containerd/containerd.sock',
  '/run/podman/podman.sock',
];

/** True when binding `source` would expose a container engine's socket (directly or through a parent folder). */
export function exposesEngineSocket(source: string): boolean {
  const p = path.posix.normalize(source).replace(/(.)\/+$/, '$1');
  const base = path.posix.basename(p);
  if (base.endsWith('.sock') && /docker|containerd|podman/.test(base)) return true;
  return p === '/' || ENGINE_SOCKETS.some((s) => s === p || s.startsWith(`${p}/`));
}

/** Throws (a bug in the caller) when a mount would break the profile; used again by the adapter before create. */
export function assertSafeMounts(mounts: ReadonlyArray<{ Type?: string; Source: string; Target: string }>): void {
  const targets = new Set<string>();
  for (const m of mounts) {
    if (m.Type === 'volume') {
      // A volume's source is a name dockerd resolves under its own root, never a host path.
      if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/.test(m.Source)) throw new Error(`invalid volume name: ${JSON.stringify(m.Source)}`);
    } else if (m.Type !== undefined && m.Type !== 'bind') {
      throw new Error(`unsupported mount type ${m.Type} for ${m.Target}`);
    }
    if ((m.Type !== 'volume' && !path.posix.isAbsolute(m.Source)) || !path.posix.isAbsolute(m.Target)) {
      throw new Error(`mount paths must be absolute: ${m.Source} -> ${m.Target}`);
    }
    if (m.Type !== 'volume' && exposesEngineSocket(m.Source)) {
      throw new Error(`refusing to mount ${m.Source} into a run container: it exposes the container engine`);
    }
    const target = path.posix.normalize(m.Target);
    if (target === '/') throw new Error(`refusing to mount over the container's root (${m.Source})`);
    if (targets.has(target)) throw new Error(`two mounts target ${target}`);
    targets.add(target);
  }
}

// Names docker accepts for a container: [a-zA-Z0-9][a-zA-Z0-9_.-]*.
function containerNameFor(runId: string): string {
  return `secd-${runId.replace(/[^a-zA-Z0-9_.-]/g, '_')}`;
}

function envEntry(key: string, value: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw new Error(`invalid environment variable name: ${JSON.stringify(key)}`);
  if (value.includes('\0')) throw new Error(`environment variable ${key} contains a NUL byte`);
  return `${key}=${value}`;
}

/** The container request for one run under the secd profile: no network, no capabilities, no engine socket. */
export function containerRequestFor(spec: RunSpec, paths: ProfilePaths, opts: ProfileOptions): ContainerRequest {
  if ((spec.cacheDir === null) !== (paths.cacheHostDir === null)) {
    throw new Error(`run ${spec.runId}: cacheDir and cacheHostDir must be set together`);
  }
  if (!(opts.memoryBytes > 0) || !(opts.pidsLimit > 0) || !(opts.stopGraceMs >= 0) || !(spec.runforMs > 0)) {
    throw new Error(`run ${spec.runId}: memory, pids limit and runfor must be positive`);
  }

  const binds: BindMount[] = [];
  if (paths.cacheHostDir !== null) binds.push({ source: paths.cacheHostDir, target: spec.mountPath, readOnly: false });
  binds.push(...(paths.extraMounts ?? []));
  // NoCopy: /outputs starts empty even when the image has one, as the bind it replaced did.
  const outputs: EngineVolumeMount = {
    Type: 'volume',
    Source: outputsVolumeName(spec.runId),
    Target: OUTPUTS_MOUNT,
    ReadOnly: false,
    VolumeOptions: { NoCopy: true, Labels: { 'secd.run': spec.runId } },
  };
  const mounts: Array<EngineBindMount | EngineVolumeMount> = [
    outputs,
    ...binds.map((b): EngineBindMount => ({ Type: 'bind', Source: b.source, Target: b.target, ReadOnly: b.readOnly })),
  ];
  assertSafeMounts(mounts);

  // secd's own variables come last so spec.env cannot redefine the contract.
  const env: Record<string, string> = { ...spec.env };
  env.OUTPUT_PATH = OUTPUTS_MOUNT;
  env.SECD = 'PRODUCTION';
  env.SECD_RUN_ID = spec.runId;
  if (paths.cacheHostDir !== null) env.SECD_CACHE_DIR = spec.mountPath;
  else delete env.SECD_CACHE_DIR;
  // CUDA base images set NVIDIA_VISIBLE_DEVICES=all; on a node whose default runtime is nvidia that
  // would hand every GPU to a run that asked for none, so the variable always names exactly ours.
  env.NVIDIA_VISIBLE_DEVICES = spec.gpus.length > 0 ? spec.gpus.join(',') : 'void';

  const create: ContainerCreateOptions = {
    Image: opts.imageId,
    Env: Object.entries(env).map(([k, v]) => envEntry(k, v)),
    Labels: { 'secd.run': spec.runId, 'secd.project': spec.project, 'secd.commit': spec.commit },
    StopTimeout: Math.ceil(opts.stopGraceMs / 1000),
    HostConfig: {
      NetworkMode: 'none',
      CapDrop: ['ALL'],
      SecurityOpt: ['no-new-privileges'],
      Privileged: false,
      PidsLimit: opts.pidsLimit,
      Memory: opts.memoryBytes,
      MemorySwap: opts.memoryBytes,
      ...(opts.cpus !== undefined ? { NanoCpus: Math.round(opts.cpus * 1e9) } : {}),
      ShmSize: opts.shmBytes ?? Math.floor(opts.memoryBytes / 2),
      // Under host memory pressure the kernel should kill a run, not the node daemon or dockerd.
      OomScoreAdj: 500,
      // Researchers' code writes /tmp and caches under $HOME; the writable layer goes with the
      // container. No tmpfs on /tmp: tmpfs pages count against the memory limit.
      ReadonlyRootfs: false,
      // A tiny init as PID 1: it forwards SIGTERM (PID 1 ignores it without a handler, so every
      // stop would wait out the grace) and reaps DataLoader workers' zombies.
      Init: true,
      IpcMode: 'private',
      Mounts: mounts,
      ...(spec.gpus.length > 0
        ? { DeviceRequests: [{ Driver: 'nvidia' as const, DeviceIDs: [...spec.gpus], Capabilities: [['gpu']] }] }
        : {}),
      // secd captures output itself; the engine's copy is only for operators, so it is capped.
      LogConfig: { Type: 'json-file', Config: { 'max-size': '16m', 'max-file': '2' } },
      RestartPolicy: { Name: 'no' },
      AutoRemove: false,
    },
  };

  return {
    name: containerNameFor(spec.runId),
    create,
    timeoutMs: spec.runforMs,
    stopGraceMs: opts.stopGraceMs,
    keepContainer: opts.keepContainer ?? false,
    // The image's USER may not be root: /outputs must be writable whoever it is.
    writableMountPoints: [OUTPUTS_MOUNT],
  };
}
