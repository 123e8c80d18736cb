/**
 * The node's one door to git: the checkout of a run's commit (executor/git-checkout.ts), the push of
 * its results (results-branch.ts) and the commit `secd run` names (wiring/local-run.ts) run git here
 * and nowhere else on the node.
 *
 * - `secd check` reads a researcher's repository and signing setup through runResearcherGit, the one
 *   call that is not hermetic: the researcher's own git config is what it checks.
 * - Hermetic: git gets scheduler/common/git-env.ts's environment (no system or global config, no hooks
 *   from the host, no prompt), and the settings secd needs travel with it as GIT_CONFIG_* variables,
 *   never as `-c` on the command line.
 * - Credentials in an http(s) remote URL move into an `http.<origin>/.extraHeader` setting passed the
 *   same way, so a token is never in git's argv (`ps`), in a .git/config, or in git's messages.
 * - A failure throws a GitFailure whose message is git's own output, stdout then stderr, as git wrote
 *   them; describeGitFailure makes the one line of it a reason can carry (the caller masks secrets).
 *
 * It sits in results/ because the executor already imports results, and results never the executor.
 */
import { execFile } from 'node:child_process';
import { errorText } from '../../scheduler/common/errors.js';
import { hermeticGitEnv } from '../../scheduler/common/git-env.js';
import { urlSecrets } from '../../scheduler/common/redact.js';
import { isCommitId } from '../../scheduler/contract/commit-id.js';

/** A git setting, as `git -c key=value` would give it. */
export interface GitSetting {
  key: string;
  value: string;
}

/** A remote as git is handed it. */
export interface GitRemote {
  /** The URL without credentials (a path or a URL without them: as given). */
  url: string;
  /** The settings that carry the credentials: an Authorization header for the URL's origin; empty without. */
  settings: GitSetting[];
  /** Whether the URL carried credentials (moved into `settings`). */
  hasCredentials: boolean;
  /** The forms of the credentials that must never appear in a message. */
  secrets: string[];
}

/** Where and how one git command runs. */
export interface GitCall {
  /** The repository (or the folder `git init` makes one in). */
  cwd: string;
  /** Settings for this command (a remote's credentials among them). */
  settings?: readonly GitSetting[];
  /** The cluster's own CA bundle for HTTPS remotes. */
  caFile?: string | null;
}

/** git exited with a failure, or could not start; the message is what it printed. */
export class GitFailure extends Error {
  constructor(
    message: string,
    /** git's exit status; null when it never ran (not installed...). */
    readonly exitCode: number | null,
  ) {
    super(message);
    this.name = 'GitFailure';
  }
}

// Git's output for a whole pack listing or a long log fits; more is a bug worth failing on.
const MAX_OUTPUT_BYTES = 64 * 1024 * 1024;

/** Runs `git <args>` in `call.cwd` hermetically; resolves with its stdout, throws GitFailure. */
export function runGit(args: readonly string[], call: GitCall): Promise<string> {
  const env = hermeticGitEnv({ caFile: call.caFile ?? null, config: call.settings ?? [] });
  return new Promise((resolve, reject) => {
    execFile('git', [...args], { cwd: call.cwd, env, encoding: 'utf8', maxBuffer: MAX_OUTPUT_BYTES }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout);
      const exitCode = typeof err.code === 'number' ? err.code : null;
      const said = `${stdout}${stderr}`;
      reject(new GitFailure(said.trim() === '' ? err.message : said, exitCode));
    });
  });
}

/** The commit checked out in the repository at `dir`, or null when it is none (no repository, no commit). */
export async function readHead(dir: string): Promise<string | null> {
  try {
    const sha = (await runGit(['rev-parse', '--verify', '--quiet', 'HEAD^{commit}'], { cwd: dir })).trim();
    return isCommitId(sha) ? sha : null;
  } catch {
    return null;
  }
}

/**
 * The remote git should be handed for `remoteUrl`: credentials in an http(s) URL (`user:token@`) are
 * taken out and carried by an Authorization header setting instead.
 */
export function gitRemote(remoteUrl: string): GitRemote {
  const plain: GitRemote = { url: remoteUrl, settings: [], hasCredentials: false, secrets: [] };
  let parsed: URL;
  try {
    parsed = new URL(remoteUrl);
  } catch {
    return plain;
  }
  if ((parsed.protocol !== 'http:' && parsed.protocol !== 'https:') || (parsed.username === '' && parsed.password === '')) {
    return plain;
  }
  const secrets = urlSecrets(remoteUrl);
  const basic = Buffer.from(`${decodeURIComponent(parsed.username)}:${decodeURIComponent(parsed.password)}`).toString('base64');
  parsed.username = '';
  parsed.password = '';
  return {
    url: parsed.toString(),
    settings: [{ key: `http.${parsed.origin}/.extraHeader`, value: `Authorization: Basic ${basic}` }],
    hasCredentials: true,
    secrets,
  };
}

/**
 * One line a researcher can act on, from what git printed: its telling lines (fatal:, error:, remote:,
 * the push status), joined, at most 500 characters. Secrets are the caller's to mask.
 */
export function describeGitFailure(err: unknown): string {
  const lines = errorText(err)
    .split('\n')
    .map((l) => l.replace(/\s+/g, ' ').trim())
    .filter((l) => l !== '');
  const telling = lines.filter((l) => /^(fatal|error|remote|!|To |hint: Updates were rejected)/.test(l));
  const joined = (telling.length > 0 ? telling : lines).join('; ');
  return joined.length > 500 ? `${joined.slice(0, 497)}...` : joined;
}

// Variables a calling git (a hook) exports that would point git at another repository than `cwd`'s.
const REPOSITORY_ENV = ['GIT_DIR', 'GIT_WORK_TREE', 'GIT_INDEX_FILE', 'GIT_PREFIX', 'GIT_OBJECT_DIRECTORY', 'GIT_ALTERNATE_OBJECT_DIRECTORIES', 'GIT_COMMON_DIR'];

/**
 * Runs `git <args>` in `cwd` as the researcher's own git would run there — their global and system
 * config apply — for `secd check`, whose subject is exactly that config (signing key, format, email).
 * Not hermetic, so never for what a daemon does; `settings` are added as GIT_CONFIG_* variables after
 * any the caller's environment has, and win. Resolves with stdout, throws GitFailure.
 */
export function runResearcherGit(args: readonly string[], cwd: string, settings: readonly GitSetting[] = []): Promise<string> {
  const env: NodeJS.ProcessEnv = { ...process.env, LC_ALL: 'C', GIT_TERMINAL_PROMPT: '0' };
  for (const name of REPOSITORY_ENV) delete env[name];
  const base = Number(env.GIT_CONFIG_COUNT ?? 0) || 0;
  settings.forEach(({ key, value }, i) => {
    env[`GIT_CONFIG_KEY_${base + i}`] = key;
    env[`GIT_CONFIG_VALUE_${base + i}`] = value;
  });
  if (settings.length > 0) env.GIT_CONFIG_COUNT = String(base + settings.length);
  return new Promise((resolve, reject) => {
    execFile('git', [...args], { cwd, env, encoding: 'utf8', maxBuffer: MAX_OUTPUT_BYTES }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout);
      const exitCode = typeof err.code === 'number' ? err.code : null;
      const said = `${stdout}${stderr}`;
      reject(new GitFailure(said.trim() === '' ? err.message : said, exitCode));
    });
  });
}
