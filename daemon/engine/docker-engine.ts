/**
 * The Docker adapter of the ContainerEngine port: the only file that imports dockerode. Every call
 * logs its start and end with ids; status codes that mean an expected outcome (304 already stopped,
 * 404 gone) become results, anything else throws. What a container does once it runs — limit, cancel,
 * wait, collect, remove — is container-supervisor.ts, the same for a started and an adopted container;
 * this file only makes the calls.
 */
import path from 'node:path';
import { Readable } from 'node:stream';
import Docker from 'dockerode';
import {
  silentLogger,
  type AdoptRequest,
  type BuildRequest,
  type BuildResult,
  type ContainerEngine,
  type ContainerRequest,
  type ContainerRunResult,
  type EngineLogger,
  type ImageInfo,
  type RunContainer,
  type RunHooks,
} from './container-engine.js';
import { containerSupervisor, notStartedResult, type ContainerRecord, type SupervisedContainer } from './container-supervisor.js';
import { assertSafeMounts } from '../executor/container-profile.js';
import { dockerBuild } from './docker-build.js';
import { recordOf, splitRepoTag } from './docker-records.js';
import { messageOf, statusOf } from './engine-errors.js';
import { demuxOutput, directoryTar, readImportProgress } from './engine-streams.js';
import { createOutputsVolume, probeOutputsQuota, removeHolders } from './outputs-volume.js';

/** How to reach the Docker Engine. */
export interface DockerEngineOptions {
  socketPath?: string;
  logger?: EngineLogger;
  /** How long to wait, after the container exited, for the engine to close its output stream. */
  logDrainMs?: number;
  /** The clock for timings and end times (default: the system clock; this adapter is the edge). */
  now?: () => Date;
  /**
   * The cgroup build containers are made under (node.yml `build.cgroup_parent`): its pids limit, set by
   * the sysadmin, is what bounds a build's processes (the Engine API's build ulimits do not hold root).
   */
  buildCgroupParent?: string;
}

/** The Docker Engine behind secd's ContainerEngine port (legacy builder, Engine API >= 1.41). */
export function createDockerEngine(opts: DockerEngineOptions = {}): ContainerEngine {
  const docker = new Docker({ socketPath: opts.socketPath ?? '/var/run/docker.sock' });
  const log = opts.logger ?? silentLogger;
  const logDrainMs = opts.logDrainMs ?? 10_000;
  const now = opts.now ?? (() => new Date());
  const ms = (since: number) => now().getTime() - since;
  const supervisor = containerSupervisor({ log, now, describeError: messageOf });

  /**
   * One engine call, logged. `expected` lists the status codes that are answers, not failures (404 of
   * an image that is not built yet, of a volume already gone): the caller turns them into values, so
   * they are logged at debug level and a successful run's output stays free of warnings.
   */
  async function call<T>(op: string, ids: Record<string, unknown>, fn: () => Promise<T>, expected: readonly number[] = []): Promise<T> {
    const t0 = now().getTime();
    log.info({ op, ...ids }, `docker ${op}`);
    try {
      const result = await fn();
      log.info({ op, ...ids, ms: ms(t0) }, `docker ${op} done`);
      return result;
    } catch (err) {
      const status = statusOf(err);
      if (status !== undefined && expected.includes(status)) log.debug?.({ op, ...ids, ms: ms(t0), status }, `docker ${op}: ${status}, as may be`);
      else log.warn({ op, ...ids, ms: ms(t0), status, err: messageOf(err) }, `docker ${op} failed`);
      throw err;
    }
  }

  async function inspectImage(ref: string): Promise<ImageInfo | null> {
    try {
      const info = await call('image.inspect', { ref }, () => docker.getImage(ref).inspect(), [404]);
      return { id: info.Id, labels: info.Config?.Labels ?? {} };
    } catch (err) {
      if (statusOf(err) === 404) return null;
      throw err;
    }
  }

  async function removeContainer(id: string): Promise<void> {
    try {
      await call('container.remove', { container: id }, () => docker.getContainer(id).remove({ force: true, v: true }), [404, 409]);
    } catch (err) {
      if (statusOf(err) === 404) return;
      // 409: removal already in progress, which is what we wanted.
      if (statusOf(err) === 409 && /already in progress/i.test(messageOf(err))) return;
      throw err;
    }
  }

  // true: the engine stopped a running container; false: it had already exited (304) or is gone (404).
  async function stopContainer(id: string, graceSeconds: number): Promise<boolean> {
    const c = docker.getContainer(id);
    try {
      await call('container.stop', { container: id, t: graceSeconds }, () => c.stop({ t: graceSeconds }), [304, 404]);
      return true;
    } catch (err) {
      const status = statusOf(err);
      if (status === 304 || status === 404) return false;
      log.error({ container: id, err: messageOf(err) }, 'stop failed; killing');
      try {
        await call('container.kill', { container: id }, () => c.kill(), [404, 409]);
        return true;
      } catch (killErr) {
        const s = statusOf(killErr);
        if (s === 404 || s === 409) return false;
        throw killErr;
      }
    }
  }

  // A fresh volume's mount point is root's 0755: open it to the image's USER, whoever that is.
  async function openMountPoints(container: Docker.Container, targets: string[], ids: Record<string, unknown>): Promise<void> {
    for (const target of targets) {
      const parent = path.posix.dirname(target);
      const tar = directoryTar(path.posix.basename(target), 0o777, now());
      await call('container.putArchive', { ...ids, path: target }, () => container.putArchive(tar, { path: parent }));
    }
  }

  // The engine calls supervision makes, on one container, with its expected status codes as values.
  function supervised(container: Docker.Container, ids: Record<string, unknown>): SupervisedContainer {
    return {
      id: container.id,
      ids,
      async wait() {
        try {
          const waited = (await call('container.wait', ids, () => container.wait(), [404])) as { StatusCode?: number };
          return typeof waited.StatusCode === 'number' ? waited.StatusCode : null;
        } catch (err) {
          // 404: removed behind our back; it ran and is gone, with no exit code to report.
          if (statusOf(err) === 404) return null;
          throw err;
        }
      },
      stop: (graceSeconds) => stopContainer(container.id, graceSeconds),
      async inspect() {
        try {
          return recordOf(await call('container.inspect', ids, () => container.inspect(), [404]));
        } catch (err) {
          if (statusOf(err) === 404) return null;
          throw err;
        }
      },
      remove: () => removeContainer(container.id),
    };
  }

  // dockerode's own demuxer splits the engine's multiplexed stream; a failing stream is logged, not thrown.
  const demuxInto = (stream: NodeJS.ReadableStream, onLog: (chunk: Buffer) => void, ids: Record<string, unknown>) =>
    demuxOutput(stream, docker.modem.demuxStream.bind(docker.modem), onLog, (err) => log.warn({ ...ids, err: err.message }, 'container output stream failed'));

  const buildImage = (req: BuildRequest): Promise<BuildResult> => dockerBuild({ docker, log, now, inspectImage, ...(opts.buildCgroupParent ? { cgroupParent: opts.buildCgroupParent } : {}) }, req);

  async function runContainer(req: ContainerRequest, hooks: RunHooks): Promise<ContainerRunResult> {
    // The profile is checked again here: whatever built the request, no run gets a network or the engine.
    if (req.create.HostConfig.NetworkMode !== 'none') throw new Error('run containers must have NetworkMode none');
    assertSafeMounts(req.create.HostConfig.Mounts);
    if (hooks.signal?.aborted) return notStartedResult('cancelled', null, null, now());

    const runId = req.create.Labels['secd.run'];
    let container: Docker.Container;
    try {
      container = await call('container.create', { run: runId, name: req.name }, () =>
        docker.createContainer({ ...req.create, ...(req.name ? { name: req.name } : {}) } as Docker.ContainerCreateOptions),
      );
    } catch (err) {
      if (statusOf(err) === undefined) throw err;
      return notStartedResult('start_failed', `could not create the container: ${messageOf(err)}`, null, now());
    }
    const ids = { run: runId, container: container.id };
    const c = supervised(container, ids);
    const cleanup = () => supervisor.removeUnlessKept(c, req.keepContainer);

    try {
      // Mount points first: once onCreated has journaled it, a restarted node may start this container
      // as it is, so it must be ready to start by then.
      await openMountPoints(container, req.writableMountPoints ?? [], ids);
      await hooks.onCreated?.(container.id);
    } catch (err) {
      await cleanup();
      if (statusOf(err) === undefined) throw err;
      return notStartedResult('start_failed', `could not prepare the container's mounts: ${messageOf(err)}`, c.id, now());
    }

    // Attach before start: a container that exits within milliseconds still has every byte captured.
    let output: NodeJS.ReadableStream;
    try {
      output = await call('container.attach', ids, () => container.attach({ stream: true, stdout: true, stderr: true }));
    } catch (err) {
      await cleanup();
      throw err;
    }
    const destroyOutput = () => (output as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.();
    const outputDone = demuxInto(output, hooks.onLog, ids);
    return follow(container, c, { status: 'created', running: false, startedAt: null }, req, hooks, {
      endMessage: 'container run ended',
      close: destroyOutput,
      async deliver() {
        // The engine closes the stream once the container's pipes drain; give it a bounded while.
        let drainTimer: NodeJS.Timeout | undefined;
        const drained = await Promise.race([
          outputDone.then(() => true),
          new Promise<boolean>((resolve) => {
            drainTimer = setTimeout(() => resolve(false), logDrainMs);
          }),
        ]);
        clearTimeout(drainTimer);
        if (!drained) {
          log.warn({ ...ids }, 'container output did not close after exit; the log may be incomplete');
          destroyOutput();
        }
      },
    });
  }

  async function adoptContainer(id: string, req: AdoptRequest, hooks: RunHooks): Promise<ContainerRunResult> {
    const container = docker.getContainer(id);
    const info = await supervised(container, { container: id }).inspect();
    if (!info) return notStartedResult('start_failed', 'the container is gone', id, now());
    const ids = { run: info.labels['secd.run'], container: id, adopted: true };
    return follow(container, supervised(container, ids), info, req, hooks, {
      endMessage: 'adopted container ended',
      close: () => {},
      async deliver() {
        // Attached output died with the previous daemon: the engine's log holds all of it (json-file, capped).
        try {
          const raw = await call('container.logs', ids, () => container.logs({ stdout: true, stderr: true, follow: false }));
          await demuxInto(Readable.from([Buffer.isBuffer(raw) ? raw : Buffer.from(String(raw))]), hooks.onLog, ids);
        } catch (err) {
          if (statusOf(err) !== 404) log.warn({ ...ids, err: messageOf(err) }, 'could not read the container log');
        }
      },
    });
  }

  /**
   * One road for a container this daemon just made and one it found after a restart: start it if it
   * is only created (the daemon may have stopped in between), then supervise it to its end, its
   * limit counted from its own start (a restart of the daemon does not extend it). Only where the
   * output comes from differs: the stream attached before start, or the engine's log.
   */
  async function follow(
    container: Docker.Container,
    c: SupervisedContainer,
    state: Pick<ContainerRecord, 'status' | 'running' | 'startedAt'>,
    req: AdoptRequest,
    hooks: RunHooks,
    output: { endMessage: string; close(): void; deliver(): Promise<void> },
  ): Promise<ContainerRunResult> {
    let { running, startedAt } = state;
    if (state.status === 'created') {
      const notStarted = async (end: 'cancelled' | 'start_failed', reason: string | null) => {
        output.close();
        await supervisor.removeUnlessKept(c, req.keepContainer);
        return notStartedResult(end, reason, c.id, now());
      };
      if (hooks.signal?.aborted) return notStarted('cancelled', null);
      try {
        await call('container.start', c.ids, () => container.start());
      } catch (err) {
        if (statusOf(err) === undefined) {
          output.close();
          await supervisor.removeUnlessKept(c, req.keepContainer);
          throw err;
        }
        return notStarted('start_failed', `could not start the container: ${messageOf(err)}`);
      }
      running = true;
      startedAt = now().toISOString();
    }
    const startedMs = Date.parse(startedAt ?? now().toISOString());
    return supervisor.supervise(c, {
      limits: req,
      hooks,
      timeLeftMs: running ? req.timeoutMs - (now().getTime() - startedMs) : null,
      startedAt,
      endMessage: output.endMessage,
      deliverOutput: () => output.deliver(),
    });
  }

  return {
    async imageExists(ref) {
      return (await inspectImage(ref)) !== null;
    },

    inspectImage,

    buildImage,

    runContainer,

    adoptContainer,

    async findRunContainers(): Promise<RunContainer[]> {
      const list = await call('container.list', { label: 'secd.run' }, () =>
        docker.listContainers({ all: true, filters: { label: ['secd.run'] } }),
      );
      return list.map((c) => ({
        id: c.Id,
        name: c.Names?.[0]?.replace(/^\//, '') ?? null,
        runId: c.Labels['secd.run'] ?? '',
        state: c.State,
        labels: c.Labels,
      }));
    },

    removeContainer,

    async readArchive(containerId, p) {
      try {
        return await call('container.archive', { container: containerId, path: p }, () => docker.getContainer(containerId).getArchive({ path: p }), [404]);
      } catch (err) {
        if (statusOf(err) === 404) return null;
        throw err;
      }
    },

    createOutputsVolume: (req) => createOutputsVolume(docker, call, req),

    probeOutputsQuota: () => probeOutputsQuota(docker, call),

    async removeVolume(name) {
      const remove = () => call('volume.remove', { volume: name }, () => docker.getVolume(name).remove(), [404, 409]);
      try {
        await remove();
        return true;
      } catch (err) {
        if (statusOf(err) === 404) return false;
        if (statusOf(err) !== 409) throw err;
      }
      // 409: in use. A tmpfs volume's holder goes with it (looked for only here, so a plain volume
      // costs no extra call); a container kept for debugging keeps it until that container goes.
      if ((await removeHolders(docker, call, name)) === 0) return false;
      try {
        await remove();
        return true;
      } catch (err) {
        if (statusOf(err) === 404) return false;
        if (statusOf(err) === 409) return false;
        throw err;
      }
    },

    async removeImage(ref) {
      try {
        await call('image.remove', { ref }, () => docker.getImage(ref).remove({ force: true }), [404]);
        return true;
      } catch (err) {
        if (statusOf(err) === 404) return false;
        throw err;
      }
    },

    async importRootfs(tarStream, tag, changes) {
      const { repo, tag: version } = splitRepoTag(tag);
      const stream = await call('image.import', { tag }, () => docker.importImage(tarStream, { repo, tag: version, changes }));
      const { lastError, reported } = await readImportProgress(stream);
      if (lastError !== null) throw new Error(`docker import of ${tag} failed: ${lastError}`);
      const info = await inspectImage(tag);
      if (info === null) throw new Error(`docker import of ${tag} reported ${reported ?? 'nothing'} but the tag is missing`);
      log.info({ op: 'image.import', tag, image: info.id }, 'imported root filesystem');
      return info.id;
    },
  };
}
