/**
 * Reading the systemd units `secd install` stages, the way systemd reads them, for tests that check
 * what they say and tests that start a daemon as they would: one key's values, ExecStart='s words,
 * and where in a staging tree a unit lies (mount units are inert examples, not in the unit folder).
 * Compiled into dist, so it imports nothing from vitest.
 */
import { join } from 'node:path';
import { INSTALL_PATHS } from '../../daemon/ops/install-templates.js';

/** Every value of `key=` in a unit file, in order (continuation lines are not used in secd's units). */
export function unitValues(text: string, key: string): string[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${key}=`))
    .map((l) => l.slice(key.length + 1));
}

/** ExecStart= split as systemd splits it (secd's units use only plain and double-quoted words). */
export function execWords(text: string): string[] {
  const [line] = unitValues(text, 'ExecStart');
  return [...line!.matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)].map((m) => (m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]!));
}

/** Where `secd install --root <root>` puts the unit `name`. */
export function unitPath(root: string, name: string): string {
  return join(root, name.endsWith('.mount') ? INSTALL_PATHS.examplesDir : INSTALL_PATHS.unitDir, name);
}
