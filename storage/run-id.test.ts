import { describe, expect, it } from 'vitest';
import { isRunId } from '../scheduler/contract/run-id.js';
import { newRunId } from './run-id.js';

describe('newRunId', () => {
  it('makes 10 characters of lowercase Crockford base32 that every role accepts as a run id', () => {
    const ids = Array.from({ length: 1000 }, () => newRunId());
    for (const id of ids) {
      expect(id).toMatch(/^[0-9a-hjkmnp-tv-z]{10}$/);
      expect(isRunId(id)).toBe(true);
    }
    expect(new Set(ids).size).toBe(ids.length);
  });
});
