/**
 * The Docker adapter of the ContainerEngine port: the only file that imports dockerode. Every call
 * logs its start and end with ids; status codes that mean an expected outcome (304 already stopped,
 * 404 gone) become results, anything else throws.
 */
import path from 'node:path';
import Docker from 'dockerode';
import { pack } from 'tar-fs';
import {
  silentLogger,
  type AdoptRequest,
  type BuildRequest,
  type BuildResult,
  type ContainerEngine,
  type ContainerEnd,
  type ContainerRequest,
  type ContainerRunResult,
  type EngineLogger,
  type ImageInfo,
  type RunContainer,
  type RunHooks,
} from './container-engine.js';
import { assertSafeMounts } from '../executor/container-profile.js';
import { contextIgnore } from './docker-ignore.js';
import { directoryTar, readJsonLines } from './engine-streams.js';

/** How to reach the Docker Engine. */
export interface DockerEngineOptions {
  socketPath?: string;
  logger?: EngineLogger;
  /** How long to wait, after the container exited, for the engine to close its output stream. */
  logDrainMs?: number;
}

interface EngineError {
  statusCode?: number;
  json?: { message?: string } | null;
  message?: string;
  reason?: string;
}

function statusOf(err: unknown): number | undefined {
  return typeof err === 'object' && err !== null ? (err as EngineError).statusCode : undefined;
}

// docker-modem puts the engine's own sentence in `json.message`; its `message` adds HTTP noise.
function messageOf(err: unknown): string {
  if (typeof err !== 'object' || err === null) return String(err);
  const e = err as EngineError;
  const fromJson = e.json && typeof e.json === 'object' ? e.json.message : undefined;
  return (fromJson ?? e.message ?? String(err)).trim();
}

function isoOrNull(t: string | undefined): string | null {
  if (!t || t.startsWith('0001-01-01')) return null;
  const d = new Date(t);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

function splitRepoTag(ref: string): { repo: string; tag: string } {
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  return colon > slash ? { repo: ref.slice(0, colon), tag: ref.slice(colon + 1) } : { repo: ref, tag: 'latest' };
}

/**
 * Splits the engine's multiplexed attach stream (8-byte header: type, 3 zero bytes, big-endian
 * length) into payloads; stdout and stderr go to the same sink in the order they arrived.
 */
function createDemuxer(onPayload: (b: Buffer) => void): { push(chunk: Buffer): void; flush(): void } {
  let pending: Buffer = Buffer.alloc(0);
  let raw = false;
  return {
    push(chunk) {
      if (raw) return onPayload(chunk);
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      while (pending.length >= 8) {
        const type = pending[0];
        if (type !== 0 && type !== 1 && type !== 2) {
          // Not multiplexed (a TTY container): pass everything through as is.
          raw = true;
          onPayload(pending);
          pending = Buffer.alloc(0);
          return;
        }
        const size = pending.readUInt32BE(4);
        if (pending.length < 8 + size) break;
        if (size > 0) onPayload(Buffer.from(pending.subarray(8, 8 + size)));
        pending = pending.subarray(8 + size);
      }
    },
    flush() {
      // A stream cut mid-frame still delivers what arrived of it.
      if (pending.length > 8) onPayload(Buffer.from(pending.subarray(8)));
      pending = Buffer.alloc(0);
    },
  };
}

// setTimeout fires at once past ~24.8 days; runs may be allowed longer than that.
function setLongTimeout(fn: () => void, ms: number): () => void {
  const MAX = 2 ** 31 - 1;
  let handle: NodeJS.Timeout;
  const arm = (left: number) => {
    handle = setTimeout(() => (left > MAX ? arm(left - MAX) : fn()), Math.min(left, MAX));
  };
  arm(Math.max(0, ms));
  return () => clearTimeout(handle);
}

/** The Docker Engine behind secd's ContainerEngine port (legacy builder, Engine API >= 1.41). */
export function createDockerEngine(opts: DockerEngineOptions = {}): ContainerEngine {
  const docker = new Docker({ socketPath: opts.socketPath ?? '/var/run/docker.sock' });
  const log = opts.logger ?? silentLogger;
  const logDrainMs = opts.logDrainMs ?? 10_000;

  async function call<T>(op: string, ids: Record<string, unknown>, fn: () => Promise<T>): Promise<T> {
    const t0 = Date.now();
    log.info({ op, ...ids }, `docker ${op}`);
    try {
      const result = await fn();
      log.info({ op, ...ids, ms: Date.now() - t0 }, `docker ${op} done`);
      return result;
    } catch (err) {
      log.warn({ op, ...ids, ms: Date.now() - t0, status: statusOf(err), err: messageOf(err) }, `docker ${op} failed`);
      throw err;
    }
  }

  async function inspectImage(ref: string): Promise<ImageInfo | null> {
    try {
      const info = await call('image.inspect', { ref }, () => docker.getImage(ref).inspect());
      return { id: info.Id, labels: info.Config?.Labels ?? {} };
    } catch (err) {
      if (statusOf(err) === 404) return null;
      throw err;
    }
  }

  async function removeContainer(id: string): Promise<void> {
    try {
      await call('container.remove', { container: id }, () => docker.getContainer(id).remove({ force: true, v: true }));
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
      await call('container.stop', { container: id, t: graceSeconds }, () => c.stop({ t: graceSeconds }));
      return true;
    } catch (err) {
      const status = statusOf(err);
      if (status === 304 || status === 404) return false;
      log.error({ container: id, err: messageOf(err) }, 'stop failed; killing');
      try {
        await call('container.kill', { container: id }, () => c.kill());
        return true;
      } catch (killErr) {
        const s = statusOf(killErr);
        if (s === 404 || s === 409) return false;
        throw killErr;
      }
    }
  }

  // The caller's last look at an ended container (its outputs) before it is removed.
  async function afterExit(id: string, ids: Record<string, unknown>, hooks: RunHooks): Promise<void> {
    if (!hooks.onExited) return;
    try {
      await hooks.onExited(id);
    } catch (err) {
      log.error({ ...ids, err: messageOf(err) }, 'reading the ended container failed');
    }
  }

  // A fresh volume's mount point is root's 0755: open it to the image's USER, whoever that is.
  async function openMountPoints(container: Docker.Container, targets: string[], ids: Record<string, unknown>): Promise<void> {
    for (const target of targets) {
      const parent = path.posix.dirname(target);
      const tar = directoryTar(path.posix.basename(target), 0o777);
      await call('container.putArchive', { ...ids, path: target }, () => container.putArchive(tar, { path: parent }));
    }
  }

  async function buildImage(req: BuildRequest): Promise<BuildResult> {
    const ids = { tag: req.tag, context: req.contextDir };
    if (req.signal?.aborted) return { ok: false, code: 'cancelled', reason: 'build cancelled' };
    const dockerfile = req.dockerfile ?? 'Dockerfile';
    const ignore = await contextIgnore(req.contextDir, dockerfile);
    // strict:false skips sockets and fifos instead of failing; symlinks travel as links, never followed.
    const context = pack(path.resolve(req.contextDir), { ignore, strict: false, dereference: false });
    let contextError: Error | null = null;
    context.on('error', (err: Error) => {
      contextError = err;
    });

    let textBuf = '';
    const emitText = (text: string, final = false) => {
      textBuf += text;
      let i: number;
      while ((i = textBuf.indexOf('\n')) >= 0) {
        req.onLog(textBuf.slice(0, i).replace(/\r$/, ''));
        textBuf = textBuf.slice(i + 1);
      }
      if (final && textBuf) {
        req.onLog(textBuf);
        textBuf = '';
      }
    };
    let imageId: string | null = null;
    let shortId: string | null = null;
    let lastError: string | null = null;

    const t0 = Date.now();
    log.info({ op: 'build', ...ids }, 'docker build');
    try {
      const stream = await docker.buildImage(context as unknown as NodeJS.ReadableStream, {
        t: req.tag,
        dockerfile,
        labels: req.labels ?? {},
        rm: true,
        forcerm: true,
        networkmode: req.networkMode ?? 'none',
        ...(req.memoryBytes ? { memory: req.memoryBytes, memswap: req.memoryBytes } : {}),
        ...(req.signal ? { abortSignal: req.signal } : {}),
      } as Docker.ImageBuildOptions);
      await readJsonLines(
        stream,
        (obj) => {
          if (typeof obj.stream === 'string') {
            emitText(obj.stream);
            const m = /^Successfully built ([0-9a-f]+)\s*$/m.exec(obj.stream);
            if (m) shortId = m[1]!;
          }
          if (typeof obj.status === 'string') emitText(`${obj.status}${typeof obj.progress === 'string' ? ` ${obj.progress}` : ''}\n`);
          const aux = obj.aux as { ID?: unknown } | undefined;
          if (aux && typeof aux.ID === 'string') imageId = aux.ID;
          const detail = obj.errorDetail as { message?: unknown } | undefined;
          const error = typeof detail?.message === 'string' ? detail.message : typeof obj.error === 'string' ? obj.error : null;
          if (error !== null) {
            emitText('', true);
            lastError = error.trim();
            req.onLog(`ERROR: ${lastError}`);
          }
        },
        (line) => emitText(`${line}\n`),
      );
      emitText('', true);
    } catch (err) {
      emitText('', true);
      log.warn({ op: 'build', ...ids, ms: Date.now() - t0, status: statusOf(err), err: messageOf(err) }, 'docker build failed');
      if (req.signal?.aborted) return { ok: false, code: 'cancelled', reason: 'build cancelled' };
      if (contextError !== null) {
        const reason = `could not read the build context: ${(contextError as Error).message}`;
        req.onLog(`ERROR: ${reason}`);
        return { ok: false, code: 'build_failed', reason };
      }
      if (statusOf(err) !== undefined) {
        const reason = messageOf(err);
        req.onLog(`ERROR: ${reason}`);
        return { ok: false, code: 'build_failed', reason };
      }
      throw err;
    }
    if (req.signal?.aborted) return { ok: false, code: 'cancelled', reason: 'build cancelled' };
    if (lastError !== null) {
      log.info({ op: 'build', ...ids, ms: Date.now() - t0, err: lastError }, 'docker build done: failed');
      return { ok: false, code: 'build_failed', reason: lastError };
    }
    // Older engines only print "Successfully built <short id>"; the tag always resolves to the full id.
    if (imageId === null) imageId = (await inspectImage(req.tag))?.id ?? null;
    if (imageId === null) {
      const reason = shortId ? `built ${shortId} but the tag ${req.tag} is missing` : 'the build ended without an image';
      return { ok: false, code: 'build_failed', reason };
    }
    log.info({ op: 'build', ...ids, image: imageId, ms: Date.now() - t0 }, 'docker build done');
    return { ok: true, imageId };
  }

  async function runContainer(req: ContainerRequest, hooks: RunHooks): Promise<ContainerRunResult> {
    const now = () => new Date().toISOString();
    const notStarted = (end: ContainerEnd, reason: string | null, containerId: string | null = null): ContainerRunResult => ({
      end,
      exitCode: null,
      oomKilled: false,
      startedAt: null,
      finishedAt: now(),
      containerId,
      reason,
    });
    // The profile is checked again here: whatever built the request, no run gets a network or the engine.
    if (req.create.HostConfig.NetworkMode !== 'none') throw new Error('run containers must have NetworkMode none');
    assertSafeMounts(req.create.HostConfig.Mounts);
    if (hooks.signal?.aborted) return notStarted('cancelled', null);

    const runId = req.create.Labels['secd.run'];
    let container: Docker.Container;
    try {
      container = await call('container.create', { run: runId, name: req.name }, () =>
        docker.createContainer({ ...req.create, ...(req.name ? { name: req.name } : {}) } as Docker.ContainerCreateOptions),
      );
    } catch (err) {
      if (statusOf(err) === undefined) throw err;
      return notStarted('start_failed', `could not create the container: ${messageOf(err)}`);
    }
    const id = container.id;
    const ids = { run: runId, container: id };
    const cleanup = async () => {
      if (req.keepContainer) return;
      try {
        await removeContainer(id);
      } catch (err) {
        log.warn({ ...ids, err: messageOf(err) }, 'could not remove the container');
      }
    };

    try {
      await openMountPoints(container, req.writableMountPoints ?? [], ids);
    } catch (err) {
      await cleanup();
      if (statusOf(err) === undefined) throw err;
      return notStarted('start_failed', `could not prepare the container's mounts: ${messageOf(err)}`, id);
    }

    // Attach before start: a container that exits within milliseconds still has every byte captured.
    const demux = createDemuxer((b) => hooks.onLog(b));
    let output: NodeJS.ReadableStream;
    try {
      output = await call('container.attach', ids, () => container.attach({ stream: true, stdout: true, stderr: true }));
    } catch (err) {
      await cleanup();
      throw err;
    }
    const outputDone = new Promise<void>((resolve) => {
      output.on('data', (chunk: Buffer) => demux.push(chunk));
      output.on('end', resolve);
      output.on('close', resolve);
      output.on('error', (err: Error) => {
        log.warn({ ...ids, err: err.message }, 'container output stream failed');
        resolve();
      });
    });

    try {
      await call('container.start', ids, () => container.start());
    } catch (err) {
      (output as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.();
      await cleanup();
      if (statusOf(err) === undefined) throw err;
      return notStarted('start_failed', `could not start the container: ${messageOf(err)}`, id);
    }
    const localStart = now();
    hooks.onStarted?.(id);

    // Timeout and cancel take the same road: stop (signal, grace, SIGKILL); the first reason wins.
    let stopReason: 'timed_out' | 'cancelled' | null = null;
    let stopping: Promise<boolean> | null = null;
    const graceSeconds = Math.ceil(req.stopGraceMs / 1000);
    const requestStop = (why: 'timed_out' | 'cancelled') => {
      if (stopReason !== null) return;
      stopReason = why;
      log.info({ ...ids, why }, 'stopping container');
      stopping = stopContainer(id, graceSeconds).catch((err: unknown) => {
        log.error({ ...ids, err: messageOf(err) }, 'could not stop the container');
        return false;
      });
    };
    const clearTimer = setLongTimeout(() => requestStop('timed_out'), req.timeoutMs);
    const onAbort = () => requestStop('cancelled');
    hooks.signal?.addEventListener('abort', onAbort, { once: true });
    if (hooks.signal?.aborted) onAbort();

    let exitCode: number | null = null;
    try {
      const waited = (await call('container.wait', ids, () => container.wait())) as { StatusCode?: number };
      exitCode = typeof waited.StatusCode === 'number' ? waited.StatusCode : null;
    } catch (err) {
      // 404: removed behind our back; it ran and is gone, with no exit code to report.
      if (statusOf(err) !== 404) throw err;
    } finally {
      clearTimer();
      hooks.signal?.removeEventListener('abort', onAbort);
    }

    let end: ContainerEnd = 'exited';
    if (stopping !== null && stopReason !== null && (await stopping)) end = stopReason;

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
      (output as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.();
    }
    demux.flush();

    let startedAt: string | null = localStart;
    let finishedAt = now();
    let oomKilled = false;
    try {
      const info = await call('container.inspect', ids, () => container.inspect());
      startedAt = isoOrNull(info.State?.StartedAt) ?? startedAt;
      finishedAt = isoOrNull(info.State?.FinishedAt) ?? finishedAt;
      oomKilled = info.State?.OOMKilled === true;
      if (exitCode === null && typeof info.State?.ExitCode === 'number') exitCode = info.State.ExitCode;
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
    }
    await afterExit(id, ids, hooks);
    await cleanup();
    log.info({ ...ids, end, exitCode, oomKilled }, 'container run ended');
    return { end, exitCode, oomKilled, startedAt, finishedAt, containerId: id, reason: null };
  }

  async function adoptContainer(id: string, req: AdoptRequest, hooks: RunHooks): Promise<ContainerRunResult> {
    const now = () => new Date().toISOString();
    const container = docker.getContainer(id);
    const gone = (reason: string): ContainerRunResult => ({
      end: 'start_failed',
      exitCode: null,
      oomKilled: false,
      startedAt: null,
      finishedAt: now(),
      containerId: id,
      reason,
    });
    const inspect = async (ids: Record<string, unknown>) => {
      try {
        return await call('container.inspect', ids, () => container.inspect());
      } catch (err) {
        if (statusOf(err) === 404) return null;
        throw err;
      }
    };
    let info = await inspect({ container: id });
    if (!info) return gone('the container is gone');
    const ids = { run: info.Config?.Labels?.['secd.run'], container: id, adopted: true };
    const cleanup = async () => {
      if (req.keepContainer) return;
      try {
        await removeContainer(id);
      } catch (err) {
        log.warn({ ...ids, err: messageOf(err) }, 'could not remove the container');
      }
    };
    if (info.State?.Status === 'created') {
      // Created but never started (the daemon stopped in between): start it now, as runContainer would have.
      if (hooks.signal?.aborted) {
        await cleanup();
        return { ...gone('cancelled before it started'), end: 'cancelled', reason: null };
      }
      try {
        await call('container.start', ids, () => container.start());
      } catch (err) {
        if (statusOf(err) === undefined) throw err;
        await cleanup();
        return gone(`could not start the container: ${messageOf(err)}`);
      }
      info = await inspect(ids);
      if (!info) return gone('the container is gone');
    }
    const startedMs = Date.parse(isoOrNull(info.State?.StartedAt) ?? now());
    const running = info.State?.Running === true;
    if (running) hooks.onStarted?.(id);

    let stopReason: 'timed_out' | 'cancelled' | null = null;
    let stopping: Promise<boolean> | null = null;
    const graceSeconds = Math.ceil(req.stopGraceMs / 1000);
    const requestStop = (why: 'timed_out' | 'cancelled') => {
      if (stopReason !== null) return;
      stopReason = why;
      log.info({ ...ids, why }, 'stopping container');
      stopping = stopContainer(id, graceSeconds).catch((err: unknown) => {
        log.error({ ...ids, err: messageOf(err) }, 'could not stop the container');
        return false;
      });
    };
    let clearTimer = () => {};
    const onAbort = () => requestStop('cancelled');
    if (running) {
      // The limit counts from the container's own start: a restart of the daemon does not extend it.
      clearTimer = setLongTimeout(() => requestStop('timed_out'), req.timeoutMs - (Date.now() - startedMs));
      hooks.signal?.addEventListener('abort', onAbort, { once: true });
      if (hooks.signal?.aborted) onAbort();
    }
    let exitCode: number | null = null;
    try {
      const waited = (await call('container.wait', ids, () => container.wait())) as { StatusCode?: number };
      exitCode = typeof waited.StatusCode === 'number' ? waited.StatusCode : null;
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
    } finally {
      clearTimer();
      hooks.signal?.removeEventListener('abort', onAbort);
    }
    let end: ContainerEnd = 'exited';
    if (stopping !== null && stopReason !== null && (await stopping)) end = stopReason;

    // Attached output died with the previous daemon: the engine's log holds all of it (json-file, capped).
    const demux = createDemuxer((b) => hooks.onLog(b));
    try {
      const raw = await call('container.logs', ids, () => container.logs({ stdout: true, stderr: true, follow: false }));
      demux.push(Buffer.isBuffer(raw) ? raw : Buffer.from(String(raw)));
      demux.flush();
    } catch (err) {
      if (statusOf(err) !== 404) log.warn({ ...ids, err: messageOf(err) }, 'could not read the container log');
    }
    let startedAt: string | null = isoOrNull(info.State?.StartedAt);
    let finishedAt = now();
    let oomKilled = false;
    const last = await inspect(ids);
    if (last) {
      startedAt = isoOrNull(last.State?.StartedAt) ?? startedAt;
      finishedAt = isoOrNull(last.State?.FinishedAt) ?? finishedAt;
      oomKilled = last.State?.OOMKilled === true;
      if (exitCode === null && typeof last.State?.ExitCode === 'number') exitCode = last.State.ExitCode;
    }
    await afterExit(id, ids, hooks);
    await cleanup();
    log.info({ ...ids, end, exitCode, oomKilled }, 'adopted container ended');
    return { end, exitCode, oomKilled, startedAt, finishedAt, containerId: id, reason: null };
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
        runId: c.Labels['secd.run'] ?? '',
        state: c.State,
        labels: c.Labels,
      }));
    },

    removeContainer,

    async readArchive(containerId, p) {
      try {
        return await call('container.archive', { container: containerId, path: p }, () => docker.getContainer(containerId).getArchive({ path: p }));
      } catch (err) {
        if (statusOf(err) === 404) return null;
        throw err;
      }
    },

    async removeVolume(name) {
      try {
        await call('volume.remove', { volume: name }, () => docker.getVolume(name).remove());
        return true;
      } catch (err) {
        if (statusOf(err) === 404) return false;
        // 409: a container (one kept for debugging) still uses it; it goes when that container does.
        if (statusOf(err) === 409) return false;
        throw err;
      }
    },

    async removeImage(ref) {
      try {
        await call('image.remove', { ref }, () => docker.getImage(ref).remove({ force: true }));
        return true;
      } catch (err) {
        if (statusOf(err) === 404) return false;
        throw err;
      }
    },

    async importRootfs(tarStream, tag, changes) {
      const { repo, tag: version } = splitRepoTag(tag);
      let lastError: string | null = null;
      let reported: string | null = null;
      const stream = await call('image.import', { tag }, () => docker.importImage(tarStream, { repo, tag: version, changes }));
      await readJsonLines(
        stream,
        (obj) => {
          const detail = obj.errorDetail as { message?: unknown } | undefined;
          if (typeof detail?.message === 'string') lastError = detail.message;
          else if (typeof obj.error === 'string') lastError = obj.error;
          if (typeof obj.status === 'string' && /^sha256:[0-9a-f]{64}$/.test(obj.status.trim())) reported = obj.status.trim();
        },
        () => {},
      );
      if (lastError !== null) throw new Error(`docker import of ${tag} failed: ${lastError}`);
      const info = await inspectImage(tag);
      if (info === null) throw new Error(`docker import of ${tag} reported ${reported ?? 'nothing'} but the tag is missing`);
      log.info({ op: 'image.import', tag, image: info.id }, 'imported root filesystem');
      return info.id;
    },
  };
}
