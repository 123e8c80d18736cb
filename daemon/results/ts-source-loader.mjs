/**
 * Module hooks that let a worker thread run this repository's TypeScript source, as vitest runs the
 * tests: Node 20 runs no TypeScript, and a worker started from a test is plain Node, not vitest.
 * threaded-scanner.ts registers them only when it runs from a `.ts` file; the built node (dist/) starts
 * its compiled worker and never loads this file.
 *
 * `./x.js` imported from a `.ts` file resolves to `./x.ts` when only that exists (the imports are
 * written for the compiled output), and a `.ts` file is compiled by the typescript package (a
 * development dependency, present wherever the source runs) one file at a time, types stripped.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

let ts;

export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (err) {
    const local = /^(\.|\/|file:)/.test(specifier) && specifier.endsWith('.js');
    if (!local || !context.parentURL?.endsWith('.ts')) throw err;
    return next(`${specifier.slice(0, -3)}.ts`, context);
  }
}

export async function load(url, context, next) {
  if (!url.startsWith('file:') || !url.endsWith('.ts')) return next(url, context);
  ts ??= createRequire(import.meta.url)('typescript');
  const fileName = fileURLToPath(url);
  const out = ts.transpileModule(await readFile(fileName, 'utf8'), {
    fileName,
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, sourceMap: false },
  });
  return { format: 'module', source: out.outputText, shortCircuit: true };
}
