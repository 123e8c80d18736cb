/**
 * The node's image settings handed to the executor: which network and variables builds get
 * (`build:` of node.yml / up.yml, DESIGN §12, or `secd run --build-network/--build-env`). Applied
 * on top of nodeExecutorDeps (whose base-image builder already knows the variants) by the wiring of
 * `secd run`, `secd up` and `secd node`.
 */
import type { BuildSettings } from '../config/node-config.js';
import type { ExecutorDeps } from '../executor/executor-deps.js';

/** The node keys read here. */
export interface ImageNodeConfig {
  build?: BuildSettings | undefined;
}

/** Build settings given on a command line; they win over the config's, key by key for `env`. */
export interface BuildOverrides {
  network?: string | null;
  env?: Record<string, string>;
}

/** The executor's dependencies with the build network and build variables. */
export function withImageSettings(executor: ExecutorDeps, node: ImageNodeConfig, overrides: BuildOverrides = {}): ExecutorDeps {
  const network = overrides.network !== undefined ? overrides.network : (node.build?.network ?? null);
  const env = { ...(node.build?.env ?? {}), ...(overrides.env ?? {}) };
  return {
    ...executor,
    settings: { ...executor.settings, buildNetwork: network, buildEnv: env },
  };
}
