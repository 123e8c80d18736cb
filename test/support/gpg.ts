/**
 * Real GnuPG for tests: an isolated GNUPGHOME in a temp dir, fast ed25519 keys without passphrases,
 * expired and revoked keys made the way a researcher's would be, and the git options to sign with them;
 * also the odd signatures real histories hold (SHA-1 digests, RSA-1024 keys, revoked user ids, SSH
 * signatures, a quick-check field that is off, an assembled X.509 commit), made by the real tools or
 * by editing real packets, never by secd's own OpenPGP code.
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
  /** gpg's algorithm for the primary key, e.g. "rsa1024" or "rsa3072"; ed25519 by default. */
  algo?: string;
}

/** How gpg signs for git: `at` signs as if the clock showed that time, `digestAlgo` forces a digest ("SHA1"). */
export interface SignOptions {
  at?: Date;
  digestAlgo?: string;
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
  /** Revoke one user id ("Name <email>") of the key, as `gpg --quick-revoke-uid` does. */
  revokeUserId(fingerprint: string, userId: string): Promise<void>;
  /** git `-c` options and env to sign with `key`, through a gpg.program wrapper when options ask for one. */
  gitSigner(key: GpgKey, options?: SignOptions): Promise<GitSigner>;
  /** A new ed25519 SSH key (ssh-keygen) and the git options to sign with it (gpg.format ssh). */
  sshSigner(): Promise<GitSigner>;
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
      await gpg(['--quick-gen-key', uid, o.algo ?? 'ed25519', o.signingSubkey ? 'cert' : 'sign', expire], at);
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
    async revokeUserId(fingerprint, userId) {
      await gpg(['--quick-revoke-uid', fingerprint, userId]);
    },
    async gitSigner(key, options = {}) {
      let program = 'gpg';
      const extra = [
        ...(options.at ? ['--faked-system-time', gpgTime(options.at)] : []),
        ...(options.digestAlgo ? ['--digest-algo', options.digestAlgo] : []),
      ];
      if (extra.length > 0) {
        // git runs gpg.program with its own arguments; a wrapper adds ours (the clock, the digest).
        program = join(dir, `gpg-wrapper-${++wrappers}.sh`);
        await writeFile(program, `#!/bin/sh\nexec gpg ${extra.join(' ')} "$@"\n`, { mode: 0o755 });
      }
      return {
        args: ['-c', `gpg.program=${program}`, '-c', `user.signingkey=${key.fingerprint}`, '-c', 'commit.gpgsign=true'],
        env: { ...env },
      };
    },
    async sshSigner() {
      const keyPath = join(dir, `ssh-key-${++wrappers}`);
      await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'secd test', '-f', keyPath], env);
      return {
        args: ['-c', 'gpg.format=ssh', '-c', `user.signingkey=${keyPath}`, '-c', 'commit.gpgsign=true'],
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

/**
 * A raw commit object: `payload` (a commit without signature, as parseCommit returns it) with
 * `signature` (armored text) put in a `gpgsig` header before the blank line, as git writes it.
 */
export function withSignature(payload: Buffer, signature: string, header: 'gpgsig' | 'gpgsig-sha256' = 'gpgsig'): Buffer {
  const end = payload.indexOf('\n\n');
  if (end === -1) throw new Error('withSignature: the payload has no blank line after its headers');
  const lines = signature.replace(/\n$/, '').split('\n');
  const block = `${header} ${lines.join('\n ')}\n`;
  return Buffer.concat([payload.subarray(0, end + 1), Buffer.from(block), payload.subarray(end + 1)]);
}

/**
 * Armored OpenPGP data with the two quick-check bytes ("signed hash value prefix") of its
 * `index`-th signature packet inverted, re-armored with a fresh checksum. The signature's math is
 * untouched: those bytes lie outside what is signed.
 */
export function flipQuickCheck(armored: string, index = 0): string {
  const { begin, end, body } = dearmor(armored);
  const bytes = Buffer.from(body);
  let seen = 0;
  for (const packet of packets(bytes)) {
    if (packet.tag !== 2 || seen++ !== index) continue;
    const b = packet.bodyStart;
    if (bytes[b] !== 4) throw new Error(`flipQuickCheck: signature packet ${index} is version ${bytes[b]}, not 4`);
    const hashedLen = bytes.readUInt16BE(b + 4);
    const unhashedAt = b + 6 + hashedLen;
    const quickCheck = unhashedAt + 2 + bytes.readUInt16BE(unhashedAt);
    bytes[quickCheck] = bytes[quickCheck]! ^ 0xff;
    bytes[quickCheck + 1] = bytes[quickCheck + 1]! ^ 0xff;
    return armor(begin, end, bytes);
  }
  throw new Error(`flipQuickCheck: the data has no signature packet ${index} (it has ${seen})`);
}

function dearmor(armored: string): { begin: string; end: string; body: Buffer } {
  const lines = armored.replace(/\r/g, '').split('\n');
  const first = lines.findIndex((l) => l.startsWith('-----BEGIN '));
  const last = lines.findIndex((l) => l.startsWith('-----END '));
  if (first === -1 || last === -1) throw new Error('dearmor: not an armored block');
  const blank = lines.indexOf('', first);
  const data = lines.slice(blank + 1, last).filter((l) => !l.startsWith('='));
  return { begin: lines[first]!, end: lines[last]!, body: Buffer.from(data.join(''), 'base64') };
}

function armor(begin: string, end: string, body: Buffer): string {
  const b64 = body.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '');
  const crc = crc24(body);
  const crcText = Buffer.from([crc >> 16, (crc >> 8) & 0xff, crc & 0xff]).toString('base64');
  return `${begin}\n\n${b64}\n=${crcText}\n${end}\n`;
}

// RFC 4880 §6.1's CRC-24 of the armor checksum line.
function crc24(data: Buffer): number {
  let crc = 0xb704ce;
  for (const byte of data) {
    crc ^= byte << 16;
    for (let i = 0; i < 8; i++) {
      crc <<= 1;
      if (crc & 0x1000000) crc ^= 0x1864cfb;
    }
  }
  return crc & 0xffffff;
}

// The packets of binary OpenPGP data (RFC 4880 §4.2, old and new headers; no partial lengths, which
// keys and signatures never use).
function* packets(bytes: Buffer): Generator<{ tag: number; bodyStart: number }> {
  let pos = 0;
  while (pos < bytes.length) {
    const ctb = bytes[pos]!;
    if (!(ctb & 0x80)) throw new Error(`packets: byte ${pos} is not a packet header`);
    let tag: number;
    let len: number;
    let bodyStart: number;
    if (ctb & 0x40) {
      tag = ctb & 0x3f;
      const o1 = bytes[pos + 1]!;
      if (o1 < 192) [len, bodyStart] = [o1, pos + 2];
      else if (o1 < 224) [len, bodyStart] = [((o1 - 192) << 8) + bytes[pos + 2]! + 192, pos + 3];
      else if (o1 === 255) [len, bodyStart] = [bytes.readUInt32BE(pos + 2), pos + 6];
      else throw new Error('packets: partial body lengths are not supported');
    } else {
      tag = (ctb >> 2) & 0x0f;
      const lengthType = ctb & 3;
      if (lengthType === 0) [len, bodyStart] = [bytes[pos + 1]!, pos + 2];
      else if (lengthType === 1) [len, bodyStart] = [bytes.readUInt16BE(pos + 1), pos + 3];
      else if (lengthType === 2) [len, bodyStart] = [bytes.readUInt32BE(pos + 1), pos + 5];
      else [len, bodyStart] = [bytes.length - pos - 1, pos + 1];
    }
    yield { tag, bodyStart };
    pos = bodyStart + len;
  }
}
