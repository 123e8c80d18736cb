/**
 * What the fake container engine (fake-container-engine.ts) holds and scripts: the shapes tests
 * script builds and containers with, the state every connection to one engine shares (it outlives its
 * daemons), and the archive it answers for /outputs. Apart so the engine's calls read on their own.
 */
import { PassThrough } from 'node:stream';
import { pack } from 'tar-stream';
import type { ContainerEngine, ImageInfo } from '../../daemon/engine/container-engine.js';

/** How a scripted build goes. */
export type FakeBuild =
  | { outcome: 'succeed'; log?: string[]; imageId?: string }
  /** The build log ends with `ERROR: <reason>`, as the engine reports a failing step. */
  | { outcome: 'fail'; reason: string; log?: string[] }
  /** Prints `log`, then works until its signal aborts (a build that would never end on its own). */
  | { outcome: 'hang'; log?: string[] };

/** How a scripted container behaves once started. */
export interface FakeContainerScript {
  /** What it prints as soon as it starts. */
  log?: string;
  /** What it writes under /outputs, relative path -> content. */
  outputs?: Record<string, string>;
  /** Exits at once with this status; absent: runs until stopped or ended by `exitContainer`. */
  exitCode?: number;
  /** Killed for its memory (with exit status 137). */
  oomKilled?: boolean;
  /** The engine refuses to start it (runContainer ends `start_failed` with this sentence). */
  refuse?: string;
}

/** One call the engine took, for tests to assert on and `haltWhen` to pick. */
export interface FakeCall {
  op: keyof ContainerEngine;
  /** The image tag, container name or id, volume name the call was about. */
  subject: string;
}

/** A container as the fake engine holds it. */
export interface FakeContainerState {
  id: string;
  name: string | null;
  runId: string;
  labels: Record<string, string>;
  state: 'created' | 'running' | 'exited';
  exitCode: number | null;
  oomKilled: boolean;
  startedAt: string | null;
  finishedAt: string | null;
  /** Everything it printed, as `docker logs` would give it back. */
  log: Buffer;
  outputs: Record<string, string>;
  /** Runs until stopped (no exit code of its own). */
  runsUntilStopped: boolean;
  /** What it does once started (a container made but not started keeps its script for whoever starts it). */
  script: FakeContainerScript;
}

/** What every connection to one fake engine shares: the engine outlives its daemons. */
export class FakeEngineState {
  readonly builds: FakeBuild[] = [];
  readonly scripts: FakeContainerScript[] = [];
  readonly images = new Map<string, ImageInfo>();
  readonly containers = new Map<string, FakeContainerState>();
  readonly volumes = new Set<string>();
  /** Volumes a holder container keeps mounted (`tmpfs` outputs volumes), by volume name. */
  readonly volumeHolders = new Set<string>();
  readonly exitWaiters = new Map<string, Array<() => void>>();
  counter = 0;

  constructor(readonly now: () => Date) {}

  nextId(prefix: string): string {
    this.counter += 1;
    return `${prefix}${String(this.counter).padStart(12, '0')}`;
  }

  exit(c: FakeContainerState, exitCode: number, oomKilled = false): void {
    if (c.state === 'exited') return;
    c.state = 'exited';
    c.exitCode = exitCode;
    c.oomKilled = oomKilled;
    c.finishedAt = this.now().toISOString();
    for (const wake of this.exitWaiters.get(c.id) ?? []) wake();
    this.exitWaiters.delete(c.id);
  }

  exited(c: FakeContainerState): Promise<void> {
    if (c.state === 'exited') return Promise.resolve();
    return new Promise((resolve) => this.exitWaiters.set(c.id, [...(this.exitWaiters.get(c.id) ?? []), resolve]));
  }

  /** A new container, only created, carrying `labels`. */
  add(name: string | null, labels: Record<string, string>, script: FakeContainerScript): FakeContainerState {
    const c: FakeContainerState = {
      id: this.nextId('c0ffee'),
      name,
      runId: labels['secd.run'] ?? '',
      labels: { ...labels },
      state: 'created',
      exitCode: null,
      oomKilled: false,
      startedAt: null,
      finishedAt: null,
      log: Buffer.alloc(0),
      outputs: {},
      runsUntilStopped: script.exitCode === undefined && !script.oomKilled,
      script,
    };
    this.containers.set(c.id, c);
    return c;
  }

  start(c: FakeContainerState, script: FakeContainerScript): void {
    c.state = 'running';
    c.startedAt = this.now().toISOString();
    c.log = Buffer.concat([c.log, Buffer.from(script.log ?? '')]);
    c.outputs = { ...c.outputs, ...script.outputs };
    if (script.exitCode !== undefined || script.oomKilled) this.exit(c, script.oomKilled ? 137 : script.exitCode!, script.oomKilled);
  }
}

// `GET /containers/{id}/archive?path=/outputs/.` as dockerd answers it: `./` first, folders before their files.
export function outputsTar(files: Record<string, string>): NodeJS.ReadableStream {
  const tar = pack();
  tar.entry({ name: './', type: 'directory', mode: 0o755 });
  const folders = new Set<string>();
  for (const [path, content] of Object.entries(files).sort(([a], [b]) => a.localeCompare(b))) {
    const parts = path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const folder = parts.slice(0, i).join('/');
      if (folders.has(folder)) continue;
      folders.add(folder);
      tar.entry({ name: `./${folder}/`, type: 'directory', mode: 0o755 });
    }
    tar.entry({ name: `./${path}`, mode: 0o644 }, content);
  }
  tar.finalize();
  const out = new PassThrough();
  tar.pipe(out);
  return out;
}
