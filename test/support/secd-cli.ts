/**
 * The built `secd` program as an operator or a researcher runs it: `node dist/daemon/cli.js <args>`,
 * its output collected, its exit code kept. Tests that drive the CLI need `npm run build` first (npm
 * test does it), and say so plainly when dist/ is missing instead of failing on a spawn error.
 * Compiled into dist, so it imports nothing from vitest.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

// From the sources the program is in dist/; compiled into dist, this file sits beside it.
const ROOT = resolve(import.meta.dirname, '../..');

/** The built CLI. */
export const CLI = existsSync(join(ROOT, 'daemon', 'cli.js')) ? join(ROOT, 'daemon', 'cli.js') : join(ROOT, 'dist', 'daemon', 'cli.js');

/** How one run of the CLI ended: its exit code (null when a signal ended it) and its output. */
export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Where and with what the CLI runs: `env` is added to this process's environment and `SECD_LOG_LEVEL=warn`. */
export interface CliOptions {
  cwd?: string;
  env?: Record<string, string>;
}

/** Run `secd <args>` to its end. */
export function runSecd(args: string[], options: CliOptions = {}): Promise<CliResult> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "npm run build" (npm test does it first)`);
  return new Promise((done) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      ...(options.cwd ? { cwd: options.cwd } : {}),
      env: { ...process.env, SECD_LOG_LEVEL: 'warn', ...options.env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('close', (code) => done({ code, stdout, stderr }));
  });
}
