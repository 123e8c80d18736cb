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
