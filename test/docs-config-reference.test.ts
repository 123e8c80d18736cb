/**
 * docs/sysadmin.md's config reference table against the config schemas: every key leader.yml,
 * node.yml and up.yml accept is in the table with the right files, and every key the table lists is
 * accepted by the real parser, so the table cannot drift from the code.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { LoadContext } from '../daemon/config/config-file.js';
import { gitlabSchema, leaderShape, parseLeaderConfig } from '../daemon/config/leader-config.js';
import { nodeShape, parseNodeConfig } from '../daemon/config/node-config.js';
import { stateShape } from '../daemon/config/state-config.js';
import { parseUpConfig, upSchema } from '../daemon/config/up-config.js';

type File = 'leader.yml' | 'node.yml' | 'up.yml';
const ctx: LoadContext = { baseDir: '/tmp', env: {}, hostname: 'gpu-01' };

/** Dotted keys of a zod schema: objects are walked, wrappers unwrapped, a record's keys are `<name>`. */
function keysOf(schema: z.ZodType, prefix = ''): string[] {
  const def = (schema as unknown as { _zod: { def: Record<string, unknown> & { type: string } } })._zod.def;
  switch (def.type) {
    case 'object': {
      const shape = def.shape as Record<string, z.ZodType>;
      return Object.entries(shape).flatMap(([k, v]) => {
        const inner = keysOf(v, `${prefix}${k}.`);
        return [`${prefix}${k}`, ...inner];
      });
    }
    case 'pipe':
      return keysOf(def.in as z.ZodType, prefix);
    case 'optional':
    case 'nullable':
    case 'default':
    case 'prefault':
    case 'catch':
    case 'readonly':
    case 'nonoptional':
      return keysOf(def.innerType as z.ZodType, prefix);
    case 'union':
      return [...new Set((def.options as z.ZodType[]).flatMap((o) => keysOf(o, prefix)))];
    case 'record':
      return prefix ? [`${prefix}<name>`, ...keysOf(def.valueType as z.ZodType, `${prefix}<name>.`)] : [];
    default:
      return [];
  }
}

// node.yml's own keys (the rest is nodeShape, shared with up.yml's node: section). Each is proved
// below to be accepted by node.yml and refused in up.yml's node: section.
const NODE_YML_ONLY = ['leader', 'token', 'token_file', 'ca_file'];

function schemaKeys(): Record<File, Set<string>> {
  const leader = keysOf(z.strictObject({ ...leaderShape(ctx, { dataDir: '/var/lib/secd' }), ...stateShape(ctx), gitlab: gitlabSchema(ctx) }));
  const node = [...keysOf(z.strictObject(nodeShape(ctx))), 'work_dir', 'cache_root', ...NODE_YML_ONLY];
  const up = keysOf(upSchema(ctx));
  return { 'leader.yml': new Set(leader), 'node.yml': new Set(node), 'up.yml': new Set(up) };
}

/** The reference table's rows: `| \`key\` | files | default | meaning |`, between its markers. */
function docTable(): Record<File, Set<string>> {
  const doc = readFileSync(join(import.meta.dirname, '../docs/sysadmin.md'), 'utf8');
  const start = doc.indexOf('<!-- config-reference:start -->');
  const end = doc.indexOf('<!-- config-reference:end -->');
  expect(start, 'docs/sysadmin.md has a config-reference:start marker').toBeGreaterThan(-1);
  expect(end, 'docs/sysadmin.md has a config-reference:end marker').toBeGreaterThan(start);
  const out: Record<File, Set<string>> = { 'leader.yml': new Set(), 'node.yml': new Set(), 'up.yml': new Set() };
  for (const line of doc.slice(start, end).split('\n')) {
    const m = /^\| `([^`]+)` \| ([^|]+) \|/.exec(line);
    if (!m) continue;
    // "up.yml node:" means the key sits under up.yml's node: section.
    for (const f of m[2]!.split(',').map((s) => s.trim())) {
      if (f === 'up.yml node:') out['up.yml'].add(`node.${m[1]!}`);
      else if (f === 'leader.yml' || f === 'node.yml' || f === 'up.yml') out[f].add(m[1]!);
      else throw new Error(`config reference row ${m[1]}: unknown file "${f}"`);
    }
  }
  return out;
}

/** YAML text that sets the dotted key (a record's `<name>` becomes `x`). */
function yamlSetting(key: string): string {
  const parts = key.replace(/<name>/g, 'x').split('.');
  return parts.map((p, i) => `${'  '.repeat(i)}${p}:${i === parts.length - 1 ? ' 1' : ''}`).join('\n') + '\n';
}

function isUnknownTo(parse: (text: string) => unknown, key: string): boolean {
  try {
    parse(yamlSetting(key));
    return false;
  } catch (err) {
    const problems = (err as { problems?: readonly string[] }).problems ?? [String(err)];
    const top = key.replace(/<name>/g, 'x');
    return problems.some((p) => p.includes(`unknown key "${top}"`) || p.includes(`unknown key "${top.split('.')[0]}"`));
  }
}

const parsers: Record<File, (text: string) => unknown> = {
  'leader.yml': (t) => parseLeaderConfig(t, 'leader.yml', {}, { baseDir: '/tmp', hostname: 'gpu-01' }),
  'node.yml': (t) => parseNodeConfig(t, 'node.yml', {}, { baseDir: '/tmp', hostname: 'gpu-01' }),
  'up.yml': (t) => parseUpConfig(t, 'up.yml', {}, { baseDir: '/tmp', hostname: 'gpu-01' }),
};

describe("docs/sysadmin.md's config reference", () => {
  const fromSchemas = schemaKeys();
  const fromDoc = docTable();

  it.each(['leader.yml', 'node.yml', 'up.yml'] as const)('lists every key of %s, and no key it lacks', (file) => {
    const missing = [...fromSchemas[file]].filter((k) => !fromDoc[file].has(k)).sort();
    const extra = [...fromDoc[file]].filter((k) => !fromSchemas[file].has(k)).sort();
    expect({ missing, extra }, `${file}: add the missing keys to the table, remove or fix the extra ones`).toEqual({ missing: [], extra: [] });
  });

  it.each(['leader.yml', 'node.yml', 'up.yml'] as const)('every key the table gives %s is one its parser knows', (file) => {
    const refused = [...fromDoc[file]].filter((k) => isUnknownTo(parsers[file], k));
    expect(refused, `${file} refuses these keys the table lists`).toEqual([]);
  });

  it("node.yml's own keys are node.yml's, not up.yml's node: section's", () => {
    for (const key of NODE_YML_ONLY) {
      expect(isUnknownTo(parsers['node.yml'], key), `node.yml knows ${key}`).toBe(false);
      expect(isUnknownTo(parsers['up.yml'], `node.${key}`), `up.yml's node: section refuses ${key}`).toBe(true);
    }
  });

  it('a key the parser does not know is caught by the check', () => {
    expect(isUnknownTo(parsers['leader.yml'], 'run_for')).toBe(true);
    expect(isUnknownTo(parsers['leader.yml'], 'limits.no_such_limit')).toBe(true);
  });
});

// Prints the keys (SECD_PRINT_CONFIG_KEYS=1) to write the table from.
if (process.env.SECD_PRINT_CONFIG_KEYS) {
  const k = schemaKeys();
  const all = [...new Set([...k['leader.yml'], ...k['node.yml'], ...k['up.yml']])];
  for (const key of all) console.log(`${key}\t${(['leader.yml', 'node.yml', 'up.yml'] as const).filter((f) => k[f].has(key)).join(', ')}`);
}
