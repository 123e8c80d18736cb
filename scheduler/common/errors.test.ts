import { describe, expect, it } from 'vitest';
import { errorText, isErrno } from './errors.js';

describe('errorText', () => {
  it("gives an Error's message and anything else thrown as text", () => {
    expect(errorText(new Error('git fetch failed'))).toBe('git fetch failed');
    expect(errorText('plain text')).toBe('plain text');
    expect(errorText(42)).toBe('42');
    expect(errorText(undefined)).toBe('undefined');
  });
});

describe('isErrno', () => {
  const missing = Object.assign(new Error('no such file'), { code: 'ENOENT' });

  it('knows a system error, and which one it is', () => {
    expect(isErrno(missing)).toBe(true);
    expect(isErrno(missing, 'ENOENT')).toBe(true);
    expect(isErrno(missing, 'EEXIST')).toBe(false);
  });

  it('is false for errors without a code and for values that are not errors', () => {
    expect(isErrno(new Error('plain'))).toBe(false);
    expect(isErrno({ code: 'ENOENT' })).toBe(false);
    expect(isErrno(Object.assign(new Error('numeric'), { code: 3 }))).toBe(false);
  });
});
