/**
 * A researcher as both cluster harnesses make one: a GitLab user with a fresh GnuPG key uploaded to
 * GitLab, a project they are a member of, and a working repository that signs with that key.
 */
import type { DoubleProject, DoubleUser, GitLabDouble } from '../doubles/gitlab-double.js';
import { createResearcherRepo, type ResearcherRepo } from './git-repo.js';
import type { GitSigner, GpgHome, GpgKey } from './gpg.js';

/** What the harnesses build their researcher objects from. */
export interface ResearcherParts {
  user: DoubleUser;
  email: string;
  key: GpgKey;
  signer: GitSigner;
  repo: ResearcherRepo;
  project: DoubleProject;
  /** The project's git URL with the user's credentials. */
  url: string;
}

/** Create the user, key, project and repository; the caller closes `repo`. */
export async function makeResearcher(
  gitlab: GitLabDouble,
  gpg: GpgHome,
  opts: { username: string; project: string; email?: string },
): Promise<ResearcherParts> {
  const email = opts.email ?? `${opts.username}@example.org`;
  const user = gitlab.addUser({ username: opts.username, email });
  const key = await gpg.generateKey({ name: opts.username, email });
  gitlab.addGpgKey(user.id, await gpg.exportPublicKey(key.fingerprint));
  const project = gitlab.addProject({ path: opts.project, members: [user.id] });
  const repo = await createResearcherRepo();
  const signer = await gpg.gitSigner(key);
  return { user, email, key, signer, repo, project, url: gitlab.gitUrl(opts.project, user) };
}
