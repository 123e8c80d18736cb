/**
 * Trailers read as git reads them: each message is also given to `git interpret-trailers --parse`,
 * and secd must find the same trailers git does, so a vouch counts exactly when git shows it.
 */
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { hermeticGitEnv } from '../common/git-env.js';
import { parseTrailers, vouchedCommits } from './vouch-trailers.js';

const A = 'a'.repeat(40);
const B = 'b'.repeat(40);
const LONG = 'c'.repeat(64);

/** The trailers git finds in `message`, as "Token: value" lines. */
function gitTrailers(message: string): string[] {
  const out = execFileSync('git', ['interpret-trailers', '--parse', '--no-divider'], { input: message, env: hermeticGitEnv({ home: '/nonexistent' }) });
  return out.toString('utf8').split('\n').filter(Boolean);
}

const MESSAGES: Array<[string, string]> = [
  ['the vouch commit the refusal suggests', `Vouch for unsigned commits\n\nSecd-Vouches-For: ${A}\n`],
  ['two trailers, one per commit', `Vouch\n\nSecd-Vouches-For: ${A}\nSecd-Vouches-For: ${B}\n`],
  ['a subject alone is never a trailer block', `Secd-Vouches-For: ${A}\n`],
  ['a trailer in the body, then a paragraph of prose', `Vouch\n\nSecd-Vouches-For: ${A}\n\nand some words after it\n`],
  ['a last paragraph that mixes prose and a trailer', `Vouch\n\nI vouch for this one\nSecd-Vouches-For: ${A}\n`],
  ['a mixed paragraph made a block by a Signed-off-by', `Vouch\n\nsome prose here\nSecd-Vouches-For: ${A}\nSigned-off-by: Ada <ada@example.org>\n`],
  ['a token in another case and spaces around the colon', `Vouch\n\nsecd-vouches-for :  ${A}\n`],
  ['a continuation line', `Vouch\n\nReviewed-by: Ada\n  Researcher\nSecd-Vouches-For: ${A}\n`],
  ['trailing blank lines', `Vouch\n\nSecd-Vouches-For: ${A}\n\n\n`],
];

describe('trailers as git reads them', () => {
  it.each(MESSAGES)('%s', (_name, message) => {
    const ours = parseTrailers(message).map((t) => `${t.token}: ${t.value}`);
    const git = gitTrailers(message);
    // git prints the token as written (without the spaces before the colon) and the value trimmed.
    expect(ours.map((l) => l.toLowerCase())).toEqual(git.map((l) => l.toLowerCase()));
  });
});

describe('what a message vouches for', () => {
  it('full commit ids only (SHA-1 or SHA-256), each once, lower-cased, in order', () => {
    expect(vouchedCommits(`Vouch\n\nSecd-Vouches-For: ${B}\nSecd-Vouches-For: ${A.toUpperCase()}\nSecd-Vouches-For: ${B}\n`)).toEqual([B, A]);
    expect(vouchedCommits(`Vouch\n\nSecd-Vouches-For: ${LONG}\n`)).toEqual([LONG]);
  });

  it('a short id, two ids on one line, or another trailer vouch for nothing', () => {
    expect(vouchedCommits(`Vouch\n\nSecd-Vouches-For: ${A.slice(0, 12)}\n`)).toEqual([]);
    expect(vouchedCommits(`Vouch\n\nSecd-Vouches-For: ${A} ${B}\n`)).toEqual([]);
    expect(vouchedCommits(`Vouch\n\nSecd-Vouches: ${A}\nVouches-For: ${B}\n`)).toEqual([]);
    expect(vouchedCommits(`Vouch\n\nSecd-Vouches-For: ${A}\n\nJust a note.\n`)).toEqual([]);
  });
});
