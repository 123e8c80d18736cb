/**
 * `secd check` as a researcher runs it before a push: the real CLI (dist/, `npm run build` first),
 * real git repositories, real GnuPG keys and real SSH keys, a home of its own so that nobody's
 * ~/.gitconfig takes part. Each test is a project or a repository a researcher could have, and reads
 * what they would read: the lines, the verdict, the exit code (0 only when the leader would accept).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBareRemote, createResearcherRepo, DEFAULT_COMMITTER, type ResearcherRepo } from '../support/git-repo.js';
import { createGpgHome, type GpgHome, type GpgKey } from '../support/gpg.js';
import { runSecd, type CliResult } from '../support/secd-cli.js';
import { createSshKeyring, type SshKeyring } from '../support/ssh-keys.js';

const GOOD_FILES = {
  Dockerfile: 'FROM secd/base\nCOPY main.py /app/main.py\nCMD ["python3", "/app/main.py"]\n',
  'main.py': 'print("hello")\n',
  'secd.yml': 'runfor: 0.5\ngpu: false\n',
};

describe('secd check', () => {
  let gpg: GpgHome;
  let key: GpgKey;
  let ssh: SshKeyring;
  let home: string;
  const repos: ResearcherRepo[] = [];

  beforeAll(async () => {
    gpg = await createGpgHome();
    key = await gpg.generateKey({ name: DEFAULT_COMMITTER.name, email: DEFAULT_COMMITTER.email });
    ssh = await createSshKeyring();
    home = await mkdtemp(join(tmpdir(), 'secd-check-home-'));
  });
  afterAll(async () => {
    for (const r of repos) await r.close();
    await gpg.close();
    await ssh.close();
    await rm(home, { recursive: true, force: true });
  });

  /** A repository whose local git config signs with the GPG key, as `git config` would set it up. */
  async function signedRepo(settings: Record<string, string> = {}): Promise<ResearcherRepo> {
    const repo = await createResearcherRepo();
    repos.push(repo);
    const config = { 'user.name': DEFAULT_COMMITTER.name, 'user.email': DEFAULT_COMMITTER.email, 'user.signingkey': key.fingerprint, 'commit.gpgsign': 'true', ...settings };
    for (const [k, v] of Object.entries(config)) await repo.git(v === '' ? ['config', '--unset', k] : ['config', k, v]).catch(() => undefined);
    return repo;
  }

  const signer = () => gpg.gitSigner(key);

  /** `secd check <args>` in `dir` as the researcher: their GnuPG home, a home with no git config of its own. */
  function check(dir: string, args: string[] = []): Promise<CliResult> {
    return runSecd(['check', ...args], { cwd: dir, env: { HOME: home, XDG_CONFIG_HOME: home, GIT_CONFIG_NOSYSTEM: '1', GNUPGHOME: gpg.dir } });
  }

  const lines = (r: CliResult, level: string) => r.stdout.split('\n').filter((l) => l.startsWith(`${level.padEnd(7)} `));

  it('a good project with signed commits would be accepted: exit 0, every check named', async () => {
    const repo = await signedRepo();
    await repo.commit('First run', { files: GOOD_FILES, signer: await signer() });
    await repo.commit('Tune', { files: { 'main.py': 'print("tuned")\n' }, signer: await signer() });
    const r = await check(repo.dir);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('ok      secd.yml: valid: runfor 0.5 h, no GPU, no cache, all your granted datasets');
    expect(r.stdout).toContain('ok      Dockerfile: line 1: FROM secd/base, a secd image');
    expect(r.stdout).toContain(`ok      signing: GPG key ${key.fingerprint} signs, with user id ${DEFAULT_COMMITTER.email}`);
    expect(r.stdout).toContain(`ok      commits: 2 commits to push (the commits of HEAD on no remote branch: HEAD has no upstream yet), all signed; the newest by your key ${key.fingerprint}`);
    expect(lines(r, 'error')).toEqual([]);
    expect(r.stdout.trim().split('\n').at(-1)).toBe('secd check: a push would be accepted');
  });

  it('checks only the commits the remote lacks: past the upstream, or on no remote branch', async () => {
    const remote = await createBareRemote();
    try {
      const repo = await signedRepo();
      await repo.commit('Unsigned, from before secd', { files: GOOD_FILES });
      await repo.git(['remote', 'add', 'origin', remote.url]);
      await repo.git(['push', '--quiet', '-u', 'origin', 'main']);
      await repo.commit('Signed', { files: { 'main.py': 'print(2)\n' }, signer: await signer() });
      const r = await check(repo.dir);
      expect(r.code, r.stdout).toBe(0);
      expect(r.stdout).toContain('ok      commits: 1 commit to push (origin/main..HEAD), all signed');
      // A branch with no upstream: only what no remote branch has yet.
      await repo.git(['switch', '--quiet', '-c', 'work']);
      await repo.commit('On a branch', { files: { 'main.py': 'print(8)\n' }, signer: await signer() });
      const branch = await check(repo.dir);
      expect(branch.code, branch.stdout).toBe(0);
      expect(branch.stdout).toContain('ok      commits: 2 commits to push (the commits of HEAD on no remote branch: HEAD has no upstream yet), all signed');
    } finally {
      await remote.close();
    }
  });

  it('a secd.yml over the leader\'s limit is refused with the leader\'s own sentence; an unknown key is a warning', async () => {
    const repo = await signedRepo();
    await repo.commit('Long run', { files: { ...GOOD_FILES, 'secd.yml': 'runfor: 30\n' }, signer: await signer() });
    const r = await check(repo.dir);
    expect(r.code).toBe(1);
    expect(lines(r, 'error')).toEqual([`error   secd.yml: runfor must be at most 24 hours, the leader's limit (got 30) (checked against the leader's default limits)`]);
    expect(r.stdout.trim().split('\n').at(-1)).toBe('secd check: a push would be refused: 1 problem');

    await repo.commit('Typo', { files: { 'secd.yml': 'run_for: 1\n' }, signer: await signer() });
    const typo = await check(repo.dir);
    expect(typo.code).toBe(0);
    expect(lines(typo, 'warning')).toEqual([expect.stringContaining('secd.yml: unknown key "run_for" ignored (did you mean "runfor"?)')]);
    expect(typo.stdout).toContain('a push would be accepted (1 warning)');
  });

  it('a project without a Dockerfile is refused; one FROM an image that is not secd\'s gets the registry warning', async () => {
    const repo = await signedRepo();
    await repo.commit('No Dockerfile', { files: { 'main.py': 'print(1)\n' }, signer: await signer() });
    const r = await check(repo.dir);
    expect(r.code).toBe(1);
    expect(lines(r, 'error')).toEqual([expect.stringContaining("Dockerfile: no Dockerfile at the repository root: secd builds the repository's Dockerfile")]);

    await repo.commit('Python image', { files: { Dockerfile: 'FROM python:3.12 AS build\nFROM build\nCMD ["python3"]\n' }, signer: await signer() });
    const other = await check(repo.dir);
    expect(other.code).toBe(0);
    expect(lines(other, 'warning')).toEqual([
      'warning Dockerfile: line 1: FROM python:3.12 is not a secd image: the cluster has no registry, this must be built FROM an image the nodes hold (secd/base, secd/base:torch, secd/base:torch-cuda)',
    ]);
  });

  it('an unsigned commit is named with both ways out, and a vouch from a signed commit lets the push through', async () => {
    const repo = await signedRepo();
    const [first] = await repo.commitMany(1, { signer: await signer() });
    await repo.commit('Quick fix', { files: GOOD_FILES });
    const unsigned = await repo.head();
    await repo.commit('Signed on top', { files: { 'main.py': 'print(3)\n' }, signer: await signer() });
    const r = await check(repo.dir);
    expect(r.code).toBe(1);
    const [refusal] = lines(r, 'error');
    expect(refusal).toContain(`commits: commit ${unsigned.slice(0, 8)} (Quick fix) is not signed: sign your commits`);
    expect(refusal).toContain(`git rebase --exec 'git commit --amend --no-edit -S' ${first}`);
    expect(refusal).toContain(`--trailer 'Secd-Vouches-For: ${unsigned}'`);

    await repo.git([...(await signer()).args, 'commit', '--quiet', '--allow-empty', '-S', '-m', 'Vouch', '--trailer', `Secd-Vouches-For: ${unsigned}`], { env: gpg.env });
    const vouched = await check(repo.dir);
    expect(vouched.code, vouched.stdout).toBe(0);
    expect(vouched.stdout).toContain(`note    commits: commit ${unsigned.slice(0, 8)} (Quick fix) is not signed, but`);
  });

  it('an unsigned newest commit is refused even when everything else is right', async () => {
    const repo = await signedRepo();
    await repo.commit('Signed', { files: GOOD_FILES, signer: await signer() });
    await repo.commit('Forgot -S', { files: { 'main.py': 'print(4)\n' } });
    const r = await check(repo.dir);
    expect(r.code).toBe(1);
    expect(lines(r, 'error')).toEqual([expect.stringContaining(`commit ${(await repo.head()).slice(0, 8)} (Forgot -S) is not signed`)]);
  });

  it('a commit signed with a revoked key is refused as revoked', async () => {
    const old = await gpg.generateKey({ name: 'Ada Old', email: DEFAULT_COMMITTER.email });
    const repo = await signedRepo();
    await repo.commit('Signed with the old key', { files: GOOD_FILES, signer: await gpg.gitSigner(old) });
    await gpg.revokeKey(old.fingerprint);
    await repo.commit('Signed now', { files: { 'main.py': 'print(5)\n' }, signer: await signer() });
    const r = await check(repo.dir);
    expect(r.code).toBe(1);
    expect(lines(r, 'error')[0]).toContain(`(Signed with the old key) is signed by key ${old.fingerprint.slice(-16)}, which is revoked: sign with a key that is not revoked`);
  });

  it('outputs/ and big files committed by mistake are warned about; an unignored outputs/ too', async () => {
    const repo = await signedRepo();
    await repo.commit('Oops', { files: { ...GOOD_FILES, 'outputs/2026-12-01_10.00.00-abc/result.txt': '42\n', 'data.bin': 'x'.repeat(11 * 1024 * 1024) }, signer: await signer() });
    const tracked = await check(repo.dir);
    expect(tracked.code, tracked.stdout).toBe(0);
    expect(lines(tracked, 'warning')).toEqual([
      expect.stringContaining('files: outputs/ is committed (1 file, e.g. outputs/2026-12-01_10.00.00-abc/result.txt): results come back on secd-* branches'),
      expect.stringContaining('files: data.bin is committed and 11.0 MiB'),
    ]);

    await repo.git(['rm', '-r', '--quiet', '--cached', 'outputs']);
    await repo.git([...(await signer()).args, 'commit', '--quiet', '-S', '-m', 'Untrack outputs'], { env: gpg.env });
    const untracked = await check(repo.dir);
    expect(untracked.code).toBe(0);
    expect(lines(untracked, 'warning')).toEqual([
      expect.stringContaining('files: data.bin is committed'),
      expect.stringContaining('files: outputs/ is neither committed nor ignored: a local secd run writes there'),
    ]);
  });

  it('no signing key configured: says so, with how to make one', async () => {
    const repo = await signedRepo({ 'user.signingkey': '', 'user.email': 'nokey@example.org' });
    await repo.commit('Unsigned', { files: GOOD_FILES, committerEmail: 'nokey@example.org' });
    const r = await check(repo.dir);
    expect(r.code).toBe(1);
    expect(lines(r, 'error')).toEqual(
      expect.arrayContaining([
        expect.stringContaining('signing: no signing key configured: user.signingkey is not set and gpg has no secret key for nokey@example.org; make one (gpg --quick-gen-key'),
        expect.stringContaining('(Unsigned) is not signed'),
      ]),
    );
  });

  it("a key whose user ids lack user.email is refused before any commit is made with it", async () => {
    const repo = await signedRepo({ 'user.email': 'ada@other.example.org' });
    await repo.commit('Signed', { files: GOOD_FILES, signer: await signer(), committerEmail: 'ada@other.example.org' });
    const r = await check(repo.dir);
    expect(r.code).toBe(1);
    expect(lines(r, 'error')).toEqual(
      expect.arrayContaining([
        expect.stringContaining(`signing: user.email ada@other.example.org is not a user id of key ${key.fingerprint} (it has ${DEFAULT_COMMITTER.email}): commit with an email`),
        expect.stringContaining('has committer email ada@other.example.org, which is not a user id of your key'),
      ]),
    );
  });

  it('an SSH signing setup: the key file, its fingerprint as ssh-keygen prints it, and the newest commit signed by it', async () => {
    const mine = await ssh.generateKey('ed25519');
    const repo = await signedRepo({ 'gpg.format': 'ssh', 'user.signingkey': `${mine.privateKeyPath}.pub` });
    await repo.commit('SSH-signed', { files: GOOD_FILES, signer: ssh.gitSigner(mine) });
    const r = await check(repo.dir);
    expect(r.code, r.stdout).toBe(0);
    expect(r.stdout).toContain(`ok      signing: SSH key ${mine.privateKeyPath}.pub (ssh-ed25519, ${mine.fingerprint}) signs; GitLab must hold it with usage "Authentication & Signing" or "Signing"`);
    expect(r.stdout).toContain('ok      commits: 1 commit to push');

    const colleague = await ssh.generateKey('ed25519');
    await repo.commit("A colleague's commit", { files: { 'main.py': 'print(6)\n' }, signer: ssh.gitSigner(colleague) });
    const theirs = await check(repo.dir);
    expect(theirs.code).toBe(1);
    expect(lines(theirs, 'error')).toEqual([expect.stringContaining(`is the newest commit, the one that runs, but it is signed by key ${colleague.fingerprint}, not by your signing key`)]);

    await repo.git(['config', 'user.signingkey', join(ssh.dir, 'missing.pub')]);
    const missing = await check(repo.dir);
    expect(lines(missing, 'error')).toEqual(expect.arrayContaining([expect.stringContaining(`signing: user.signingkey is ${join(ssh.dir, 'missing.pub')}, which does not exist`)]));
  });

  it('gpg.format x509 is refused as secd does not accept it', async () => {
    const repo = await signedRepo();
    await repo.commit('Signed', { files: GOOD_FILES, signer: await signer() });
    await repo.git(['config', 'gpg.format', 'x509']);
    const r = await check(repo.dir);
    expect(r.code).toBe(1);
    expect(lines(r, 'error')).toEqual([expect.stringContaining('signing: gpg.format is x509: secd does not accept X.509 signatures')]);
  });

  it('--leader asks the leader for its nodes and says its limits are not published', async () => {
    const server = http.createServer((req, res) => {
      res.setHeader('content-type', 'application/json');
      const a100 = (uuid: string) => ({ uuid, index: 0, name: 'NVIDIA A100-SXM4-40GB', memory_total_bytes: 42_949_672_960 });
      const nodes = [
        { id: 'gpu-01', state: 'up', gpus: [a100('GPU-a'), a100('GPU-b')] },
        { id: 'gpu-02', state: 'down', gpus: [a100('GPU-c'), a100('GPU-d'), a100('GPU-e'), a100('GPU-f')] },
      ];
      res.end(req.url === '/api/v1/nodes' ? JSON.stringify({ nodes }) : '{}');
    });
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const repo = await signedRepo();
      await repo.commit('Four GPUs', { files: { ...GOOD_FILES, 'secd.yml': 'gpu: 4\n' }, signer: await signer() });
      const r = await check(repo.dir, ['--leader', url]);
      expect(r.code).toBe(1);
      expect(r.stdout).toContain(`note    leader: ${url}: 1 node up, the largest with 2 GPUs`);
      expect(r.stdout).toContain("note    leader: the leader's API does not expose its limits (limits.max_runfor_hours, limits.max_gpus_per_run)");
      expect(lines(r, 'error')).toEqual([expect.stringContaining('secd.yml: gpu asks for 4 GPUs, but no node has 4 GPUs (the largest has 2)')]);
      // Offline the same file passes the leader's limit, and a note says the nodes decide.
      const offline = await check(repo.dir);
      expect(offline.code).toBe(0);
      expect(offline.stdout).toContain('note    secd.yml: whether a node has 4 GPUs only the leader knows');

      // A request for a kind of GPU is held to the models and memory the leader's nodes report.
      await repo.commit('An H100', { files: { 'secd.yml': 'gpu: { count: 1, model: H100 }\n' }, signer: await signer() });
      const h100 = await check(repo.dir, ['--leader', url]);
      expect(h100.code).toBe(1);
      expect(lines(h100, 'error')).toEqual([expect.stringContaining('secd.yml: gpu cannot be met: no node has 1 GPU matching model H100')]);
      await repo.commit('An A100', { files: { 'secd.yml': 'gpu: { model: A100, memory: 40GB }\n' }, signer: await signer() });
      const a100 = await check(repo.dir, ['--leader', url]);
      expect(a100.code, a100.stdout).toBe(0);
      expect(a100.stdout).toContain('ok      secd.yml: valid: runfor 3 h, 1 GPU (model A100, at least 40 GB each), no cache');
    } finally {
      server.close();
    }
  });

  it("--leader over HTTPS trusts the cluster CA that git trusts (http.sslCAInfo), and without it says it checked offline", async () => {
    const certs = await mkdtemp(join(tmpdir(), 'secd-check-ca-'));
    const f = (name: string) => join(certs, name);
    const openssl = (args: string[]) => promisify(execFile)('openssl', args);
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    await openssl(['req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=secd test cluster CA']);
    await openssl(['req', ...ec, '-keyout', f('leader.key'), '-out', f('leader.csr'), '-subj', '/CN=127.0.0.1']);
    await writeFile(f('san.ext'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
    await openssl(['x509', '-req', '-in', f('leader.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('leader.pem'), '-days', '2', '-extfile', f('san.ext')]);
    const server = https.createServer({ cert: await readFile(f('leader.pem')), key: await readFile(f('leader.key')) }, (_req, res) => {
      res.end(JSON.stringify({ nodes: [{ id: 'gpu-01', state: 'up', gpus: [{}, {}, {}, {}] }] }));
    });
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    try {
      const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const repo = await signedRepo();
      await repo.commit('Signed', { files: GOOD_FILES, signer: await signer() });
      const untrusted = await check(repo.dir, ['--leader', url]);
      expect(untrusted.code).toBe(0);
      expect(lines(untrusted, 'warning')).toEqual([expect.stringMatching(new RegExp(`^warning leader: could not read ${url}/api/v1/nodes: .*; checked offline$`))]);
      await repo.git(['config', 'http.sslCAInfo', f('ca.pem')]);
      const trusted = await check(repo.dir, ['--leader', url]);
      expect(trusted.stdout).toContain(`note    leader: ${url}: 1 node up, the largest with 4 GPUs`);
      expect(lines(trusted, 'warning')).toEqual([]);
    } finally {
      server.close();
      await rm(certs, { recursive: true, force: true });
    }
  });

  it('bad usage exits 2: an unknown option, a folder that does not exist, a --leader that is no URL', async () => {
    const repo = await signedRepo();
    expect((await check(repo.dir, ['--frobnicate'])).code).toBe(2);
    const missing = await check(repo.dir, [join(repo.dir, 'nope')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('nope is not a folder');
    const leader = await check(repo.dir, ['--leader', 'secd.example.org']);
    expect(leader.code).toBe(2);
    expect(leader.stderr).toContain("--leader must be the leader's URL");
  });

  it('--install-hook writes a pre-push hook that stops a push secd would refuse, and never overwrites a hook of its own', async () => {
    const remote = await createBareRemote();
    try {
      const repo = await signedRepo();
      await repo.commit('Signed', { files: GOOD_FILES, signer: await signer() });
      const installed = await check(repo.dir, ['--install-hook']);
      expect(installed.code, installed.stdout).toBe(0);
      const hook = join(repo.dir, '.git', 'hooks', 'pre-push');
      expect(installed.stdout).toContain(`ok      hook: ${hook} runs secd check before every push`);
      expect((await stat(hook)).mode & 0o111).not.toBe(0);

      // git runs the hook: the researcher's own git, their home and keyring.
      const env = { ...process.env, HOME: home, XDG_CONFIG_HOME: home, GIT_CONFIG_NOSYSTEM: '1', GNUPGHOME: gpg.dir };
      const push = (args: string[]) => promisify(execFile)('git', ['push', ...args, remote.url, 'main'], { cwd: repo.dir, env });
      await push(['--quiet']);
      expect(await remote.tip('refs/heads/main')).toBe(await repo.head());
      await repo.commit('Unsigned', { files: { 'main.py': 'print(7)\n' } });
      const refused = await push([]).then(() => null, (err: { stdout: string; stderr: string }) => err);
      expect(refused, 'the hook should have stopped the push').not.toBeNull();
      expect(refused!.stderr + refused!.stdout).toContain('is not signed');
      expect(await remote.tip('refs/heads/main')).not.toBe(await repo.head());

      // Installing again replaces secd's own hook; somebody else's is left alone.
      expect((await check(repo.dir, ['--install-hook'])).stdout).toContain('ok      hook:');
      await writeFile(hook, '#!/bin/sh\necho mine\n');
      const foreign = await check(repo.dir, ['--install-hook']);
      expect(foreign.code).toBe(1);
      expect(lines(foreign, 'error')).toEqual(expect.arrayContaining([expect.stringContaining(`hook: ${hook} exists and was not written by secd: left as it is`)]));
      expect(await readFile(hook, 'utf8')).toBe('#!/bin/sh\necho mine\n');
    } finally {
      await remote.close();
    }
  });
});
