/**
 * `docker build` for the Docker adapter (docker-engine.ts, whose `docker` client it is handed): the
 * context packed from disk with the project's `.dockerignore`, the legacy builder's options, and the
 * build's outcome as a value. DESIGN §12's two build settings live here: `networkMode` (a network
 * that reaches only the site's mirrors, else `none`) and `env`, given to every RUN step through a
 * generated copy of the Dockerfile (build-env-dockerfile.ts). A failed step that looks like it wanted
 * the network gets the sentence that says why and what a sysadmin can do (build-network-hint.ts).
 *
 * Processes: a RUN step runs as root in a container the legacy builder makes without a pids limit,
 * and root ignores RLIMIT_NPROC (a `nproc=100` build ulimit let 300 processes start, measured), so the
 * build's `cgroupparent` is the bound: every build container is made under the node's
 * `build.cgroup_parent`, whose pids limit the sysadmin sets (a fork bomb then gets EAGAIN).
 */
import fs from 'node:fs';
import path from 'node:path';
import type Docker from 'dockerode';
import { pack } from 'tar-fs';
import type { BuildRequest, BuildResult, EngineLogger, ImageInfo } from './container-engine.js';
import { dockerfileWithBuildEnv, dockerignoreWithGenerated, GENERATED_DOCKERFILE } from './build-env-dockerfile.js';
import { lastStepLines, networkFailureHint } from './build-network-hint.js';
import { contextIgnore } from './docker-ignore.js';
import { messageOf, statusOf } from './engine-errors.js';
import { readBuildProgress, type BuildProgress } from './engine-streams.js';

/** What the build borrows from the adapter. */
export interface DockerBuildDeps {
  docker: Docker;
  log: EngineLogger;
  now(): Date;
  inspectImage(ref: string): Promise<ImageInfo | null>;
  /** The cgroup build containers are made under (its pids limit bounds a build's processes). */
  cgroupParent?: string;
}

// The build context as a tar stream; with build.env, the generated Dockerfile and .dockerignore are
// added at its end instead of the project's .dockerignore (whose text they carry).
async function packContext(req: BuildRequest, dockerfile: string, env: Record<string, string>): Promise<{ context: NodeJS.ReadableStream; dockerfile: string }> {
  const dir = path.resolve(req.contextDir);
  const names = Object.keys(env);
  // strict:false skips sockets and fifos instead of failing; symlinks travel as links, never followed.
  if (names.length === 0) {
    const ignore = await contextIgnore(dir, dockerfile);
    return { context: pack(dir, { ignore, strict: false, dereference: false }) as unknown as NodeJS.ReadableStream, dockerfile };
  }
  const text = await fs.promises.readFile(path.join(dir, dockerfile), 'utf8');
  const ownIgnore = await fs.promises.readFile(path.join(dir, '.dockerignore'), 'utf8').catch(() => null);
  // The project's Dockerfile is now a context file like any other: ignored if its .dockerignore says so.
  const ignore = await contextIgnore(dir, GENERATED_DOCKERFILE);
  const rootIgnore = path.join(dir, '.dockerignore');
  const mtime = new Date(0);
  const context = pack(dir, {
    ignore: (abs: string) => abs === rootIgnore || abs === path.join(dir, GENERATED_DOCKERFILE) || ignore(abs),
    strict: false,
    dereference: false,
    finalize: false,
    finish(p: { entry(h: object, body: string): void; finalize(): void }) {
      p.entry({ name: GENERATED_DOCKERFILE, mode: 0o644, mtime }, dockerfileWithBuildEnv(text, names));
      p.entry({ name: '.dockerignore', mode: 0o644, mtime }, dockerignoreWithGenerated(ownIgnore));
      p.finalize();
    },
  } as Parameters<typeof pack>[1]) as unknown as NodeJS.ReadableStream;
  return { context, dockerfile: GENERATED_DOCKERFILE };
}

/** Builds `req` with the legacy builder; a failing Dockerfile is a value, a dead engine throws. */
export async function dockerBuild(deps: DockerBuildDeps, req: BuildRequest): Promise<BuildResult> {
  const { docker, log, now } = deps;
  const ms = (since: number) => now().getTime() - since;
  const ids = { tag: req.tag, context: req.contextDir };
  if (req.signal?.aborted) return { ok: false, code: 'cancelled', reason: 'build cancelled' };
  const env = req.env ?? {};
  const network = req.networkMode ?? 'none';
  let packed: { context: NodeJS.ReadableStream; dockerfile: string };
  try {
    packed = await packContext(req, req.dockerfile ?? 'Dockerfile', env);
  } catch (err) {
    const reason = `could not read the build context: ${messageOf(err)}`;
    req.onLog(`ERROR: ${reason}`);
    return { ok: false, code: 'build_failed', reason };
  }
  let contextError: Error | null = null;
  packed.context.on('error', (err: Error) => {
    contextError = err;
  });
  // The failing step's lines, for the no-network hint; a step's output is bounded by the build log cap anyway.
  const lines: string[] = [];
  const onLog = (line: string) => {
    if (/^Step \d+\/\d+ : /.test(line)) lines.length = 0;
    if (lines.length < 2000) lines.push(line);
    req.onLog(line);
  };

  const t0 = now().getTime();
  log.info({ op: 'build', ...ids, network, env: Object.keys(env), cgroupParent: deps.cgroupParent ?? null }, 'docker build');
  let progress: BuildProgress;
  try {
    const stream = await docker.buildImage(packed.context, {
      t: req.tag,
      dockerfile: packed.dockerfile,
      labels: req.labels ?? {},
      rm: true,
      forcerm: true,
      networkmode: network,
      ...(Object.keys(env).length > 0 ? { buildargs: env } : {}),
      ...(req.memoryBytes ? { memory: req.memoryBytes, memswap: req.memoryBytes } : {}),
      ...(deps.cgroupParent ? { cgroupparent: deps.cgroupParent } : {}),
      ...(req.signal ? { abortSignal: req.signal } : {}),
    } as Docker.ImageBuildOptions);
    progress = await readBuildProgress(stream, onLog);
  } catch (err) {
    log.warn({ op: 'build', ...ids, ms: ms(t0), status: statusOf(err), err: messageOf(err) }, 'docker build failed');
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
  if (progress.lastError !== null) {
    log.info({ op: 'build', ...ids, ms: ms(t0), err: progress.lastError }, 'docker build done: failed');
    const hint = networkFailureHint(lastStepLines(lines), network);
    if (hint !== null) req.onLog(`[secd] ${hint}`);
    return { ok: false, code: 'build_failed', reason: hint === null ? progress.lastError : `${progress.lastError}: ${hint}` };
  }
  // Older engines only print "Successfully built <short id>"; the tag always resolves to the full id.
  const imageId = progress.imageId ?? (await deps.inspectImage(req.tag))?.id ?? null;
  if (imageId === null) {
    const reason = progress.shortId ? `built ${progress.shortId} but the tag ${req.tag} is missing` : 'the build ended without an image';
    return { ok: false, code: 'build_failed', reason };
  }
  log.info({ op: 'build', ...ids, image: imageId, ms: ms(t0) }, 'docker build done');
  return { ok: true, imageId };
}
