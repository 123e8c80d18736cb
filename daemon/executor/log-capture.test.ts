import { describe, expect, it } from 'vitest';
import { LogCapture } from './log-capture.js';

function bytes(n: number, seed = 0): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) % 251;
  return b;
}

describe('LogCapture', () => {
  it('keeps a short log whole, with no marker', () => {
    const log = new LogCapture({ headBytes: 16, tailBytes: 16 });
    log.append('hello ');
    log.append(Buffer.from('world\n'));
    expect(log.toString()).toBe('hello world\n');
    expect(log.totalBytes).toBe(12);
    expect(log.omittedBytes).toBe(0);
  });

  it('keeps a log of exactly head + tail bytes whole', () => {
    const input = bytes(32);
    const log = new LogCapture({ headBytes: 16, tailBytes: 16 });
    log.append(input);
    expect(log.omittedBytes).toBe(0);
    expect(log.toBuffer().equals(input)).toBe(true);
  });

  it('keeps the first and the exact last bytes of a long log, in small and large chunks alike', () => {
    const input = bytes(100_003, 7);
    for (const chunkSize of [1, 7, 4096, 60_000, 100_003]) {
      const log = new LogCapture({ headBytes: 1000, tailBytes: 3000 });
      for (let i = 0; i < input.length; i += chunkSize) log.append(input.subarray(i, i + chunkSize));
      const out = log.toBuffer();
      expect(log.totalBytes).toBe(100_003);
      expect(log.omittedBytes).toBe(100_003 - 4000);
      expect(out.subarray(0, 1000).equals(input.subarray(0, 1000))).toBe(true);
      expect(out.subarray(out.length - 3000).equals(input.subarray(input.length - 3000))).toBe(true);
      const marker = out.subarray(1000, out.length - 3000).toString('utf8');
      expect(marker).toBe(`\n... [secd: ${100_003 - 4000} bytes omitted] ...\n`);
    }
  });

  it('puts the marker on a line of its own after a head that ends a line', () => {
    const log = new LogCapture({ headBytes: 6, tailBytes: 6 });
    log.append('line1\nline2\nline3\nline4\n');
    expect(log.toString()).toBe('line1\n... [secd: 12 bytes omitted] ...\nline4\n');
  });

  it('uses 1 MiB head and 1 MiB tail by default', () => {
    const log = new LogCapture();
    const mib = 1024 * 1024;
    log.append(Buffer.alloc(mib, 'a'));
    log.append(Buffer.alloc(mib, 'b'));
    log.append(Buffer.alloc(mib, 'c'));
    expect(log.omittedBytes).toBe(mib);
    const out = log.toString();
    expect(out.startsWith('a'.repeat(mib))).toBe(true);
    expect(out.endsWith('c'.repeat(mib))).toBe(true);
    expect(out).toContain(`... [secd: ${mib} bytes omitted] ...`);
  });

  it('with no tail kept, keeps only the head and counts the rest', () => {
    const log = new LogCapture({ headBytes: 4, tailBytes: 0 });
    log.append('abcdefgh');
    expect(log.toString()).toBe('abcd\n... [secd: 4 bytes omitted] ...\n');
  });
});
