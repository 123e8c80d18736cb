import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { lineSuffix, parseYamlWith, type YamlResult } from './yaml-schema.js';

const schema = z.strictObject({
  port: z.number().default(8080),
  gitlab: z
    .strictObject({ token: z.string().optional(), token_file: z.string().optional() })
    .superRefine((g, zctx) => {
      if (g.token !== undefined && g.token_file !== undefined) {
        zctx.issues.push({ code: 'custom', input: undefined, path: ['token'], message: 'and {parent}token_file are both set; keep one' });
      }
    })
    .optional(),
});

const opts = { example: 'port: 8080' };

/** The lines a person reads, as a config file shows them. */
function lines<T>(result: YamlResult<T>): string[] {
  if (result.ok) throw new Error('expected problems');
  return result.problems.map((p) => `f.yml: ${p.sentence}${lineSuffix(p)}`);
}

describe('reading a YAML file against a schema', () => {
  it('an empty file is an empty mapping, so every key takes its default', () => {
    const result = parseYamlWith('', schema, opts);
    expect(result).toEqual({ ok: true, data: { port: 8080 }, raw: {} });
  });

  it('a syntax error is reported alone, with its line and column', () => {
    const result = parseYamlWith('port: 1\ngitlab: [\n', schema, opts);
    expect(lines(result)).toHaveLength(1);
    expect(lines(result)[0]).toMatch(/^f\.yml: not valid YAML at line \d+, column \d+: /);
  });

  it('a file that is not a mapping points to an example line', () => {
    expect(lines(parseYamlWith('- port: 1\n', schema, opts))).toEqual([
      'f.yml: the file must be a mapping of keys (like "port: 8080"), not a list',
    ]);
  });

  it('unknown keys and bad values are named by their dotted path and line', () => {
    const text = 'port: "x"\ngitlab:\n  tokn: abc\n';
    expect(lines(parseYamlWith(text, schema, { ...opts, error: () => 'must be a number' }))).toEqual([
      'f.yml: port must be a number (line 1)',
      'f.yml: unknown key "gitlab.tokn" (line 3)',
    ]);
  });

  it('a message names a sibling key by its full path through {parent}', () => {
    const result = parseYamlWith('gitlab:\n  token: a\n  token_file: b\n', schema, opts);
    expect(lines(result)).toEqual(['f.yml: gitlab.token and gitlab.token_file are both set; keep one (line 2)']);
  });

  it('a key that is missing has no line', () => {
    const required = z.strictObject({ url: z.string() });
    expect(lines(parseYamlWith('', required, { ...opts, error: () => 'is required' }))).toEqual(['f.yml: url is required']);
  });
});

describe('bounds, for text someone else wrote', () => {
  const bounds = { maxBytes: 1024, maxTokens: 64, maxDepth: 3 };
  const many = Array.from({ length: 50 }, (_, i) => `k${i}: ${i}\n`).join('');
  const loose = z.looseObject({});

  it('without bounds (a config file) a long file reads as before', () => {
    expect(parseYamlWith(many, loose, opts).ok).toBe(true);
  });

  it('with bounds, size, tokens and depth are each refused with the limit named', () => {
    expect(lines(parseYamlWith(`# ${'x'.repeat(2000)}\n`, loose, { ...opts, bounds }))).toEqual([
      'f.yml: the file is 2,003 bytes, more than the limit of 1,024 bytes (1 KiB)',
    ]);
    expect(lines(parseYamlWith(many, loose, { ...opts, bounds }))).toEqual([
      'f.yml: the file has more than 64 YAML tokens (keys, values, punctuation), the limit',
    ]);
    expect(lines(parseYamlWith('a: [[[1]]]\n', loose, { ...opts, bounds }))).toEqual([
      'f.yml: nests mappings and lists deeper than 3 levels, the limit',
    ]);
    expect(parseYamlWith('a: [[1]]\n', loose, { ...opts, bounds }).ok).toBe(true);
  });
});
