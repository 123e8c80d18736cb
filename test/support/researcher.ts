/**
 * A researcher as both cluster harnesses make one: a GitLab user with a fresh GnuPG key uploaded to
 * GitLab, a project they are a member of, and a working repository that signs with that key. The one
 * way a test starts a run is `pushRun(files)`: commit signed, push, let the double deliver the webhook,
 * and take the run id from secd's answer, the way GitLab's "Recent events" would show it. Each harness
 * says only how it looks a run up (the leader's store in process, the HTTP API across processes).
 * Compiled into dist (the benchmarks use it), so it imports nothing from vitest.
 */
import type { DoubleProject, DoubleUser, GitLabDouble } from '../doubles/gitlab-double.js';
import { createResearcherRepo, type ResearcherRepo } from './git-repo.js';
import type { GitSigner, GpgHome, GpgKey } from './gpg.js';

/**
 * How a push is made: the current branch by default, or a ref, forced after a history rewrite; as
 * the researcher, or `as` another GitLab user (a member of the project: GitLab refuses others).
 */
export type PushOptions = NonNullable<Parameters<ResearcherRepo['push']>[1]> & { as?: Pick<DoubleUser, 'username' | 'password'> };

/** Options of `pushRun`. */
export interface PushRunOptions extends PushOptions {
  /** The message of the commit made of `files` (default "experiment"). */
  message?: string;
}

/** A researcher with a project of their own on the double; `Run` is how their harness shows a run. */
export interface Researcher<Run> {
  user: DoubleUser;
  key: GpgKey;
  signer: GitSigner;
  repo: ResearcherRepo;
  project: DoubleProject;
  /** Push the current branch (or a ref) to the project on the double, as this user. */
  push(options?: PushOptions): Promise<void>;
  /**
   * Commit `files` signed as this user (or, without files, take what is committed), push, wait
   * for the webhook's answer, and return the run secd started; throws with every answer when none did.
   */
  pushRun(files?: Record<string, string>, options?: PushRunOptions): Promise<Run>;
}

/** Who to make: a username, their project's path, and their email (default `<username>@example.org`). */
export interface ResearcherSpec {
  username: string;
  project: string;
  email?: string;
}

/** Create the user, key, project and repository; the caller closes `repo`. `findRun` looks up a run secd named. */
export async function makeResearcher<Run>(
  gitlab: GitLabDouble,
  gpg: GpgHome,
  spec: ResearcherSpec,
  findRun: (runId: string) => Promise<Run>,
): Promise<Researcher<Run>> {
  const email = spec.email ?? `${spec.username}@example.org`;
  const user = gitlab.addUser({ username: spec.username, email });
  const key = await gpg.generateKey({ name: spec.username, email });
  gitlab.addGpgKey(user.id, await gpg.exportPublicKey(key.fingerprint));
  const project = gitlab.addProject({ path: spec.project, members: [user.id] });
  const repo = await createResearcherRepo();
  const signer = await gpg.gitSigner(key);
  const url = gitlab.gitUrl(spec.project, user);
  return {
    user,
    key,
    signer,
    repo,
    project,
    push: ({ as, ...options } = {}) => repo.push(as ? gitlab.gitUrl(spec.project, as) : url, options),
    async pushRun(files, options = {}) {
      const { message = 'experiment', as, ...push } = options;
      if (files) await repo.commit(message, { signer, committerEmail: email, files });
      const before = gitlab.deliveries.length;
      await repo.push(as ? gitlab.gitUrl(spec.project, as) : url, push);
      await gitlab.idle();
      const answers = gitlab.deliveries.slice(before);
      const runId = answers.map((d) => (d.status === 200 ? startedRun(d.responseBody) : null)).find((id) => id !== null);
      if (!runId) {
        throw new Error(`no run started; answers: ${answers.map((d) => `${d.status} ${d.responseBody}${d.error ?? ''}`).join(' | ') || 'none'}`);
      }
      return findRun(runId);
    },
  };
}

/** The run id in secd's answer to a webhook, or null when the answer names none. */
function startedRun(responseBody: string): string | null {
  try {
    const answer = JSON.parse(responseBody) as { run_id?: unknown };
    return typeof answer.run_id === 'string' ? answer.run_id : null;
  } catch {
    return null;
  }
}
