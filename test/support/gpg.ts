/**
 * Real GnuPG for tests: an isolated GNUPGHOME in a temp dir, fast ed25519 keys without passphrases,
 * expired and revoked keys made the way a researcher's would be, and the git options to sign with them.
 * Used by tests and compiled into dist, so it imports nothing from vitest.
 */
import { execFile } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A key generated in a GpgHome; fingerprints are uppercase hex. */
export interface GpgKey {
  name: string;
  email: string;
  fingerprint: string;
  /** The subkey that signs, when the key was made with a separate signing subkey. */
  signingSubkeyFingerprint?: string;
}

/** How to make a key. */
export interface GenerateKeyOptions {
  name: string;
  email: string;
  /** gpg expiry: "0" (never, the default), "1d", "2y", an ISO date... */
  expire?: string;
  /** Pretend the key was made at this time (gpg --faked-system-time). */
  createdAt?: Date;
  /** Make a certify-only primary key with an ed25519 signing subkey, the layout many people use. */
  signingSubkey?: boolean;
  /** Extra user ids ("Name <email>") added to the key. */
  extraUserIds?: string[];
}

/** What git needs to sign a commit with a key: `-c` options and environment. */
export interface GitSigner {
  args: string[];
  env: Record<string, string>;
}

/** An isolated GnuPG home with helpers; call close() to stop its agent and delete it. */
export interface GpgHome {
  dir: string;
  env: Record<string, string>;
  generateKey(options: GenerateKeyOptions): Promise<GpgKey>;
  /** Armored public key(s), as a researcher would paste into GitLab. */
  exportPublicKey(fingerprint: string): Promise<string>;
  /** Revoke the key with the revocation certificate gpg made when it generated the key. */
  revokeKey(fingerprint: string): Promise<void>;
  /** git `-c` options and env to sign with `key`; `at` signs as if the clock showed that time. */
  gitSigner(key: GpgKey, options?: { at?: Date }): Promise<GitSigner>;
  /** Run gpg in this home with `args`; returns stdout. */
  gpg(args: string[], options?: { input?: string; at?: Date }): Promise<string>;
  close(): Promise<void>;
}

/** Make a fresh GNUPGHOME; keys made in it never touch the user's own keyring. */
export async function createGpgHome(): Promise<GpgHome> {
  // Short path: gpg-agent's socket must fit in sun_path when /run/user is absent.
  const dir = await mkdtemp(join(tmpdir(), 'secd-gpg-'));
  await chmod(dir, 0o700);
  await writeFile(join(dir, 'gpg-agent.conf'), 'allow-loopback-pinentry\n');
  const env = { GNUPGHOME: dir };
  let wrappers = 0;

  const gpg = (args: string[], options: { input?: string; at?: Date } = {}): Promise<string> =>
    run(
      'gpg',
      [
        '--batch',
        '--no-tty',
        '--pinentry-mode',
        'loopback',
        '--passphrase',
        '',
        ...(options.at ? ['--faked-system-time', gpgTime(options.at)] : []),
        ...args,
      ],
      env,
      options.input,
    );

  const fingerprints = async (query: string): Promise<{ primary: string; subkeys: { fpr: string; caps: string }[] }> => {
    const out = await gpg(['--with-colons', '--with-subkey-fingerprints', '--list-keys', query]);
    let primary = '';
    const subkeys: { fpr: string; caps: string }[] = [];
    let last: 'pub' | 'sub' | null = null;
    let caps = '';
    for (const line of out.split('\n')) {
      const f = line.split(':');
      if (f[0] === 'pub' || f[0] === 'sub') {
        last = f[0];
        caps = f[11] ?? '';
      } else if (f[0] === 'fpr' && last) {
        if (last === 'pub' && !primary) primary = f[9] ?? '';
        if (last === 'sub') subkeys.push({ fpr: f[9] ?? '', caps });
        last = null;
      }
    }
    return { primary, subkeys };
  };

  return {
    dir,
    env,
    gpg,
    async generateKey(o) {
      const uid = `${o.name} <${o.email}>`;
      const at = o.createdAt ? { at: o.createdAt } : {};
      const expire = o.expire ?? '0';
      await gpg(['--quick-gen-key', uid, 'ed25519', o.signingSubkey ? 'cert' : 'sign', expire], at);
      const { primary } = await fingerprints(`=${uid}`);
      if (!primary) throw new Error(`gpg made no key for ${uid}`);
      for (const extra of o.extraUserIds ?? []) await gpg(['--quick-add-uid', primary, extra], at);
      const key: GpgKey = { name: o.name, email: o.email, fingerprint: primary };
      if (o.signingSubkey) {
        await gpg(['--quick-add-key', primary, 'ed25519', 'sign', expire], at);
        const sub = (await fingerprints(primary)).subkeys.find((s) => s.caps.includes('s'));
        if (!sub) throw new Error(`gpg made no signing subkey for ${uid}`);
        key.signingSubkeyFingerprint = sub.fpr;
      }
      return key;
    },
    async exportPublicKey(fingerprint) {
      return gpg(['--armor', '--export', fingerprint]);
    },
    async revokeKey(fingerprint) {
      // gpg stores a revocation certificate per key, its armor line prefixed with ':' so that it is
      // not imported by accident; importing it without the colon is the documented way to use it.
      const cert = await readFile(join(dir, 'openpgp-revocs.d', `${fingerprint}.rev`), 'utf8');
      await gpg(['--import'], { input: cert.replace(/^:-----BEGIN/m, '-----BEGIN') });
    },
    async gitSigner(key, options = {}) {
      let program = 'gpg';
      if (options.at) {
        // git runs gpg.program with its own arguments; a wrapper adds the faked clock.
        program = join(dir, `gpg-at-${++wrappers}.sh`);
        await writeFile(program, `#!/bin/sh\nexec gpg --faked-system-time ${gpgTime(options.at)} "$@"\n`, { mode: 0o755 });
      }
      return {
        args: ['-c', `gpg.program=${program}`, '-c', `user.signingkey=${key.fingerprint}`, '-c', 'commit.gpgsign=true'],
        env: { ...env },
      };
    },
    async close() {
      await run('gpgconf', ['--kill', 'gpg-agent'], env).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

// gpg's ISO form, with '!' so the faked clock stands still and results do not depend on speed.
function gpgTime(date: Date): string {
  return `${date.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, '')}!`;
}

function run(cmd: string, args: string[], extraEnv: Record<string, string>, input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      args,
      { env: { ...process.env, ...extraEnv, LC_ALL: 'C' }, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${stderr || err.message}`));
        else resolve(stdout);
      },
    );
    // A command that does not read its stdin may exit first; the write error that follows is harmless.
    child.stdin?.on('error', () => undefined);
    if (input === undefined) child.stdin?.end();
    else child.stdin?.end(input);
  });
}
