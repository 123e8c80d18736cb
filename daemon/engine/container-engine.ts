/**
 * The node's port to the container engine, in secd's own types. The only adapter is
 * daemon/engine/docker-engine.ts (the one file that imports dockerode); the executor's and the node
 * runs' tests use the in-memory test/doubles/fake-container-engine.ts behind the same port.
 */
import type { OutputsVolumeRequest } from './outputs-volume.js';

export type { OutputsVolumeMode, OutputsVolumeRequest } from './outputs-volume.js';

/** A host path made visible in the container (caches, datasets); /outputs is a volume, see VolumeMount. */
export interface BindMount {
  /** Absolute host path; must already exist (a bind of a missing path is an error, not a new folder). */
  source: string;
  /** Absolute path inside the container. */
  target: string;
  readOnly: boolean;
}

/** A bind mount as the Engine API's `HostConfig.Mounts` entry. */
export interface EngineBindMount {
  Type: 'bind';
  Source: string;
  Target: string;
  ReadOnly: boolean;
}

/**
 * A named volume as the Engine API's `HostConfig.Mounts` entry: dockerd (root) creates it at container
 * create, owns its files, and hands them back through the archive API, so the unprivileged node never
 * needs to read or remove files a root container made.
 */
export interface EngineVolumeMount {
  Type: 'volume';
  /** The volume's name (created on container create when missing). */
  Source: string;
  Target: string;
  ReadOnly: boolean;
  /** NoCopy: the volume starts empty, whatever the image has at Target; Labels: set when it is created. */
  VolumeOptions: { NoCopy: boolean; Labels: Record<string, string> };
}

/** One GPU request, as the Engine API's DeviceRequests entry; GPUs are always named by UUID. */
export interface GpuDeviceRequest {
  Driver: 'nvidia';
  DeviceIDs: string[];
  Capabilities: string[][];
}

/**
 * The subset of the Engine API's `POST /containers/create` body that secd sets. Written out here
 * (not borrowed from dockerode's types) so the profile is plain data that tests can read.
 */
export interface ContainerCreateOptions {
  Image: string;
  /** Overrides the image's CMD; the executor leaves it unset so the researcher's CMD runs. */
  Cmd?: string[];
  /** `KEY=value` strings. */
  Env: string[];
  Labels: Record<string, string>;
  /** Seconds between the stop signal and SIGKILL for a plain `docker stop`. */
  StopTimeout: number;
  HostConfig: {
    NetworkMode: 'none';
    CapDrop: string[];
    SecurityOpt: string[];
    Privileged: false;
    PidsLimit: number;
    Memory: number;
    MemorySwap: number;
    NanoCpus?: number;
    ShmSize?: number;
    OomScoreAdj: number;
    ReadonlyRootfs: boolean;
    Init: boolean;
    IpcMode: 'private';
    Mounts: Array<EngineBindMount | EngineVolumeMount>;
    DeviceRequests?: GpuDeviceRequest[];
    LogConfig: { Type: string; Config: Record<string, string> };
    RestartPolicy: { Name: 'no' };
    AutoRemove: false;
  };
}

/** Everything runContainer needs: what to create, and how long it may live. */
export interface ContainerRequest {
  /** Container name shown by `docker ps`; null lets the engine pick one. */
  name: string | null;
  create: ContainerCreateOptions;
  /** Hard limit on running time, from start; the container is stopped when it elapses. */
  timeoutMs: number;
  /** Time between the stop signal and SIGKILL, for timeouts and cancels alike. */
  stopGraceMs: number;
  /** Keep the exited container (debugging); by default it is removed once its log is captured. */
  keepContainer: boolean;
  /**
   * Mount points made mode 0777 before the container starts: a fresh volume is root's 0755, and an
   * image whose USER is not root must still be able to write there.
   */
  writableMountPoints?: string[];
}

/** How a container run ended. `start_failed`: the engine refused to create or start it. */
export type ContainerEnd = 'exited' | 'timed_out' | 'cancelled' | 'start_failed';

/** What runContainer observed. */
export interface ContainerRunResult {
  end: ContainerEnd;
  /** The process's exit status (137/143 after a stop); null when it never ran. */
  exitCode: number | null;
  /** The kernel killed it for exceeding its memory limit: the line a researcher needs most. */
  oomKilled: boolean;
  /** ISO-8601 UTC, from the engine's own record when it has one; null when it never started. */
  startedAt: string | null;
  finishedAt: string;
  containerId: string | null;
  /** A sentence for `start_failed`; null otherwise. */
  reason: string | null;
}

/** Limits of an adopted container (the same as its runContainer request had). */
export interface AdoptRequest {
  /** Hard limit on running time, counted from the container's own start time. */
  timeoutMs: number;
  stopGraceMs: number;
  keepContainer: boolean;
}

/** What buildImage needs. */
export interface BuildRequest {
  /** Folder sent as the build context (`.dockerignore` honoured; symlinks sent as links, never followed). */
  contextDir: string;
  /** Dockerfile path relative to contextDir. */
  dockerfile?: string;
  tag: string;
  labels?: Record<string, string>;
  /** Network for RUN steps; `none` unless the operator names one that reaches only the site's mirrors (DESIGN §12). */
  networkMode?: string;
  /** Variables every RUN step sees, whether or not the Dockerfile declares an ARG for them (build.env). */
  env?: Record<string, string>;
  /** Memory limit for RUN steps. */
  memoryBytes?: number;
  /** Every line of build output, in order, without its newline. */
  onLog(line: string): void;
  signal?: AbortSignal;
}

/** Why a build did not produce an image. */
export type BuildFailureCode = 'build_failed' | 'cancelled';

/** A build's outcome: failures are expected (bad Dockerfiles), so they are values. */
export type BuildResult =
  | { ok: true; imageId: string }
  | { ok: false; code: BuildFailureCode; reason: string };

/**
 * A container that carries the `secd.run` label, as found on the engine. The label says nothing of who
 * made it (any image may carry it, and so do a build's step containers): a restarted node adopts only
 * the container id its journal recorded.
 */
export interface RunContainer {
  id: string;
  /** The container's name without its leading `/`; null when the engine gives none. */
  name: string | null;
  runId: string;
  /** Engine state: created, running, exited, dead... */
  state: string;
  labels: Record<string, string>;
}

/** An image as secd needs to see it. */
export interface ImageInfo {
  id: string;
  labels: Record<string, string>;
}

/** Callbacks of one container run. */
export interface RunHooks {
  /** stdout and stderr interleaved in arrival order, raw bytes. */
  onLog(chunk: Buffer): void;
  /** Aborting stops the container the same way a timeout does, and the run ends `cancelled`. */
  signal?: AbortSignal;
  /**
   * Awaited once the container is created and before it starts, with its id: the executor journals it
   * there, so a container that ever ran is one the node recorded. A throw removes it, never started.
   */
  onCreated?(containerId: string): Promise<void>;
  /**
   * Awaited before secd stops a running container (its limit, a cancel), with why: the executor
   * journals it, so a node restarted after the stop still knows the end was secd's and not the
   * container's own. A throw is logged and the stop goes ahead.
   */
  onStopping?(why: 'timed_out' | 'cancelled'): Promise<void>;
  /** Called once the container is running, with its id (the executor reports `running` then). */
  onStarted?(containerId: string): void;
  /**
   * Awaited once the container has ended (exited, timed out, cancelled) and before it is removed: the
   * last moment its files (the outputs volume) can be read with readArchive. A throw is logged, not fatal.
   */
  onExited?(containerId: string): Promise<void>;
}

/** What the node asks of a container engine. Engine failures nobody expects (daemon gone) throw. */
export interface ContainerEngine {
  imageExists(ref: string): Promise<boolean>;
  /** null when the image is missing. */
  inspectImage(ref: string): Promise<ImageInfo | null>;
  buildImage(req: BuildRequest): Promise<BuildResult>;
  /** Creates, starts, waits for and (unless kept) removes a container, capturing all its output first. */
  runContainer(req: ContainerRequest, hooks: RunHooks): Promise<ContainerRunResult>;
  /** Containers labelled `secd.run`, in any state (the label is no proof of who made one). */
  findRunContainers(): Promise<RunContainer[]>;
  /**
   * Take over a run container found after a restart, running or already exited, as runContainer
   * would have seen it: start it if it was only created, enforce `timeoutMs` counted from its start,
   * stop it on abort, hand its whole output (read back with `docker logs`) to `onLog`, then remove it
   * unless kept. A container that is gone ends `start_failed` with a reason.
   */
  adoptContainer(id: string, req: AdoptRequest, hooks: RunHooks): Promise<ContainerRunResult>;
  /** Force-removes a container; a missing one is not an error. */
  removeContainer(id: string): Promise<void>;
  /**
   * A tar stream of `path` in a container, running or exited (`GET /containers/{id}/archive`); a folder
   * path ending in `/.` gives its content as `./name` entries. null when the container or path is gone.
   */
  readArchive(containerId: string, path: string): Promise<NodeJS.ReadableStream | null>;
  /**
   * Creates a run's outputs volume capped in size before its container (outputs-volume.ts: `quota` or
   * `tmpfs`, the latter kept mounted by a holder container until removeVolume). Repeatable.
   */
  createOutputsVolume(req: OutputsVolumeRequest): Promise<void>;
  /** null when volumes can be capped by quota here (node.yml `outputs_volume: quota`), else the engine's sentence why not. */
  probeOutputsQuota(): Promise<string | null>;
  /**
   * Removes a named volume, and first the holder keeping a `tmpfs` one mounted: true when removed,
   * false when it was not there or a container still uses it.
   */
  removeVolume(name: string): Promise<boolean>;
  /** Removes an image by reference; false when it was not there. */
  removeImage(ref: string): Promise<boolean>;
  /** `docker import` of a root filesystem tar; `changes` are Dockerfile instructions (CMD, ENV...). Returns the image id. */
  importRootfs(tarStream: NodeJS.ReadableStream, tag: string, changes: string[]): Promise<string>;
}

/** The logger the engine writes its docker calls to; pino's `(fields, msg)` shape. */
export interface EngineLogger {
  /** Expected absences (an image not built yet, a volume already gone); optional for small loggers. */
  debug?(fields: Record<string, unknown>, msg: string): void;
  info(fields: Record<string, unknown>, msg: string): void;
  warn(fields: Record<string, unknown>, msg: string): void;
  error(fields: Record<string, unknown>, msg: string): void;
}

/** A logger that drops everything, for callers that inject none. */
export const silentLogger: EngineLogger = {
  info() {},
  warn() {},
  error() {},
};
