/**
 * docs/researcher.md promises "every reason secd can give, and what to do": these tests hold it to
 * the code, so that a new refusal cannot ship without its line in the guide and the guide never lists
 * a code the code does not have. The codes come from the code itself — the exported list of signature
 * failure codes, and the string unions of the push, plan and intake codes read from their source
 * (types have no runtime value) — and the policy's refusals from the real functions given bad input.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RunDatasets } from '../scheduler/policy/dataset-access.js';
import { resolveRunConfig } from '../scheduler/policy/project-policy.js';
import { SIGNATURE_FAILURE_CODES } from '../scheduler/verify/signature-codes.js';
import { signatureHelp } from '../scheduler/verify/signature-reasons.js';

const ROOT = resolve(import.meta.dirname, '..');
const read = (file: string) => readFileSync(join(ROOT, file), 'utf8');
const guide = read('docs/researcher.md');

/** The text of the `### title` subsection (to the next heading). */
function subsection(title: string): string {
  const start = guide.indexOf(`\n### ${title}\n`);
  if (start === -1) throw new Error(`docs/researcher.md has no "### ${title}" section`);
  const rest = guide.slice(start + title.length + 6);
  const end = rest.search(/\n#{2,3} /);
  return end === -1 ? rest : rest.slice(0, end);
}

/** The body rows of the section's table, as cells. */
function rows(section: string): string[][] {
  return section
    .split('\n')
    .filter((l) => l.startsWith('|') && !/^\|[-| ]+\|$/.test(l))
    .slice(1)
    .map((l) => l.slice(1, -1).split(' | ').map((c) => c.trim()));
}

/** Rows whose first cell is one `code`, by code. */
function codeRows(section: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const r of rows(section)) {
    const m = /^`([a-z_]+)`$/.exec(r[0]!);
    if (!m) throw new Error(`a row of the table does not start with one \`code\`: ${r.join(' | ')}`);
    if (out.has(m[1]!)) throw new Error(`the table lists ${m[1]} twice`);
    out.set(m[1]!, r);
  }
  return out;
}

/** The string literals of `export type <name> = ... ;` in `file`, and the type names it refers to. */
function unionOf(file: string, name: string): { literals: string[]; refs: string[] } {
  const m = new RegExp(`export type ${name} =([^;]*);`).exec(read(file));
  if (!m) throw new Error(`${file} has no "export type ${name}"`);
  const body = m[1]!.replace(/\/\*[\s\S]*?\*\//g, '');
  return {
    literals: [...body.matchAll(/'([a-z_]+)'/g)].map((x) => x[1]!),
    refs: [...body.matchAll(/\b([A-Z][A-Za-z]+)\b/g)].map((x) => x[1]!),
  };
}

const signatures = codeRows(subsection('Signatures and signers'));
const policy = rows(subsection('`secd.yml`, the Dockerfile, datasets and nodes'));
const policyKeys = policy.map((r) => r[0]!);
const ignored = codeRows(subsection('Pushes that start nothing'));

describe("the researcher guide's refusals match the code", () => {
  it('lists every signature failure code and push failure code, and no other', () => {
    const push = unionOf('scheduler/verify/verify-push.ts', 'PushFailureCode');
    expect(push.refs).toContain('SignatureFailureCode');
    expect(push.literals.length).toBeGreaterThan(0);
    expect([...signatures.keys()].sort()).toEqual([...SIGNATURE_FAILURE_CODES, ...push.literals].sort());
  });

  it.each([...SIGNATURE_FAILURE_CODES])('the row of %s names the first command of the fix secd gives', (code) => {
    const first = /\b(git [a-z-]+|gpg --[a-z-]+|ssh-keygen -[a-zA-Z])/.exec(signatureHelp(code));
    expect(first, `signatureHelp(${code}) names no command`).not.toBeNull();
    expect(signatures.get(code)!.join(' | ')).toContain(first![1]);
  });

  it('has a row for every secd.yml key the policy knows, and for the file itself, and none for other keys', () => {
    const known = /const KNOWN_KEYS = \[([^\]]*)\]/.exec(read('scheduler/policy/project-policy.ts'));
    expect(known, 'project-policy.ts has no KNOWN_KEYS list').not.toBeNull();
    const keys = [...known![1]!.matchAll(/'([a-z_]+)'/g)].map((m) => m[1]!);
    const bad: Record<string, string> = {
      runfor: 'runfor: -1',
      gpu: 'gpu: 1.5',
      cache_dir: 'cache_dir: ../up',
      mount_path: 'mount_path: /etc',
      datasets: 'datasets: [a, a]',
    };
    for (const key of keys) {
      expect(bad[key], `add a bad secd.yml for the new key ${key} here, and a row for it in docs/researcher.md`).toBeDefined();
      // What the guide says the reason begins with is what the policy says.
      const result = resolveRunConfig(bad[key]!, { maxRunforHours: 24, maxGpusPerRun: 8, largestNodeGpus: 8 });
      expect(result).toMatchObject({ ok: false, key });
      expect((result as { reason: string }).reason.startsWith(`secd.yml: ${key} `)).toBe(true);
      expect(policyKeys).toContain(`\`secd.yml: ${key}\``);
    }
    const file = resolveRunConfig('runfor: [', { maxRunforHours: 24, maxGpusPerRun: 8, largestNodeGpus: 8 });
    expect(file).toMatchObject({ ok: false, key: 'secd.yml' });
    expect(policyKeys).toContain('`secd.yml:`');
    const listed = policyKeys.map((k) => /^`secd\.yml: ([a-z_]+)`$/.exec(k)?.[1]).filter((k): k is string => k !== undefined);
    expect(listed.filter((k) => !keys.includes(k))).toEqual([]);
  });

  it("has a row for each refusal the leader's checks and planner write, by the words they begin with", () => {
    const beginnings: string[] = [];
    for (const file of ['scheduler/lifecycle/run-checks.ts', 'scheduler/lifecycle/plan-apply.ts']) {
      const text = read(file);
      for (const m of text.matchAll(/(?:rejectRun|failRun)\([^,]+,\s*[\w.]+,\s*`([^`$]*)|return `([^`$]*)/g)) {
        const literal = (m[1] ?? m[2])!;
        // The fixed words: up to the first colon, or to where the first value goes.
        const colon = literal.indexOf(':');
        beginnings.push((colon === -1 ? literal : literal.slice(0, colon + 1)).trim());
      }
    }
    expect(beginnings).toEqual(expect.arrayContaining(['no Dockerfile at the root of commit', 'secd could not check this push:', 'no node can run it:', 'a newer push exists:']));
    for (const b of beginnings) expect(policyKeys, `the guide has no row for "${b}"`).toContain(`\`${b}\``);
  });

  it("says what the dataset step's refusals say", async () => {
    const clinic = { name: 'clinic', kind: 'mysql', mysqlDatabase: 'clinic_visits' };
    const datasets = (grants: unknown[], server: boolean, unbound: unknown[] = []) =>
      new RunDatasets({
        store: {
          datasetsOf: () => grants,
          datasetsShownUnder: () => grants,
          grants: () => grants,
          unboundGrants: () => unbound,
          get: (n: string) => (n === 'clinic' ? clinic : undefined),
        },
        runs: {},
        server: server ? {} : null,
        endpoint: server ? { host: '127.0.0.1', port: 3306 } : null,
        userPrefix: 'secd_',
        maxConnections: 8,
        log: {},
      } as unknown as ConstructorParameters<typeof RunDatasets>[0]);
    const ada = { user: 'ada', userId: 7 };
    const row = policy.find((r) => r[0] === '`secd.yml: datasets`')!.join(' | ');
    const reasons = {
      'which ada is not granted': await datasets([], true).forRun(ada, ['clinic']),
      'but no dataset has that name': await datasets([], true).forRun(ada, ['nope']),
      'granted to the name ada before secd bound grants to GitLab accounts': await datasets([], true, [{ dataset: 'clinic', user: 'ada' }]).forRun(ada, ['clinic']),
    };
    for (const [words, result] of Object.entries(reasons)) {
      expect(result).toMatchObject({ ok: false, reason: expect.stringContaining(words) });
      expect((result as { reason: string }).reason.startsWith('secd.yml: datasets ')).toBe(true);
      expect(row, `the datasets row does not quote "${words}"`).toContain(words);
    }
    const noServer = await datasets([clinic], false).forRun(ada, null);
    const shown = (noServer as { reason: string }).reason.replace('clinic', '…');
    const cell = policyKeys.find((k) => k.startsWith('`dataset … is a MySQL database'));
    expect(cell, 'no row for a MySQL dataset on a leader without a dataset server').toBeDefined();
    expect(shown.startsWith(cell!.slice(1, -1))).toBe(true);
    const noId = await datasets([clinic], true).forRun({ user: 'ada', userId: null }, ['clinic']);
    const idCell = policyKeys.find((k) => k.startsWith('`this run has no GitLab user id'));
    expect(idCell, 'no row for a run without a GitLab user id').toBeDefined();
    expect((noId as { reason: string }).reason.startsWith(idCell!.slice(1, -1))).toBe(true);
  });

  it("names exactly the planner's impossible-run codes in the row for runs no node can take", () => {
    const { literals } = unionOf('scheduler/plan/plan-types.ts', 'ImpossibleCode');
    const row = policy.find((r) => r[0] === '`no node can run it:`')!;
    const named = [...row[1]!.matchAll(/`([a-z_]+)`/g)].map((m) => m[1]!);
    expect(named.sort()).toEqual([...literals].sort());
  });

  it("lists every reason intake ignores a push for, and no other", () => {
    const { literals } = unionOf('scheduler/intake/intake.ts', 'IgnoredCode');
    expect(literals.length).toBeGreaterThan(0);
    expect([...ignored.keys()].sort()).toEqual([...literals].sort());
  });

  it('is linked first from the README', () => {
    const firstLink = /\]\(([^)]+)\)/.exec(read('README.md'));
    expect(firstLink?.[1]).toBe('docs/researcher.md');
  });
});
