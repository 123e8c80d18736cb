/**
 * verifyPush and history (DESIGN §13): `before` bounds a push only when secd verified it itself, so
 * an unsigned commit whose push was rejected cannot ride in under a signed one; such a commit is
 * accepted only when the pusher vouches for it in a later signed commit's `Secd-Vouches-For`
 * trailer, made with the very command the refusal gives. And the parsed keys kept between pushes.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createGpgHome, type GitSigner, type GpgHome, type GpgKey } from '../../test/support/gpg.js';
import { KeyCache } from './key-cache.js';
import { createPushScene, FakeGitLab, type PushScene } from '../../test/support/verify-push-fixture.js';

let gpg: GpgHome;
let ada: GpgKey;
let bob: GpgKey;
let adaSigns: { signer: GitSigner };
let bobSigns: { signer: GitSigner; committerEmail: string };
const armored = new Map<GpgKey, string>();

beforeAll(async () => {
  gpg = await createGpgHome();
  ada = await gpg.generateKey({ name: 'Ada Researcher', email: 'ada@example.org' });
  bob = await gpg.generateKey({ name: 'Bob Colleague', email: 'bob@example.org' });
  for (const key of [ada, bob]) armored.set(key, await gpg.exportPublicKey(key.fingerprint));
  adaSigns = { signer: await gpg.gitSigner(ada) };
  bobSigns = { signer: await gpg.gitSigner(bob), committerEmail: 'bob@example.org' };
});

afterAll(async () => {
  await gpg?.close();
});

let gitlab: FakeGitLab;
let scene: PushScene;

beforeEach(async () => {
  gitlab = new FakeGitLab();
  gitlab.addMember({ id: 1, username: 'ada', gpgKeys: [armored.get(ada)!] });
  gitlab.addMember({ id: 2, username: 'bob', gpgKeys: [armored.get(bob)!] });
  scene = await createPushScene(gitlab);
});

afterEach(async () => {
  await scene.close();
});

const short = (sha: string): string => sha.slice(0, 8);

/** The vouch command a refusal gives, run by `signer` exactly as written (git parses the quotes' contents). */
async function runVouchCommand(reason: string, signer: GitSigner, email = 'ada@example.org'): Promise<string> {
  const m = /git commit --allow-empty -S -m 'Vouch for unsigned commits' ((?:--trailer '[^']+' ?)+), then git push/.exec(reason);
  if (!m) throw new Error(`the reason gives no vouch command: ${reason}`);
  const trailers = [...m[1]!.matchAll(/--trailer '([^']+)'/g)].flatMap((t) => ['--trailer', t[1]!]);
  await scene.repo.git(
    [...signer.args, '-c', 'user.name=Ada Researcher', '-c', `user.email=${email}`, 'commit', '--quiet', '--allow-empty', '-S', '-m', 'Vouch for unsigned commits', ...trailers],
    { env: { ...signer.env, GIT_COMMITTER_EMAIL: email, GIT_AUTHOR_EMAIL: email } },
  );
  return scene.repo.head();
}

describe('unsigned history under a signed head', () => {
  it('a rejected unsigned commit is refused again when a signed commit is pushed on top of it', async () => {
    await scene.repo.commitMany(1, adaSigns);
    expect(await scene.pushAndVerify()).toMatchObject({ ok: true });
    const [unsigned] = await scene.repo.commitMany(1);
    const first = await scene.pushAndVerify();
    expect(first).toMatchObject({ ok: false, code: 'unsigned', commit: short(unsigned!) });

    // before = the unsigned commit, which the mirror holds but secd never verified.
    await scene.repo.commitMany(1, adaSigns);
    const second = await scene.pushAndVerify();
    expect(second).toMatchObject({ ok: false, code: 'unsigned', commit: short(unsigned!) });
  });

  it('the refusal gives both ways out with exact commands: rewrite (force push) or vouch (plain push)', async () => {
    const [base] = await scene.repo.commitMany(1, adaSigns);
    await scene.pushAndVerify();
    const unsigned = await scene.repo.commitMany(2);
    await scene.repo.commitMany(1, adaSigns);
    const verdict = await scene.pushAndVerify();
    expect(verdict.ok).toBe(false);
    const reason = verdict.ok ? '' : verdict.reason;
    expect(reason).toContain(`git rebase --exec 'git commit --amend --no-edit -S' ${base}, then git push --force-with-lease (only where the branch allows force pushes)`);
    expect(reason).toContain(
      `git commit --allow-empty -S -m 'Vouch for unsigned commits' --trailer 'Secd-Vouches-For: ${unsigned[0]}' --trailer 'Secd-Vouches-For: ${unsigned[1]}', then git push (no force needed)`,
    );
    expect(reason).not.toContain('\n');
  });

  it('a signed commit by the pusher that vouches for each unsigned commit lets the push run, and says who vouched', async () => {
    await scene.repo.commitMany(1, adaSigns);
    await scene.pushAndVerify();
    const unsigned = await scene.repo.commitMany(2);
    const refused = await scene.pushAndVerify();
    expect(refused.ok).toBe(false);

    const vouch = await runVouchCommand(refused.ok ? '' : refused.reason, adaSigns.signer);
    const verdict = await scene.pushAndVerify();
    expect(verdict).toMatchObject({
      ok: true,
      commits: [...unsigned, vouch],
      head: { sha: vouch, username: 'ada' },
      vouched: [
        { commit: unsigned[0], by: 'ada', in: vouch },
        { commit: unsigned[1], by: 'ada', in: vouch },
      ],
    });
    // Vouched-for commits count as verified from now on: the next push starts above them.
    await scene.repo.commitMany(1, adaSigns);
    expect(await scene.pushAndVerify()).toMatchObject({ ok: true, vouched: [] });
  });

  it("the vouch command names the refused commits a vouch can fix, not a newest commit another member signed", async () => {
    await scene.repo.commitMany(1, adaSigns);
    await scene.pushAndVerify();
    const [unsigned] = await scene.repo.commitMany(1);
    const [bobs] = await scene.repo.commitMany(1, bobSigns);
    const verdict = await scene.pushAndVerify();
    expect(verdict).toMatchObject({ ok: false, code: 'unsigned', commit: short(unsigned!) });
    const reason = verdict.ok ? '' : verdict.reason;
    expect(reason).toContain(`--trailer 'Secd-Vouches-For: ${unsigned}', then git push`);
    expect(reason).not.toContain(bobs!);
  });

  it('a vouch counts only from the pusher, only for the commit it names in full, and only in the trailer block', async () => {
    await scene.repo.commitMany(1, adaSigns);
    await scene.pushAndVerify();
    const [unsigned] = await scene.repo.commitMany(1);
    // Bob vouches, but ada pushes: it counts for nothing (the head is hers, so the push is ada's).
    await scene.repo.commit(`Vouch\n\nSecd-Vouches-For: ${unsigned}`, bobSigns);
    // Ada names it by a short id, then only in the body, not the last paragraph.
    await scene.repo.commit(`Vouch\n\nSecd-Vouches-For: ${unsigned!.slice(0, 12)}`, adaSigns);
    await scene.repo.commit(`Vouch\n\nSecd-Vouches-For: ${unsigned}\n\nJust a note.`, adaSigns);
    const verdict = await scene.pushAndVerify();
    expect(verdict).toMatchObject({ ok: false, code: 'unsigned', commit: short(unsigned!) });
  });
});

describe('parsed keys kept between pushes', () => {
  it('a second push parses no key again, but a key added or removed in GitLab counts at once', async () => {
    const cache = new KeyCache();
    await scene.repo.commitMany(1, adaSigns);
    expect(await scene.pushAndVerify({}, { keyCache: cache })).toMatchObject({ ok: true });
    expect(cache.stats).toEqual({ hits: 0, misses: 2 });

    await scene.repo.commitMany(1, adaSigns);
    expect(await scene.pushAndVerify({}, { keyCache: cache })).toMatchObject({ ok: true });
    expect(cache.stats).toEqual({ hits: 2, misses: 2 });
    // GitLab was still asked, every push: only the parsing was saved.
    expect(gitlab.calls.listUserGpgKeys).toBe(4);

    // Ada's key is removed from GitLab: the cached parse must not keep vouching for her.
    gitlab.gpg.set(1, []);
    await scene.repo.commitMany(1, adaSigns);
    expect(await scene.pushAndVerify({}, { keyCache: cache })).toMatchObject({ ok: false, code: 'unknown_key' });
    // And a new key of hers counts on the very next push.
    const fresh = await gpg.generateKey({ name: 'Ada (new key)', email: 'ada@example.org' });
    gitlab.addGpgKey(1, await gpg.exportPublicKey(fresh.fingerprint));
    await scene.repo.git(['reset', '--hard', 'HEAD~1']);
    await scene.repo.commitMany(1, { signer: await gpg.gitSigner(fresh) });
    expect(await scene.pushAndVerify({}, { keyCache: cache, force: true })).toMatchObject({ ok: true, head: { fingerprint: fresh.fingerprint } });
    expect(cache.stats.misses).toBe(4);
  });
});
