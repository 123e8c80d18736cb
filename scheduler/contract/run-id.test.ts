import { describe, expect, it } from 'vitest';
import { isRunId } from './run-id.js';

describe('isRunId', () => {
  it('accepts the ids of older and test runs, and refuses what could leave a folder or pass as an option', () => {
    for (const id of ['r42', 'r-42', 'run0000001', 'A_b-9', '7a8b9c0d1e']) expect(isRunId(id)).toBe(true);
    for (const id of ['', '../etc', 'a/b', '-rf', '_x', 'a b', 'a.b', 'x'.repeat(65)]) expect(isRunId(id)).toBe(false);
  });
});
