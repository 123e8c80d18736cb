/**
 * A container engine in memory, behind the same ContainerEngine port as the Docker adapter, so the
 * executor's and the node's failure paths run in milliseconds without Docker (CONVENTIONS: "tests of
 * the logic use fakes; tests of the adapter use the real thing"). Scripted, in the order they are asked
 * for: builds succeed, fail or hang until cancelled; containers exit with a code, or run until they are
 * stopped (the run's limit, a cancel) or the test ends them; what they print and write to /outputs is
 * given by the script and read back as the engine would (`docker logs`, the archive API).
 *
 * A node restart is played with two connections to one engine: `halt()` is the daemon dying (its
 * pending calls never return, and its timers no longer stop anything), `reconnect()` is the next
 * daemon's engine, which finds the same containers, labels, images and volumes. `haltWhen` stops the
 * daemon at the call where a test wants it to die.
 *
 * Deliberate simplifications: a stop is immediate (no grace: the exit status is 143 at once), a build
 * reads no context, and only `/outputs/.` can be read back. Compiled into dist/ with the other doubles:
 * no test-runner imports.
 */
import type {
  AdoptRequest,
  BuildRequest,
  BuildResult,
  ContainerEngine,
  ContainerEnd,
  ContainerRequest,
  ContainerRunResult,
  ImageInfo,
  OutputsVolumeRequest,
  RunContainer,
  RunHooks,
} from '../../daemon/engine/container-engine.js';
import { FakeEngineState, outputsTar, type FakeBuild, type FakeCall, type FakeContainerScript, type FakeContainerState } from './fake-engine-state.js';

export { FakeEngineState, type FakeBuild, type FakeCall, type FakeContainerScript, type FakeContainerState } from './fake-engine-state.js';

const NEVER = new Promise<never>(() => {});

/** The in-memory ContainerEngine; see the header. */
export class FakeContainerEngine implements ContainerEngine {
  /** Every call this connection took, in order. */
  readonly calls: FakeCall[] = [];
  /** When it says so, the daemon dies at that call: see `halt`. */
  haltWhen: ((call: FakeCall) => boolean) | null = null;
  private halted = false;
  private readonly state: FakeEngineState;

  /** A fresh engine (its clock: `now`), or one more connection to `state`. */
  constructor(options: { now?: () => Date; state?: FakeEngineState } = {}) {
    this.state = options.state ?? new FakeEngineState(options.now ?? (() => new Date()));
  }

  /** The next builds, in order (default once they run out: succeed). */
  scriptBuild(...builds: FakeBuild[]): this {
    this.state.builds.push(...builds);
    return this;
  }

  /** The next containers run, in order (default once they run out: print nothing, exit 0). */
  scriptContainer(...scripts: FakeContainerScript[]): this {
    this.state.scripts.push(...scripts);
    return this;
  }

  /** The daemon that holds this connection dies: its pending and later calls never return. */
  halt(): void {
    this.halted = true;
  }

  /** The engine as the next daemon finds it: the same containers, images and volumes. */
  reconnect(): FakeContainerEngine {
    return new FakeContainerEngine({ state: this.state });
  }

  /** A container's process ends on its own with `exitCode` (no daemon needs to watch). */
  exitContainer(runId: string, exitCode: number): void {
    for (const c of this.state.containers.values()) if (c.runId === runId) this.state.exit(c, exitCode);
  }

  /**
   * A container someone else made, as `docker run --label` or a build step's image `LABEL` would leave
   * it (no secd call): running until stopped, or exited with `exitCode`. Returns its id.
   */
  plantContainer(labels: Record<string, string>, script: FakeContainerScript = {}): string {
    const c = this.state.add(null, labels, script);
    this.state.start(c, script);
    return c.id;
  }

  /** The containers the engine holds now (any state). */
  containers(): FakeContainerState[] {
    return [...this.state.containers.values()];
  }

  /** Names of the volumes the engine holds now. */
  volumes(): string[] {
    return [...this.state.volumes].sort();
  }

  /** Tag -> image id of the images the engine holds now. */
  images(): Map<string, string> {
    return new Map([...this.state.images].map(([tag, info]) => [tag, info.id]));
  }

  async imageExists(ref: string): Promise<boolean> {
    await this.enter('imageExists', ref);
    return this.findImage(ref) !== null;
  }

  async inspectImage(ref: string): Promise<ImageInfo | null> {
    await this.enter('inspectImage', ref);
    return this.findImage(ref);
  }

  async buildImage(req: BuildRequest): Promise<BuildResult> {
    await this.enter('buildImage', req.tag);
    if (req.signal?.aborted) return { ok: false, code: 'cancelled', reason: 'build cancelled' };
    const build = this.state.builds.shift() ?? { outcome: 'succeed' };
    for (const line of build.log ?? []) req.onLog(line);
    if (build.outcome === 'hang') {
      await this.live(new Promise<void>((resolve) => {
        if (req.signal?.aborted) resolve();
        req.signal?.addEventListener('abort', () => resolve(), { once: true });
      }));
      return { ok: false, code: 'cancelled', reason: 'build cancelled' };
    }
    if (build.outcome === 'fail') {
      req.onLog(`ERROR: ${build.reason}`);
      return { ok: false, code: 'build_failed', reason: build.reason };
    }
    const imageId = build.imageId ?? `sha256:${this.state.nextId('fake').padEnd(64, '0')}`;
    this.state.images.set(req.tag, { id: imageId, labels: req.labels ?? {} });
    req.onLog(`Successfully built ${imageId.slice(7, 19)}`);
    return { ok: true, imageId };
  }

  async runContainer(req: ContainerRequest, hooks: RunHooks): Promise<ContainerRunResult> {
    await this.enter('runContainer', req.name ?? '');
    // The same refusal as the adapter's: whatever built the request, no run gets a network.
    if (req.create.HostConfig.NetworkMode !== 'none') throw new Error('run containers must have NetworkMode none');
    if (hooks.signal?.aborted) return this.notStarted('cancelled', null, null);
    if (this.findImage(req.create.Image) === null) return this.notStarted('start_failed', `No such image: ${req.create.Image}`, null);
    const script = this.state.scripts.shift() ?? { exitCode: 0 };
    const c = this.state.add(req.name, req.create.Labels, script);
    for (const m of req.create.HostConfig.Mounts) if (m.Type === 'volume') this.state.volumes.add(m.Source);
    try {
      await this.live(hooks.onCreated?.(c.id) ?? Promise.resolve());
    } catch (err) {
      await this.removeUnlessKept(c, req.keepContainer);
      throw err;
    }
    return this.follow(c, req, hooks, 'attached');
  }

  async findRunContainers(): Promise<RunContainer[]> {
    await this.enter('findRunContainers', 'secd.run');
    return this.containers().map((c) => ({ id: c.id, name: c.name, runId: c.runId, state: c.state, labels: { ...c.labels } }));
  }

  async adoptContainer(id: string, req: AdoptRequest, hooks: RunHooks): Promise<ContainerRunResult> {
    await this.enter('adoptContainer', id);
    const c = this.state.containers.get(id);
    if (!c) return this.notStarted('start_failed', 'the container is gone', id);
    return this.follow(c, req, hooks, 'logs');
  }

  // As the adapter's one road for run and adopt: start it if it is only created, then supervise it,
  // the limit counted from its own start; only where its output comes from differs.
  private async follow(c: FakeContainerState, req: AdoptRequest, hooks: RunHooks, output: 'attached' | 'logs'): Promise<ContainerRunResult> {
    if (c.state === 'created') {
      if (hooks.signal?.aborted || c.script.refuse !== undefined) {
        await this.removeUnlessKept(c, req.keepContainer);
        return c.script.refuse !== undefined ? this.notStarted('start_failed', `could not start the container: ${c.script.refuse}`, c.id) : this.notStarted('cancelled', null, c.id);
      }
      this.state.start(c, c.script);
      // Started here: watched from its start, even when it ended at once.
      return this.supervise(c, req.timeoutMs, req.keepContainer, hooks, output);
    }
    const left = c.state === 'running' ? req.timeoutMs - (this.state.now().getTime() - Date.parse(c.startedAt ?? '')) : null;
    return this.supervise(c, left, req.keepContainer, hooks, output);
  }

  async removeContainer(id: string): Promise<void> {
    await this.enter('removeContainer', id);
    // As the engine does, by id or by name.
    for (const c of this.containers()) if (c.id === id || c.name === id) this.state.containers.delete(c.id);
  }

  async readArchive(containerId: string, path: string): Promise<NodeJS.ReadableStream | null> {
    await this.enter('readArchive', containerId);
    const c = this.state.containers.get(containerId);
    if (!c) return null;
    if (path !== '/outputs/.') throw new Error(`the fake engine only reads /outputs/., not ${path}`);
    return outputsTar(c.outputs);
  }

  /** Records the capped volume (and, for tmpfs, its holder as `volumeHolders`); no size is enforced here. */
  async createOutputsVolume(req: OutputsVolumeRequest): Promise<void> {
    await this.enter('createOutputsVolume', req.volume);
    this.state.volumes.add(req.volume);
    if (req.mode === 'tmpfs') this.state.volumeHolders.add(req.volume);
  }

  /** This fake has no quota support to speak of: it says so as Docker on ext4 does. */
  async probeOutputsQuota(): Promise<string | null> {
    await this.enter('probeOutputsQuota', '');
    return 'quota size requested but no quota support';
  }

  async removeVolume(name: string): Promise<boolean> {
    await this.enter('removeVolume', name);
    this.state.volumeHolders.delete(name);
    return this.state.volumes.delete(name);
  }

  async removeImage(ref: string): Promise<boolean> {
    await this.enter('removeImage', ref);
    for (const [tag, info] of this.state.images) {
      if (tag === ref || info.id === ref) {
        this.state.images.delete(tag);
        return true;
      }
    }
    return false;
  }

  async importRootfs(tarStream: NodeJS.ReadableStream, tag: string): Promise<string> {
    await this.enter('importRootfs', tag);
    tarStream.resume();
    const id = `sha256:${this.state.nextId('import').padEnd(64, '0')}`;
    this.state.images.set(tag, { id, labels: {} });
    return id;
  }

  // Every call: recorded, the daemon killed there if the test says so, and nothing more once it is.
  private async enter(op: keyof ContainerEngine, subject: string): Promise<void> {
    const call = { op, subject };
    this.calls.push(call);
    if (!this.halted && this.haltWhen?.(call)) this.halt();
    await this.live(Promise.resolve());
  }

  // A dead daemon hears nothing back: what it awaits never settles.
  private async live<T>(p: Promise<T>): Promise<T> {
    const value = await p;
    return this.halted ? NEVER : value;
  }

  private findImage(ref: string): ImageInfo | null {
    const info = this.state.images.get(ref) ?? [...this.state.images.values()].find((i) => i.id === ref);
    return info ? { id: info.id, labels: { ...info.labels } } : null;
  }

  // The adapter's supervision in miniature: limit and cancel stop the container, then collect and remove.
  private async supervise(
    c: FakeContainerState,
    timeLeftMs: number | null,
    keep: boolean,
    hooks: RunHooks,
    output: 'attached' | 'logs',
  ): Promise<ContainerRunResult> {
    const deliverOutput = () => {
      if (c.log.length > 0) hooks.onLog(Buffer.from(c.log));
    };
    let stopReason: 'timed_out' | 'cancelled' | null = null;
    let stopping: Promise<void> = Promise.resolve();
    const stop = (why: 'timed_out' | 'cancelled') => {
      if (this.halted || stopReason !== null || c.state === 'exited') return;
      stopReason = why;
      // As the adapter's supervisor does: the caller hears why first (a throw does not stop the stop).
      stopping = Promise.resolve()
        .then(() => hooks.onStopping?.(why))
        .catch(() => undefined)
        .then(() => {
          if (!this.halted) this.state.exit(c, 143);
        });
    };
    const onAbort = () => stop('cancelled');
    let timer: NodeJS.Timeout | undefined;
    if (timeLeftMs !== null) {
      hooks.onStarted?.(c.id);
      if (output === 'attached') deliverOutput();
      timer = setTimeout(() => stop('timed_out'), Math.max(0, timeLeftMs));
      // A halted daemon's limit must not keep the test process alive.
      timer.unref();
      hooks.signal?.addEventListener('abort', onAbort, { once: true });
      if (hooks.signal?.aborted) onAbort();
    }
    try {
      await this.live(this.state.exited(c));
      await this.live(stopping);
    } finally {
      clearTimeout(timer);
      hooks.signal?.removeEventListener('abort', onAbort);
    }
    if (output === 'logs') deliverOutput();
    if (hooks.onExited) await this.live(hooks.onExited(c.id).catch(() => undefined));
    await this.removeUnlessKept(c, keep);
    const end: ContainerEnd = stopReason ?? 'exited';
    return { end, exitCode: c.exitCode, oomKilled: c.oomKilled, startedAt: c.startedAt, finishedAt: c.finishedAt!, containerId: c.id, reason: null };
  }

  private async removeUnlessKept(c: FakeContainerState, keep: boolean): Promise<void> {
    if (!keep) this.state.containers.delete(c.id);
    await this.live(Promise.resolve());
  }

  private notStarted(end: ContainerEnd, reason: string | null, containerId: string | null): ContainerRunResult {
    return { end, exitCode: null, oomKilled: false, startedAt: null, finishedAt: this.state.now().toISOString(), containerId, reason };
  }
}
