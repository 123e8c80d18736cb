/**
 * `secd check --install-hook`: a `pre-push` hook that runs `secd check` before every push, so a push
 * secd would refuse never leaves the machine (`git push --no-verify` skips it once). It goes where git
 * looks for hooks (`git rev-parse --git-path hooks`, which honours core.hooksPath). A hook secd did
 * not write is never overwritten; one it wrote (it carries HOOK_MARK) is replaced, so installing again
 * after moving secd updates the paths. The hook names this node and this secd by absolute path: a
 * hook runs with whatever PATH the researcher's git has, which need not hold either.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { error, ok, type Finding } from './check-findings.js';

/** The line that marks a hook as secd's own. */
export const HOOK_MARK = '# written by secd check --install-hook';

/** The hook's text for this node and CLI script. */
export function hookScript(node: string, cli: string): string {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  return [
    '#!/bin/sh',
    HOOK_MARK,
    '# Runs secd check before each push: exit 1 stops a push secd would refuse. Skip it once with',
    '# git push --no-verify; remove this file to stop it.',
    `exec ${q(node)} ${q(cli)} check .`,
    '',
  ].join('\n');
}

/** Writes the hook into `hooksDir` unless a hook secd did not write is there; says what happened. */
export function installHook(hooksDir: string, node: string, cli: string): Finding {
  const file = path.join(hooksDir, 'pre-push');
  if (existsSync(file) && !readFileSync(file, 'utf8').includes(HOOK_MARK)) {
    return error('hook', `${file} exists and was not written by secd: left as it is; add the line "secd check . || exit 1" to it yourself`);
  }
  mkdirSync(hooksDir, { recursive: true });
  writeFileSync(file, hookScript(node, cli));
  chmodSync(file, 0o755);
  return ok('hook', `${file} runs secd check before every push (git push --no-verify skips it)`);
}
