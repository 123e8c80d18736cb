import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSshKeyring, type SshKeyring } from '../../test/support/ssh-keys.js';
import { checkDockerfile, dockerfileBases } from './check-project.js';
import { parseGpgColons, sshPublicKey } from './check-signing.js';

describe("secd check's reading of a Dockerfile", () => {
  it('finds each FROM across continuations and flags, skipping comments and earlier stages', () => {
    const text = [
      '# syntax and comments first',
      'ARG BASE=secd/base',
      'FROM --platform=linux/amd64 \\',
      '     secd/base:torch AS build',
      'RUN echo hi',
      'from build',
      'FROM ${BASE}',
      'FROM docker.io/secd/base@sha256:' + 'a'.repeat(64),
    ].join('\n');
    expect(dockerfileBases(text)).toEqual([
      { line: 3, image: 'secd/base:torch' },
      { line: 7, image: '${BASE}' },
      { line: 8, image: `docker.io/secd/base@sha256:${'a'.repeat(64)}` },
    ]);
  });

  it('honours the escape parser directive', () => {
    expect(dockerfileBases('# escape=`\nFROM `\n  python:3.12\n')).toEqual([{ line: 2, image: 'python:3.12' }]);
  });

  it('says which FROM lines are secd images, which are not, and which it cannot tell', () => {
    const found = checkDockerfile({ text: 'FROM secd/base:torch-cuda\nFROM ubuntu:24.04\nFROM $IMG\n', committed: true, changed: false });
    expect(found.map((f) => [f.level, f.text.split(':')[0]])).toEqual([
      ['ok', 'line 1'],
      ['warning', 'line 2'],
      ['warning', 'line 3'],
    ]);
    expect(found[1]!.text).toContain('is not a secd image: the cluster has no registry');
  });

  it('refuses a Dockerfile with no FROM and one that is not committed', () => {
    expect(checkDockerfile({ text: 'RUN true\n', committed: true, changed: false })).toEqual([expect.objectContaining({ level: 'error', text: expect.stringContaining('has no FROM line') })]);
    expect(checkDockerfile({ text: 'FROM secd/base\n', committed: false, changed: false }).filter((f) => f.level === 'error')).toEqual([
      expect.objectContaining({ text: 'is not committed: a push without it is refused (git add Dockerfile; git commit)' }),
    ]);
  });
});

describe("secd check's reading of keys", () => {
  let ssh: SshKeyring;
  beforeAll(async () => {
    ssh = await createSshKeyring();
  });
  afterAll(async () => {
    await ssh.close();
  });

  it('gives an SSH key the fingerprint ssh-keygen prints and an RSA key its size', async () => {
    const rsa = await ssh.generateKey('rsa', { bits: 1024 });
    expect(sshPublicKey(rsa.publicKey)).toEqual({ type: 'ssh-rsa', fingerprint: rsa.fingerprint, rsaBits: 1024 });
    const ecdsa = await ssh.generateKey('ecdsa');
    expect(sshPublicKey(ecdsa.publicKey)).toMatchObject({ fingerprint: ecdsa.fingerprint, rsaBits: null });
    expect(sshPublicKey('not a key')).toBeNull();
  });

  it("reads gpg's colon listing: keys, subkeys, fingerprints and user ids with their validity", () => {
    const listing = [
      'sec:u:255:22:AAAA1111AAAA1111:1700000000:::u:::cSC:::+::ed25519:::0:',
      'fpr:::::::::0123456789ABCDEF0123AAAA1111AAAA1111:',
      'uid:r::::1700000000::HASH::Ada <old@example.org>::::::::::0:',
      'uid:u::::1700000000::HASH::Ada Researcher <Ada@Example.org>::::::::::0:',
      'ssb:e:3072:1:BBBB2222BBBB2222:1700000000:1710000000:::::s:::+:::23:',
      'fpr:::::::::FEDCBA9876543210FEDCBBBB2222BBBB2222:',
    ].join('\n');
    expect(parseGpgColons(listing)).toEqual([
      {
        fingerprint: '0123456789ABCDEF0123AAAA1111AAAA1111',
        keyId: 'AAAA1111AAAA1111',
        validity: 'u',
        algo: 22,
        bits: 255,
        caps: 'cSC',
        subkeys: [{ fingerprint: 'FEDCBA9876543210FEDCBBBB2222BBBB2222', keyId: 'BBBB2222BBBB2222', validity: 'e', algo: 1, bits: 3072, caps: 's' }],
        uids: [
          { validity: 'r', email: 'old@example.org' },
          { validity: 'u', email: 'ada@example.org' },
        ],
      },
    ]);
  });
});
