/**
 * The GitLab double (test/doubles/gitlab-double.ts) in a process of its own, as a real GitLab is
 * never in the leader's process: its `git http-backend` spawns, REST answers and webhook sends then
 * cost the leader's event loop nothing, and a benchmark of the leader measures secd alone.
 *
 * Run as a script it starts the double on 127.0.0.1 and prints one JSON line `{"url": ...}` on
 * stdout. Started with an IPC channel (`remote-gitlab-double.ts` forks it so) it also takes the
 * researcher's side of a push, which needs the double's users and repositories: requests
 * `{ id, op, args }`, answers `{ id, ok, value | error }`; the ops are the `Ops` below. Without IPC it
 * serves until SIGTERM or SIGINT.
 *
 *   node dist/test/support/gitlab-double-process.js [--token TOKEN]
 */
import { startGitLabDouble, type GitLabDouble } from '../doubles/gitlab-double.js';
import { createResearcherRepo, type ResearcherRepo } from './git-repo.js';
import { createGpgHome, type GitSigner, type GpgHome } from './gpg.js';
import type { OpAnswer, OpRequest, Ops } from './remote-gitlab-double.js';

interface Researcher {
  repo: ResearcherRepo;
  signer: GitSigner;
  email: string;
  url: string;
}

/** The ops, bound to one double. */
function opsOf(gitlab: GitLabDouble, gpg: () => Promise<GpgHome>, researchers: Map<string, Researcher>): { [K in keyof Ops]: (a: Parameters<Ops[K]>[0]) => Promise<ReturnType<Ops[K]>> } {
  return {
    async addWebhook(a) {
      return { id: gitlab.addWebhook(a).id };
    },
    async addResearcher({ username, project }) {
      if (researchers.has(username)) throw new Error(`researcher ${username} exists already`);
      const home = await gpg();
      const email = `${username}@example.org`;
      const user = gitlab.addUser({ username, email });
      const key = await home.generateKey({ name: username, email });
      gitlab.addGpgKey(user.id, await home.exportPublicKey(key.fingerprint));
      const p = gitlab.addProject({ path: project, members: [user.id] });
      researchers.set(username, { repo: await createResearcherRepo(), signer: await home.gitSigner(key), email, url: gitlab.gitUrl(project, user) });
      return { userId: user.id, projectId: p.id };
    },
    async pushRun({ username, files, message }) {
      const r = researchers.get(username);
      if (!r) throw new Error(`no researcher ${username}: addResearcher first`);
      await r.repo.commit(message, { signer: r.signer, committerEmail: r.email, files });
      const before = gitlab.deliveries.length;
      await r.repo.push(r.url);
      await gitlab.idle();
      return gitlab.deliveries.slice(before);
    },
    async counts() {
      return {
        deliveries: gitlab.deliveries.length,
        statuses: gitlab.statuses.length,
        apiRequests: gitlab.apiRequests.length,
        gitRequests: gitlab.gitRequests.length,
        internalErrors: [...gitlab.internalErrors],
      };
    },
    async idle() {
      await gitlab.idle();
      return null;
    },
  };
}

function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function main(): Promise<void> {
  const token = argValue('--token') ?? 'glpat-test-admin-token';
  const gitlab = await startGitLabDouble({ token });
  let home: Promise<GpgHome> | null = null;
  const researchers = new Map<string, Researcher>();
  const ops = opsOf(gitlab, () => (home ??= createGpgHome()), researchers);
  let closing: Promise<void> | null = null;
  const close = () =>
    (closing ??= (async () => {
      await gitlab.close();
      await Promise.all([...researchers.values()].map((r) => r.repo.close()));
      if (home) await (await home).close();
    })().finally(() => process.exit(0)));
  process.on('SIGTERM', () => void close());
  process.on('SIGINT', () => void close());
  process.stdout.write(`${JSON.stringify({ url: gitlab.url, token })}\n`);
  if (!process.send) return;
  // The parent going away ends the double too: no stray process survives a crashed benchmark.
  process.on('disconnect', () => void close());
  process.on('message', (msg: OpRequest) => {
    const op = ops[msg.op] as ((a: unknown) => Promise<unknown>) | undefined;
    const answer = op
      ? op(msg.args).then(
          (value): OpAnswer => ({ id: msg.id, ok: true, value }),
          (err: unknown): OpAnswer => ({ id: msg.id, ok: false, error: err instanceof Error ? err.message : String(err) }),
        )
      : Promise.resolve<OpAnswer>({ id: msg.id, ok: false, error: `no op ${String(msg.op)} (one of ${Object.keys(ops).join(', ')})` });
    void answer.then((a) => process.send!(a));
  });
}

await main();
