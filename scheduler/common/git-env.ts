/**
 * The one recipe for running git hermetically, for every role (the leader's mirrors, the node's
 * checkout and results push, the tests' repositories): only what git needs to find itself and the
 * network passes through; the host's and the user's git config, hooks, editors, pagers and password
 * prompts never take part, so a run behaves the same on every machine and a prompt fails instead of
 * hanging a daemon.
 */

/**
 * Variables passed through from the caller's environment (never GIT_DIR, EDITOR, PAGER...). SUDO_UID
 * lets git, run as root by `sudo secd run`, trust the repository of the user who ran sudo.
 */
const PASSED_ENV = [
  'PATH', 'HOME', 'TMPDIR', 'SUDO_UID',
  'http_proxy', 'https_proxy', 'no_proxy', 'all_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'ALL_PROXY',
  'GIT_SSL_CAINFO', 'GIT_SSL_CAPATH', 'SSL_CERT_FILE', 'SSL_CERT_DIR',
] as const;

/** Options of {@link hermeticGitEnv}. */
export interface GitEnvOptions {
  /** The cluster's own CA for HTTPS remotes (`gitlab.ca_file`). */
  caFile?: string | null;
  /** Config given through the environment (`GIT_CONFIG_COUNT`/`KEY_n`/`VALUE_n`): never on a command line, so never in `ps`. */
  config?: ReadonlyArray<{ key: string; value: string }>;
  /** Replace HOME (tests give each repository a home of its own). */
  home?: string;
  /** The environment to pass variables from (default `process.env`). */
  from?: NodeJS.ProcessEnv;
}

/** The environment every git process of secd runs with. */
export function hermeticGitEnv(options: GitEnvOptions = {}): Record<string, string> {
  const from = options.from ?? process.env;
  const env: Record<string, string> = {};
  for (const name of PASSED_ENV) {
    const value = from[name];
    if (value !== undefined) env[name] = value;
  }
  if (env.PATH === undefined) env.PATH = '/usr/bin:/bin';
  if (options.home !== undefined) env.HOME = options.home;
  Object.assign(env, {
    LC_ALL: 'C',
    GIT_TERMINAL_PROMPT: '0',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
  });
  if (options.caFile) env.GIT_SSL_CAINFO = options.caFile;
  const config = options.config ?? [];
  if (config.length > 0) {
    env.GIT_CONFIG_COUNT = String(config.length);
    config.forEach(({ key, value }, i) => {
      env[`GIT_CONFIG_KEY_${i}`] = key;
      env[`GIT_CONFIG_VALUE_${i}`] = value;
    });
  }
  return env;
}
