/**
 * The node's image settings handed to the executor: which network and variables builds get
 * (`build:` of node.yml / up.yml, DESIGN §12, or `secd run --build-network/--build-env`), and a
 * base-image builder that knows the variants (`FROM secd/base:torch` builds that image on first use).
 * Applied on top of nodeExecutorDeps by the wiring of `secd run` and `secd node`.
 */
import { join } from 'node:path';
import type { BuildSettings } from '../config/node-config.js';
import type { ContainerEngine } from '../engine/container-engine.js';
import type { ExecutorDeps } from '../executor/executor-deps.js';
import { baseImageEnsurer } from '../ops/base-image.js';

/** The node keys read here. */
export interface ImageNodeConfig {
  work_dir: string;
  base_image_mirror: string | null;
  build?: BuildSettings | undefined;
}

/** Build settings given on a command line; they win over the config's, key by key for `env`. */
export interface BuildOverrides {
  network?: string | null;
  env?: Record<string, string>;
}

/** The executor's dependencies with the build network, build variables and variant-aware base images. */
export function withImageSettings(executor: ExecutorDeps, engine: ContainerEngine, node: ImageNodeConfig, overrides: BuildOverrides = {}): ExecutorDeps {
  const network = overrides.network !== undefined ? overrides.network : (node.build?.network ?? null);
  const env = { ...(node.build?.env ?? {}), ...(overrides.env ?? {}) };
  return {
    ...executor,
    settings: { ...executor.settings, buildNetwork: network, buildEnv: env },
    ensureBaseImage: baseImageEnsurer(engine, { mirror: node.base_image_mirror, cacheDir: join(node.work_dir, 'base-image') }),
  };
}
