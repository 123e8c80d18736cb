/**
 * Real OpenSSH keys for tests: made by `ssh-keygen` in a private temp dir without passphrases, with
 * the git options that sign commits with them (`gpg.format ssh`) the way a researcher's git does,
 * and `ssh-keygen -Y sign` for signatures git would not make (another namespace).
 * Used by tests and compiled into dist, so it imports nothing from vitest.
 */
import { execFile } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { GitSigner } from './gpg.js';

/** The key types a researcher may sign with; RSA takes a size in bits. */
export type SshKeyType = 'ed25519' | 'ecdsa' | 'rsa';

/** A key pair made in an SshKeyring. */
export interface SshKey {
  type: SshKeyType;
  /** The private key file, as `user.signingkey` names it. */
  privateKeyPath: string;
  /** The public key line ("ssh-ed25519 AAAA… comment"), as a researcher pastes it into GitLab. */
  publicKey: string;
  /** What `ssh-keygen -l` prints for it: "SHA256:…". */
  fingerprint: string;
}

/** A temp dir of keys; close() deletes it. */
export interface SshKeyring {
  dir: string;
  /** Make a key; `bits` only for RSA (default 3072), `comment` defaults to the key's name. */
  generateKey(type: SshKeyType, options?: { bits?: number; comment?: string }): Promise<SshKey>;
  /** git `-c` options that sign commits with `key` as SSH signatures. */
  gitSigner(key: SshKey): GitSigner;
  /** An armored SSH signature of `data` by `key` in `namespace`, made by `ssh-keygen -Y sign`. */
  sign(key: SshKey, data: Buffer | string, namespace: string): Promise<string>;
  close(): Promise<void>;
}

/** Make an empty keyring in a private temp dir. */
export async function createSshKeyring(): Promise<SshKeyring> {
  const dir = await mkdtemp(join(tmpdir(), 'secd-ssh-'));
  await chmod(dir, 0o700);
  let count = 0;
  return {
    dir,
    async generateKey(type, options = {}) {
      const name = `${type}-${++count}`;
      const path = join(dir, name);
      const size = type === 'rsa' ? ['-b', String(options.bits ?? 3072)] : [];
      await run('ssh-keygen', ['-q', '-t', type, ...size, '-N', '', '-C', options.comment ?? name, '-f', path]);
      const publicKey = (await readFile(`${path}.pub`, 'utf8')).trim();
      // "256 SHA256:… comment (ED25519)": the second field is the fingerprint.
      const listed = (await run('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${path}.pub`])).split(' ')[1];
      if (!listed?.startsWith('SHA256:')) throw new Error(`ssh-keygen -l printed no SHA256 fingerprint for ${path}.pub`);
      return { type, privateKeyPath: path, publicKey, fingerprint: listed };
    },
    gitSigner(key) {
      return {
        args: ['-c', 'gpg.format=ssh', '-c', `user.signingkey=${key.privateKeyPath}`, '-c', 'commit.gpgsign=true'],
        env: {},
      };
    },
    async sign(key, data, namespace) {
      return run('ssh-keygen', ['-q', '-Y', 'sign', '-n', namespace, '-f', key.privateKeyPath], Buffer.from(data));
    },
    async close() {
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A commit object made of `payload` (a commit without signature) and `armored` as its `gpgsig`
 * header, laid out as git lays it out: the header before the blank line, continuation lines indented
 * by one space. Write it with `git hash-object -t commit -w --stdin`.
 */
export function commitWithSignature(payload: Buffer, armored: string): Buffer {
  const text = payload.toString('utf8');
  const end = text.indexOf('\n\n');
  if (end === -1) throw new Error('commitWithSignature: the payload has no blank line after its header');
  const header = `gpgsig ${armored.trimEnd().split('\n').join('\n ')}`;
  return Buffer.from(`${text.slice(0, end + 1)}${header}${text.slice(end)}`, 'utf8');
}

function run(cmd: string, args: string[], input?: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' } }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${stderr || err.message}`));
      else resolve(stdout);
    });
    // A command that does not read its stdin may exit first; the write error that follows is harmless.
    child.stdin?.on('error', () => undefined);
    if (input === undefined) child.stdin?.end();
    else child.stdin?.end(input);
  });
}
