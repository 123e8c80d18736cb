import { describe, expect, it } from 'vitest';
import { REDACTED, redactCredentials, urlSecrets } from './redact.js';

describe('redactCredentials', () => {
  it('replaces the user-info of every URL quoted in a reason by ***', () => {
    expect(redactCredentials("fatal: unable to access 'https://oauth2:glpat-123@gitlab.example/lab/x.git/': 403")).toBe(
      "fatal: unable to access 'https://***@gitlab.example/lab/x.git/': 403",
    );
    expect(redactCredentials('from http://TOKEN@a/x and ssh://git:pw@b/y')).toBe('from http://***@a/x and ssh://***@b/y');
  });

  it('leaves text without credentials as it is', () => {
    const text = 'git@gitlab.example:lab/x.git and https://gitlab.example/lab/x.git (ada@example.org)';
    expect(redactCredentials(text)).toBe(text);
  });

  it('masks each given secret wherever it appears, but not strings too short to be one', () => {
    expect(redactCredentials("syntax error near 'S3cret-Passw0rd'", ['S3cret-Passw0rd'])).toBe("syntax error near '***'");
    expect(redactCredentials('exit 1 of 123', ['1', ''])).toBe('exit 1 of 123');
  });
});

describe('urlSecrets', () => {
  it("gives a URL's password raw and decoded, and the Basic-auth value git sends", () => {
    const secrets = urlSecrets('https://oauth2:p%40ss-word@gitlab.example/x.git');
    expect(secrets).toEqual(['p%40ss-word', 'p@ss-word', Buffer.from('oauth2:p@ss-word').toString('base64')]);
    const quoted = `fatal: 'https://gitlab.example/x.git' said: Authorization: Basic ${secrets[2]} (password p@ss-word)`;
    expect(redactCredentials(quoted, secrets)).toBe(`fatal: 'https://gitlab.example/x.git' said: Authorization: Basic ${REDACTED} (password ${REDACTED})`);
  });

  it('counts a token given as the user name alone', () => {
    expect(urlSecrets('https://glpat-token@gitlab.example/x.git')).toContain('glpat-token');
  });

  it('has none for a URL without credentials or a local path', () => {
    expect(urlSecrets('https://gitlab.example/x.git')).toEqual([]);
    expect(urlSecrets('/srv/git/x.git')).toEqual([]);
  });
});
