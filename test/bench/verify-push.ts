/**
 * Benchmark: how long does verifying one push take, with and without the key cache?
 *
 * Against the GitLab double over real HTTP (the REST client secd uses) and a real mirror, one project
 * with MEMBERS members, each holding one GPG key (half ed25519, half RSA-3072, as researchers' keys
 * are) and one SSH key. A researcher makes PUSHES pushes of COMMITS signed commits each; every push is
 * verified twice, by two leaders that differ only in the cache: "cold" parses every member's keys on
 * every push (a fresh KeyCache each time, which is what verification did before the cache), "warm"
 * keeps one KeyCache for the whole run. Both fetch from GitLab and ask its API afresh each push.
 * Prints the median and p90 of each, in milliseconds, and the cache's hit count; then the same for
 * the keyring alone (members, keys and emails read from GitLab and parsed), the only part the cache
 * changes, since a whole push's time is mostly git fetching the commits.
 *
 * Run: npm run build && node dist/test/bench/verify-push.js [pushes] [commits] [members]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createGitLabClient } from '../../scheduler/gitlab/gitlab-client.js';
import { GitMirror } from '../../scheduler/verify/git-mirror.js';
import { KeyCache } from '../../scheduler/verify/key-cache.js';
import { keyringCalls, loadMemberKeyring } from '../../scheduler/verify/member-keyring.js';
import { verifyPush, ZERO_SHA, type PushVerdict } from '../../scheduler/verify/verify-push.js';
import { startGitLabDouble } from '../doubles/gitlab-double.js';
import { createResearcherRepo } from '../support/git-repo.js';
import { createGpgHome } from '../support/gpg.js';
import { createSshKeyring } from '../support/ssh-keys.js';

const PUSHES = Number(process.argv[2] ?? 20);
const COMMITS = Number(process.argv[3] ?? 5);
const MEMBERS = Number(process.argv[4] ?? 10);
const TOKEN = 'bench-admin-token';

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

/** One leader's view: its own mirror and the commits it verified. */
function makeLeader(scratch: string, name: string) {
  const mirror = new GitMirror(join(scratch, name, 'mirror.git'));
  const verified = new Set<string>();
  return { mirror, verified };
}

async function main(): Promise<void> {
  const scratch = await mkdtemp(join(tmpdir(), 'secd-bench-verify-'));
  const gitlab = await startGitLabDouble({ token: TOKEN, dataDir: join(scratch, 'gitlab') });
  const gpg = await createGpgHome();
  const ssh = await createSshKeyring();
  const repo = await createResearcherRepo();
  try {
    process.stderr.write(`making ${MEMBERS} members with keys...\n`);
    const users = [];
    for (let i = 0; i < MEMBERS; i++) {
      const email = `member${i}@example.org`;
      const user = gitlab.addUser({ username: `member${i}`, email });
      const key = await gpg.generateKey({ name: `Member ${i}`, email, algo: i % 2 === 0 ? 'ed25519' : 'rsa3072' });
      gitlab.addGpgKey(user.id, await gpg.exportPublicKey(key.fingerprint));
      gitlab.addSshKey(user.id, { key: (await ssh.generateKey('ed25519')).publicKey, usageType: 'signing' });
      users.push({ user, key });
    }
    const project = gitlab.addProject({ path: 'bench/verify', members: users.map((u) => u.user.id) });
    const pusher = users[0]!;
    const signer = await gpg.gitSigner(pusher.key);
    const url = gitlab.gitUrl(project.path, pusher.user);
    const client = keyringCalls(createGitLabClient({ url: gitlab.url, token: TOKEN }));
    const cold = makeLeader(scratch, 'cold');
    const warm = makeLeader(scratch, 'warm');
    const warmCache = new KeyCache();

    const verifyAs = async (leader: typeof cold, before: string, after: string, keyCache: KeyCache): Promise<{ ms: number; verdict: PushVerdict }> => {
      const t0 = performance.now();
      const verdict = await verifyPush(
        { projectId: project.id, before, after, fetchUrl: gitlab.gitUrl(project.path), pusher: { id: pusher.user.id, username: pusher.user.username }, alreadyVerified: (sha) => leader.verified.has(sha) },
        { mirror: leader.mirror, gitlab: client, now: () => new Date(), keyCache },
      );
      const ms = performance.now() - t0;
      if (!verdict.ok) throw new Error(`the bench push was refused: ${verdict.reason}`);
      for (const sha of verdict.commits) leader.verified.add(sha);
      return { ms, verdict };
    };

    const coldMs: number[] = [];
    const warmMs: number[] = [];
    let before = ZERO_SHA;
    for (let p = 0; p < PUSHES; p++) {
      await repo.commitMany(COMMITS, { signer, committerEmail: pusher.user.email });
      await repo.push(url);
      await gitlab.idle();
      const after = await repo.head();
      // Alternate which leader goes first, so neither always meets a cold OS page cache.
      const order = p % 2 === 0 ? (['cold', 'warm'] as const) : (['warm', 'cold'] as const);
      for (const which of order) {
        const r = which === 'cold' ? await verifyAs(cold, before, after, new KeyCache()) : await verifyAs(warm, before, after, warmCache);
        if (r.verdict.ok && r.verdict.commits.length !== COMMITS) throw new Error(`expected ${COMMITS} commits verified, got ${r.verdict.commits.length}`);
        (which === 'cold' ? coldMs : warmMs).push(r.ms);
      }
      before = after;
    }

    // The keyring alone, the same number of times.
    const coldKeyring: number[] = [];
    const warmKeyring: number[] = [];
    const keyringCache = new KeyCache();
    await loadMemberKeyring(project.id, client, keyringCache);
    for (let p = 0; p < PUSHES; p++) {
      for (const [xs, cache] of [[coldKeyring, new KeyCache()], [warmKeyring, keyringCache]] as const) {
        const t0 = performance.now();
        await loadMemberKeyring(project.id, client, cache);
        xs.push(performance.now() - t0);
      }
    }

    const line = (name: string, xs: number[]) => `${name.padEnd(22)} median ${percentile(xs, 50).toFixed(1).padStart(7)} ms   p90 ${percentile(xs, 90).toFixed(1).padStart(7)} ms`;
    process.stdout.write(`verify-push: ${PUSHES} pushes of ${COMMITS} commits, ${MEMBERS} members (GPG + SSH key each), GitLab double over HTTP\n`);
    process.stdout.write(`${line('cold (parse every key)', coldMs)}\n`);
    process.stdout.write(`${line('warm (key cache)', warmMs)}\n`);
    process.stdout.write(`key cache: ${warmCache.stats.hits} hits, ${warmCache.stats.misses} misses\n`);
    process.stdout.write(`keyring alone (${MEMBERS} members: members, GPG and SSH keys, emails over HTTP, then parsing):\n`);
    process.stdout.write(`${line('  cold', coldKeyring)}\n`);
    process.stdout.write(`${line('  warm', warmKeyring)}\n`);
  } finally {
    await repo.close();
    await ssh.close();
    await gpg.close();
    await gitlab.close();
    await rm(scratch, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
