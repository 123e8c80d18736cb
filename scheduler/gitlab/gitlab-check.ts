/**
 * What a leader can learn about its GitLab at start, before any push depends on it:
 * - whether GitLab accepts the token (`GET /user`): a wrong one otherwise shows only as every push
 *   failing, its commit status included, so nobody sees why;
 * - whether webhook deliveries arrive: the leader cannot see GitLab's hook settings, so it says the
 *   URL GitLab must be given and warns when nothing has come after a while.
 * Problems are said plainly in the log and on stderr (a sysadmin starting the leader by hand reads
 * stderr, not JSON), and the leader keeps starting: GitLab may simply be down for a moment.
 */
import type { Log } from '../common/log.js';
import { errorText } from '../common/errors.js';
import { GitLabAnswerError, GitLabError, type GitLabUser } from './gitlab-port.js';

/** Why the token check failed: a stable code for /healthz and tests, beside the sentence. */
export type GitLabProblemCode = 'token_refused' | 'missing_scope' | 'gitlab_error' | 'bad_answer' | 'unreachable' | 'certificate';

/** The token check's latest outcome, as /healthz shows it. */
export type GitLabCheckState =
  | { state: 'unchecked' }
  | { state: 'ok'; user: string; checked_at: string }
  | { state: 'failing'; problem: GitLabProblemCode; message: string; checked_at: string };

/** Node's TLS error codes that mean "this certificate is not trusted": the fix is `gitlab.ca_file`. */
const CERTIFICATE_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** Say what a failed `GET /user` means for the sysadmin: which setting to fix and how. */
export function explainGitLabFailure(err: unknown, gitlabUrl: string): { problem: GitLabProblemCode; message: string } {
  if (err instanceof GitLabAnswerError) {
    return {
      problem: 'bad_answer',
      message: `GitLab at ${gitlabUrl} answered GET /api/v4/user with something that is not a GitLab user (${err.field}: ${err.problem}): is gitlab.url the address of GitLab itself?`,
    };
  }
  if (err instanceof GitLabError) {
    if (err.status === 401) {
      return {
        problem: 'token_refused',
        message: `GitLab at ${gitlabUrl} refused gitlab.token (401): the token is wrong, revoked or expired. Make a new personal access token with the api scope for secd's GitLab user and put it in the leader's gitlab_token credential.`,
      };
    }
    if (err.status === 403) {
      return {
        problem: 'missing_scope',
        message: `GitLab at ${gitlabUrl} knows gitlab.token but forbids it to read its own user (403): the token lacks the api scope (or its user is blocked). Give secd's user a token with the api scope; reading members' keys of every project also needs that user to be an administrator.`,
      };
    }
    return { problem: 'gitlab_error', message: `GitLab at ${gitlabUrl} answered ${err.status} to GET /api/v4/user: ${err.body.slice(0, 200)}` };
  }
  const code = typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : '';
  if (CERTIFICATE_CODES.has(code)) {
    return {
      problem: 'certificate',
      message: `GitLab at ${gitlabUrl} has a certificate the leader does not trust (${code}): set gitlab.ca_file to the PEM file of the CA that signed it (the cluster's own CA).`,
    };
  }
  return {
    problem: 'unreachable',
    message: `GitLab at ${gitlabUrl} cannot be reached (${errorText(err)}): check gitlab.url, the network between the leader and GitLab, and gitlab.ca_file if GitLab uses the cluster's own CA.`,
  };
}

/** What the token check needs: the one GitLab call, where GitLab is, the log and stderr, and the clock. */
export interface GitLabTokenCheckDeps {
  /** `GET /user` (GitLabReviewApi.getCurrentUser). */
  currentUser(): Promise<GitLabUser>;
  gitlabUrl: string;
  log: Log;
  /** One plain line for the person watching (stderr in the leader). */
  say(line: string): void;
  now(): Date;
  /** How long between checks while the token does not work. */
  retryMs: number;
}

/** Re-check a failing token this often by default: a fixed credential is seen within a minute. */
export const DEFAULT_TOKEN_RETRY_MS = 60_000;

/**
 * Checks the leader's GitLab token at start and again every `retryMs` until it works. Says a problem
 * once when it appears or changes (not every minute), and says when it is fixed.
 */
export class GitLabTokenCheck {
  private latest: GitLabCheckState = { state: 'unchecked' };
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<GitLabCheckState> | null = null;
  private closed = false;

  constructor(private readonly deps: GitLabTokenCheckDeps) {}

  /** The latest outcome. */
  current(): GitLabCheckState {
    return this.latest;
  }

  /** Check once now; the outcome is also kept for `current()`. */
  check(): Promise<GitLabCheckState> {
    this.running ??= this.checkOnce().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  /** Check now and keep re-checking until GitLab accepts the token. */
  start(): Promise<GitLabCheckState> {
    return this.check().then((state) => {
      if (state.state !== 'ok' && !this.closed) this.scheduleRetry();
      return state;
    });
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private scheduleRetry(): void {
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.start();
    }, this.deps.retryMs);
    this.timer.unref();
  }

  private async checkOnce(): Promise<GitLabCheckState> {
    const { log, gitlabUrl } = this.deps;
    const before = this.latest;
    const checkedAt = this.deps.now().toISOString();
    try {
      const user = await this.deps.currentUser();
      this.latest = { state: 'ok', user: user.username, checked_at: checkedAt };
      if (before.state === 'failing') {
        log.info({ gitlab: gitlabUrl, user: user.username }, 'GitLab accepts the token now');
        this.deps.say(`secd: GitLab at ${gitlabUrl} accepts the token now (user ${user.username})`);
      } else {
        log.info({ gitlab: gitlabUrl, user: user.username }, 'GitLab accepts the token');
      }
    } catch (err) {
      const { problem, message } = explainGitLabFailure(err, gitlabUrl);
      this.latest = { state: 'failing', problem, message, checked_at: checkedAt };
      if (before.state === 'failing' && before.message === message) {
        log.debug({ gitlab: gitlabUrl, problem }, 'GitLab token still failing');
      } else {
        log.error({ gitlab: gitlabUrl, problem, err: errorText(err) }, message);
        this.deps.say(`secd: ${message} Pushes cannot run until this is fixed; the leader re-checks every ${Math.round(this.deps.retryMs / 1000)} s.`);
      }
    }
    return this.latest;
  }
}

/** Warn after this long without a webhook delivery by default. */
export const DEFAULT_HOOK_WARN_AFTER_MS = 10 * 60_000;

/** What the delivery watch needs: the hook URL to name, the log and stderr, the wait, and the clock. */
export interface HookDeliveryWatchDeps {
  /** `public_url` + `/v1/hook`: what GitLab's webhook must be set to. */
  hookUrl: string;
  log: Log;
  say(line: string): void;
  warnAfterMs: number;
  now(): Date;
}

/**
 * Says at start which URL GitLab's webhook must point at, and warns once when no delivery has come
 * `warnAfterMs` after start: the usual causes are a hook never added, the wrong URL or secret, or a
 * firewall between GitLab and the leader.
 */
export class HookDeliveryWatch {
  private last: Date | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly deps: HookDeliveryWatchDeps) {}

  start(): void {
    const { log, hookUrl, warnAfterMs } = this.deps;
    log.info({ hook_url: hookUrl }, `GitLab must send push events to ${hookUrl} (with the webhook secret)`);
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.last) return;
      const minutes = Math.round(warnAfterMs / 60_000);
      const message = `no GitLab webhook delivery has reached ${hookUrl} in the ${minutes} min since the leader started: check the project's (or group's) webhook URL and secret, and that GitLab can reach the leader`;
      log.warn({ hook_url: hookUrl }, message);
      this.deps.say(`secd: ${message}`);
    }, warnAfterMs);
    this.timer.unref();
  }

  /** A delivery arrived (any answer: a refused secret still proves GitLab reaches the leader). */
  delivered(): void {
    this.last = this.deps.now();
  }

  /** When the latest delivery arrived, or null. */
  lastDelivery(): Date | null {
    return this.last;
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}

/** Both start checks of a leader with GitLab configured, started together and closed together. */
export interface GitLabWatches {
  /** null when the GitLab client has no `GET /user` (a replacement client in tests). */
  token: GitLabTokenCheck | null;
  hook: HookDeliveryWatch;
  close(): void;
}

/** Start the token check (in the background: the leader keeps starting) and the delivery watch. */
export function startGitLabWatches(opts: {
  gitlabUrl: string;
  currentUser: (() => Promise<GitLabUser>) | null;
  hookUrl: string;
  log: Log;
  say(line: string): void;
  now(): Date;
  retryMs?: number;
  hookWarnAfterMs?: number;
}): GitLabWatches {
  const { log, say, now } = opts;
  const token = opts.currentUser
    ? new GitLabTokenCheck({ currentUser: opts.currentUser, gitlabUrl: opts.gitlabUrl, log, say, now, retryMs: opts.retryMs ?? DEFAULT_TOKEN_RETRY_MS })
    : null;
  const hook = new HookDeliveryWatch({ hookUrl: opts.hookUrl, log, say, now, warnAfterMs: opts.hookWarnAfterMs ?? DEFAULT_HOOK_WARN_AFTER_MS });
  hook.start();
  void token?.start();
  return {
    token,
    hook,
    close() {
      token?.close();
      hook.close();
    },
  };
}
