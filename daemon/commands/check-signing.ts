/**
 * `secd check`'s look at how git signs here (DESIGN §13): `gpg.format`, `user.signingkey`,
 * `commit.gpgsign` and whether the key's user ids hold `user.email` — the same rules the leader
 * applies to each commit, checked once on the key before any commit is made with it.
 *
 * - OpenPGP: the key is read with `gpg --list-secret-keys --with-colons` (a secret key is what git
 *   signs with; when there is none, `--list-keys` says whether only the public half is here), through
 *   the program git itself would run (`gpg.openpgp.program`, `gpg.program`, else gpg).
 * - SSH: the key file must exist; its public half gives the SHA256 fingerprint git's `%GK` prints,
 *   computed here rather than by another process. Which emails GitLab holds for the researcher, and
 *   whether the key's usage includes signing, only GitLab knows: a note says so.
 * - X.509 is refused, as the leader refuses it.
 * Fixes are signature-reasons.ts's, with the key's fingerprint put in for the placeholders.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import type { SignatureFailureCode } from '../../scheduler/verify/signature-codes.js';
import { signatureHelp } from '../../scheduler/verify/signature-reasons.js';
import { error, note, ok, warning, type Finding } from './check-findings.js';

/** `git config -l` as a map: lower-cased keys (subsections as written), the last value of each. */
export type GitConfig = ReadonlyMap<string, string>;

/** The researcher's signing key as the commit check compares signers with it. */
export interface OwnKey {
  format: 'openpgp' | 'ssh';
  /** How to name it in a line: a fingerprint, or a key file. */
  label: string;
  /** OpenPGP: upper-case hex fingerprints of the key and its subkeys; SSH: `SHA256:…`. Empty when unknown. */
  fingerprints: string[];
  /** OpenPGP: lower-cased emails of its user ids that are not revoked; SSH: null (GitLab's to say). */
  emails: string[] | null;
}

/** Runs gpg (or the configured program) with `args`; resolves with its exit code and stdout. */
export type GpgRunner = (program: string, args: readonly string[]) => Promise<{ code: number | null; stdout: string }>;

/** Parses `git config -l -z`: NUL-ended entries of "key\nvalue". */
export function parseGitConfigList(out: string): Map<string, string> {
  const config = new Map<string, string>();
  for (const entry of out.split('\0')) {
    if (entry === '') continue;
    const nl = entry.indexOf('\n');
    config.set(nl === -1 ? entry : entry.slice(0, nl), nl === -1 ? 'true' : entry.slice(nl + 1));
  }
  return config;
}

/** The signing setup's findings, and the key commits will be compared with (null: none usable). */
export async function checkSigningSetup(config: GitConfig, repoRoot: string, gpg: GpgRunner = runGpg): Promise<{ findings: Finding[]; own: OwnKey | null }> {
  const findings: Finding[] = [];
  const format = (config.get('gpg.format') ?? 'openpgp').toLowerCase();
  const email = config.get('user.email') ?? null;
  if (email === null || email.trim() === '') {
    findings.push(error('signing', 'user.email is not set: commits need the email of your key and your GitLab account (git config --global user.email you@example.org)'));
  }
  const gpgsign = (config.get('commit.gpgsign') ?? 'false').toLowerCase();
  if (!['true', 'yes', 'on', '1'].includes(gpgsign)) {
    findings.push(warning('signing', 'commit.gpgsign is not true: a commit made without -S is unsigned and refused (git config --global commit.gpgsign true)'));
  }
  let own: OwnKey | null = null;
  if (format === 'x509') {
    findings.push(error('signing', `gpg.format is x509: secd does not accept X.509 signatures; ${signatureHelp('unsupported_signature')}`));
  } else if (format === 'ssh') {
    own = checkSshKey(config, repoRoot, findings);
  } else if (format === 'openpgp') {
    own = await checkGpgKey(config, email, gpg, findings);
  } else {
    findings.push(error('signing', `gpg.format is ${JSON.stringify(format)}, which git does not know: use openpgp or ssh (git config --global gpg.format ssh)`));
  }
  return { findings, own };
}

/** One key (or subkey) of a colon listing. */
interface ListedKey {
  fingerprint: string;
  keyId: string;
  validity: string;
  algo: number;
  bits: number;
  caps: string;
}

/** One key of `gpg --with-colons` output, with its subkeys and user ids. */
interface Listed extends ListedKey {
  subkeys: ListedKey[];
  uids: Array<{ validity: string; email: string | null }>;
}

/** Parses gpg's colon listing (sec/pub, ssb/sub, fpr, uid records). */
export function parseGpgColons(out: string): Listed[] {
  const keys: Listed[] = [];
  let last: ListedKey | null = null;
  for (const line of out.split('\n')) {
    const f = line.split(':');
    const kind = f[0];
    if (kind === 'sec' || kind === 'pub' || kind === 'ssb' || kind === 'sub') {
      const k: ListedKey = { fingerprint: '', keyId: (f[4] ?? '').toUpperCase(), validity: f[1] ?? '', algo: Number(f[3]), bits: Number(f[2]), caps: f[11] ?? '' };
      if (kind === 'sec' || kind === 'pub') {
        const primary: Listed = { ...k, subkeys: [], uids: [] };
        keys.push(primary);
        last = primary;
      } else if (keys.length > 0) {
        keys[keys.length - 1]!.subkeys.push(k);
        last = k;
      }
    } else if (kind === 'fpr' && last && last.fingerprint === '') {
      last.fingerprint = (f[9] ?? '').toUpperCase();
    } else if (kind === 'uid' && keys.length > 0) {
      const m = /<([^<>\s]+@[^<>\s]+)>/.exec(f[9] ?? '') ?? /^([^<>\s]+@[^<>\s]+)$/.exec(f[9] ?? '');
      keys[keys.length - 1]!.uids.push({ validity: f[1] ?? '', email: m ? m[1]!.toLowerCase() : null });
    }
  }
  return keys;
}

// gpg's algorithm numbers whose strength is their size: RSA (1-3) and DSA (17).
const SIZED_ALGOS = new Set([1, 2, 3, 17]);
const unusable = (validity: string) => ['e', 'r', 'i', 'd', 'n'].includes(validity);

async function checkGpgKey(config: GitConfig, email: string | null, gpg: GpgRunner, findings: Finding[]): Promise<OwnKey | null> {
  const program = config.get('gpg.openpgp.program') ?? config.get('gpg.program') ?? 'gpg';
  const configured = config.get('user.signingkey')?.trim().replace(/!$/, '') || null;
  if (configured === null && (email === null || email.trim() === '')) {
    findings.push(error('signing', `no signing key configured: set user.signingkey (gpg --list-secret-keys shows yours; make one with gpg --quick-gen-key 'Your Name <you@example.org>' ed25519 sign 2y), or sign with SSH (git config --global gpg.format ssh; git config --global user.signingkey ~/.ssh/id_ed25519.pub)`));
    return null;
  }
  const query = configured ?? `<${email!.trim()}>`;
  let listed: { code: number | null; stdout: string };
  try {
    listed = await gpg(program, ['--batch', '--no-tty', '--with-colons', '--fixed-list-mode', '--list-secret-keys', '--', query]);
  } catch (err) {
    findings.push(error('signing', `could not run ${program}, which git signs with: ${err instanceof Error ? err.message : String(err)}; install gnupg, or sign with SSH (git config --global gpg.format ssh)`));
    return null;
  }
  const keys = parseGpgColons(listed.stdout);
  if (keys.length === 0) {
    if (configured === null) {
      findings.push(error('signing', `no signing key configured: user.signingkey is not set and gpg has no secret key for ${email}; make one (gpg --quick-gen-key '${config.get('user.name') ?? 'Your Name'} <${email}>' ed25519 sign 2y), add its public part to GitLab (Preferences > GPG Keys; gpg --armor --export <fingerprint>) and set it (git config --global user.signingkey <fingerprint>)`));
      return null;
    }
    const pub = await gpg(program, ['--batch', '--no-tty', '--with-colons', '--list-keys', '--', configured]).catch(() => ({ code: 2, stdout: '' }));
    const why = parseGpgColons(pub.stdout).length > 0 ? 'gpg holds only its public half here, so git cannot sign with it (import the secret key: gpg --import <file>)' : 'gpg has no such key (gpg --list-secret-keys shows yours)';
    findings.push(error('signing', `user.signingkey is ${configured}, but ${why}`));
    return null;
  }
  const key = keys[0]!;
  const fill = (code: SignatureFailureCode) => signatureHelp(code).replace(/<fingerprint>|<key id>/g, key.fingerprint);
  if (configured === null) {
    findings.push(warning('signing', `user.signingkey is not set: git asks gpg for a key of ${email}, now ${key.fingerprint}; name it (git config --global user.signingkey ${key.fingerprint}) so a new key never signs by surprise`));
  }
  const signers = [key, ...key.subkeys].filter((k) => k.caps.includes('s') && !unusable(k.validity));
  const own: OwnKey = {
    format: 'openpgp',
    label: key.fingerprint,
    fingerprints: [key, ...key.subkeys].map((k) => k.fingerprint).filter((f) => f !== ''),
    emails: key.uids.filter((u) => u.validity !== 'r' && u.email !== null).map((u) => u.email!),
  };
  if (key.validity === 'r' || (signers.length === 0 && [key, ...key.subkeys].some((k) => k.caps.includes('s') && k.validity === 'r'))) {
    findings.push(error('signing', `key ${key.fingerprint} is revoked: ${fill('revoked_key')}`));
    return own;
  }
  if (signers.length === 0) {
    const expired = key.validity === 'e' || [key, ...key.subkeys].some((k) => k.caps.includes('s') && k.validity === 'e');
    findings.push(error('signing', expired ? `key ${key.fingerprint} has expired: ${fill('expired_key')}` : `key ${key.fingerprint} has no key that may sign: ${fill('revoked_key')}`));
    return own;
  }
  if (signers.every((k) => SIZED_ALGOS.has(k.algo) && k.bits < 2048)) {
    findings.push(error('signing', `key ${key.fingerprint} is ${signers[0]!.algo === 17 ? 'DSA' : 'RSA'}-${signers[0]!.bits}, too weak for secd (at least RSA-2048): ${fill('weak_key')}`));
    return own;
  }
  const mail = email?.trim().toLowerCase() ?? '';
  if (mail !== '' && !own.emails!.includes(mail)) {
    const revoked = key.uids.some((u) => u.validity === 'r' && u.email === mail);
    findings.push(
      error(
        'signing',
        revoked
          ? `user.email ${email} is a revoked user id of key ${key.fingerprint}: ${fill('revoked_user_id')}`
          : `user.email ${email} is not a user id of key ${key.fingerprint} (it has ${own.emails!.join(', ') || 'none with an email'}): ${fill('email_mismatch')}`,
      ),
    );
    return own;
  }
  findings.push(ok('signing', `GPG key ${key.fingerprint} signs, with user id ${mail || '(none)'}; GitLab must hold its public key (Preferences > GPG Keys; gpg --armor --export ${key.fingerprint}) and ${mail || 'that email'} as a verified email`));
  return own;
}

function checkSshKey(config: GitConfig, repoRoot: string, findings: Finding[]): OwnKey | null {
  const value = config.get('user.signingkey')?.trim() ?? '';
  if (value === '') {
    findings.push(error('signing', 'no signing key configured: gpg.format is ssh but user.signingkey is not set (ssh-keygen -t ed25519 -f ~/.ssh/id_ed25519; git config --global user.signingkey ~/.ssh/id_ed25519.pub)'));
    return null;
  }
  let publicLine: string | null = null;
  let label = value;
  if (value.startsWith('key::') || /^(ssh-|ecdsa-|sk-)/.test(value)) {
    publicLine = value.replace(/^key::/, '');
    label = 'the key in user.signingkey';
  } else {
    const file = value.startsWith('~/') ? path.join(homedir(), value.slice(2)) : path.resolve(repoRoot, value);
    if (!existsSync(file)) {
      findings.push(error('signing', `user.signingkey is ${value}, which does not exist: git cannot sign (make it: ssh-keygen -t ed25519 -f ${value.replace(/\.pub$/, '')}, or point user.signingkey at your key's .pub file)`));
      return null;
    }
    const pub = file.endsWith('.pub') ? file : `${file}.pub`;
    if (existsSync(pub)) publicLine = readFileSync(pub, 'utf8').trim();
  }
  const parsed = publicLine === null ? null : sshPublicKey(publicLine);
  if (parsed === null) {
    findings.push(note('signing', `SSH key ${label}: no public key beside it to compare commits with (keep ${value}.pub next to it)`));
    return { format: 'ssh', label, fingerprints: [], emails: null };
  }
  if (parsed.type === 'ssh-dss' || (parsed.rsaBits !== null && parsed.rsaBits < 2048)) {
    findings.push(error('signing', `SSH key ${label} is ${parsed.type === 'ssh-dss' ? 'DSA' : `RSA-${parsed.rsaBits}`}, too weak for secd (at least RSA-2048): make an ed25519 key (ssh-keygen -t ed25519 -f ~/.ssh/id_ed25519), add it to GitLab with usage "Authentication & Signing" and set it (git config --global user.signingkey ~/.ssh/id_ed25519.pub)`));
  } else {
    findings.push(ok('signing', `SSH key ${label} (${parsed.type}, ${parsed.fingerprint}) signs; GitLab must hold it with usage "Authentication & Signing" or "Signing" (Preferences > SSH Keys), and user.email must be one of your verified GitLab emails`));
  }
  return { format: 'ssh', label, fingerprints: [parsed.fingerprint], emails: null };
}

/** An OpenSSH public key line's type, SHA256 fingerprint (as ssh-keygen -l and git's %GK print it) and RSA size. */
export function sshPublicKey(line: string): { type: string; fingerprint: string; rsaBits: number | null } | null {
  const [type, b64] = line.trim().split(/\s+/);
  if (type === undefined || b64 === undefined || !/^[A-Za-z0-9+/]+=*$/.test(b64)) return null;
  const blob = Buffer.from(b64, 'base64');
  // The blob starts with its own type name (RFC 4253 §6.6): anything else is not a public key.
  if (blob.length < 4 || blob.subarray(4, 4 + blob.readUInt32BE(0)).toString('latin1') !== type) return null;
  const fingerprint = `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
  let rsaBits: number | null = null;
  if (type === 'ssh-rsa') {
    // string "ssh-rsa", mpint e, mpint n (RFC 4253 §6.6): n's size without leading zero bits.
    let at = 0;
    const next = (): Buffer | null => {
      if (at + 4 > blob.length) return null;
      const len = blob.readUInt32BE(at);
      const part = blob.subarray(at + 4, at + 4 + len);
      at += 4 + len;
      return part;
    };
    next();
    next();
    const n = next();
    if (n !== null) {
      const i = n.findIndex((b) => b !== 0);
      rsaBits = i === -1 ? 0 : (n.length - i - 1) * 8 + (32 - Math.clz32(n[i]!));
    }
  }
  return { type, fingerprint, rsaBits };
}

/** Runs `program args` with the caller's environment (GNUPGHOME and all): exit code and stdout. */
export const runGpg: GpgRunner = (program, args) =>
  new Promise((resolve, reject) => {
    execFile(program, [...args], { env: { ...process.env, LC_ALL: 'C' }, encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 }, (err, stdout) => {
      if (err && typeof err.code !== 'number') return reject(err);
      resolve({ code: err ? (err.code as number) : 0, stdout });
    });
  });
