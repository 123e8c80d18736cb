/**
 * The folders are the architecture (DESIGN §3): these tests read every source file's imports and hold
 * the rules that keep it so — imports go downwards only, node code never reaches into the leader's
 * stages, nothing imports the tests, no import circles, and each library that talks to the outside
 * world is imported by exactly one file.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, posix, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '..');
const SOURCE_ROOTS = ['daemon', 'scheduler', 'storage', 'web'];

/** Every non-test TypeScript source file, as a repository-relative posix path. */
function sourceFiles(): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, entry.name);
      if (entry.isDirectory()) walk(p);
      else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts')) out.push(relative(ROOT, p).split('\\').join('/'));
    }
  };
  for (const root of SOURCE_ROOTS) walk(join(ROOT, root));
  return out.sort();
}

/** The specifiers a file imports (static, dynamic, re-exports and `createRequire(...).resolve`), type-only imports included. */
function importsOf(file: string): string[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  const specs: string[] = [];
  for (const m of text.matchAll(/(?:^|[\s;])(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|^import\s+['"]([^'"]+)['"]|[Rr]equire\([^)]*\)\.resolve\(\s*['"]([^'"]+)['"]/gm)) {
    specs.push((m[1] ?? m[2] ?? m[3] ?? m[4])!);
  }
  return specs;
}

/** A relative specifier resolved to the repository-relative .ts file it names. */
function resolveLocal(from: string, spec: string): string {
  return posix.normalize(posix.join(dirname(from), spec)).replace(/\.js$/, '.ts');
}

const files = sourceFiles();
const graph = new Map(files.map((f) => [f, importsOf(f)]));
const localEdges = new Map(
  files.map((f) => [f, graph.get(f)!.filter((s) => s.startsWith('.')).map((s) => resolveLocal(f, s))]),
);

const NODE_CODE = ['daemon/node/', 'daemon/executor/', 'daemon/engine/', 'daemon/results/', 'daemon/telemetry/'];
// From below, node code takes only the contract, the shared kernel and storage; beside it, its own
// folders plus the config it is given and the images it builds (never commands or wiring).
const NODE_MAY_IMPORT = ['scheduler/contract/', 'scheduler/common/', 'storage/', 'daemon/config/', 'daemon/ops/', ...NODE_CODE];

describe('the folder layout', () => {
  it('has the role folders of DESIGN §3', () => {
    const dirs = (d: string): string[] =>
      readdirSync(join(ROOT, d), { withFileTypes: true })
        .filter((e) => e.isDirectory())
        .map((e) => e.name)
        .sort();
    expect(dirs('daemon')).toEqual(['commands', 'config', 'engine', 'executor', 'node', 'ops', 'results', 'telemetry', 'wiring']);
    for (const stage of ['contract', 'common', 'intake', 'verify', 'policy', 'plan', 'lifecycle', 'cluster', 'gitlab', 'release']) {
      expect(dirs('scheduler')).toContain(stage);
    }
    // Nothing but the CLI's entry point lies loose in daemon/.
    const loose = readdirSync(join(ROOT, 'daemon')).filter((n) => n.endsWith('.ts'));
    expect(loose).toEqual(['cli.ts']);
  });

  it('every relative import names a file that exists', () => {
    const missing = [...localEdges].flatMap(([f, targets]) => targets.filter((t) => !graph.has(t) && !t.endsWith('.json')).map((t) => `${f} -> ${t}`));
    expect(missing).toEqual([]);
  });

  it('node code imports only scheduler/contract, scheduler/common and storage from below', () => {
    const bad = [...localEdges]
      .filter(([f]) => NODE_CODE.some((p) => f.startsWith(p)))
      .flatMap(([f, targets]) => targets.filter((t) => !NODE_MAY_IMPORT.some((p) => t.startsWith(p))).map((t) => `${f} -> ${t}`));
    expect(bad).toEqual([]);
  });

  it('imports go downwards: scheduler and storage never import daemon or web, storage never imports scheduler, nothing imports test/', () => {
    const bad = [...localEdges].flatMap(([f, targets]) =>
      targets
        .filter(
          (t) =>
            t.startsWith('test/') ||
            ((f.startsWith('scheduler/') || f.startsWith('storage/')) && (t.startsWith('daemon/') || t.startsWith('web/'))) ||
            (f.startsWith('storage/') && t.startsWith('scheduler/')) ||
            (f.startsWith('scheduler/contract/') && !t.startsWith('scheduler/contract/')),
        )
        .map((t) => `${f} -> ${t}`),
    );
    expect(bad).toEqual([]);
  });

  it('has no import circles', () => {
    const cycles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const stack: string[] = [];
    const visit = (f: string): void => {
      state.set(f, 'open');
      stack.push(f);
      for (const t of localEdges.get(f) ?? []) {
        if (!graph.has(t)) continue;
        if (state.get(t) === 'open') cycles.push([...stack.slice(stack.indexOf(t)), t].join(' -> '));
        else if (!state.has(t)) visit(t);
      }
      stack.pop();
      state.set(f, 'done');
    };
    for (const f of files) if (!state.has(f)) visit(f);
    expect(cycles).toEqual([]);
  });

  it('each library that talks to the outside world is imported by exactly one file', () => {
    const libraries = ['dockerode', 'mysql2', 'openpgp', 'ws', 'better-sqlite3', 'systeminformation', 'node-nvidia-smi', 'pino', 'prom-client', 'fastify'];
    const importers = (lib: string): string[] =>
      [...graph]
        .filter(([, specs]) => specs.some((s) => s === lib || s.startsWith(`${lib}/`)) )
        .map(([f]) => f);
    // A file that only names a library's types (`import type`) does not talk to the outside world.
    const typeOnly = (f: string, lib: string): boolean => {
      const text = readFileSync(join(ROOT, f), 'utf8');
      const from = `['"]${lib}(/[^'"]*)?['"]`;
      return new RegExp(`^import\\s+type\\b[^;]*from\\s+${from}`, 'm').test(text) &&
        !new RegExp(`^import\\s+(?!type\\b)[^;]*from\\s+${from}|\\.resolve\\(\\s*${from}`, 'm').test(text);
    };
    const found = libraries.map((lib) => ({ lib, files: importers(lib).filter((f) => !typeOnly(f, lib)) }));
    expect(found.filter((x) => x.files.length !== 1)).toEqual([]);
  });

  it('git runs from at most one file per role', () => {
    const runsGit = (f: string): boolean => {
      const text = readFileSync(join(ROOT, f), 'utf8');
      return /from\s+['"]simple-git['"]/.test(text) || /\w\(\s*['"]git['"]\s*,/.test(text);
    };
    const gitFiles = files.filter(runsGit);
    // The secd program on a machine (node, `secd run`, commands) is one role; the leader's stages the other.
    const node = gitFiles.filter((f) => f.startsWith('daemon/'));
    const leader = gitFiles.filter((f) => f.startsWith('scheduler/'));
    expect(node.length, `node files running git: ${node.join(', ')}`).toBeLessThanOrEqual(1);
    expect(leader.length, `leader files running git: ${leader.join(', ')}`).toBeLessThanOrEqual(1);
  });
});
