import { defineConfig } from 'vitest/config';

// Integration tests drive real Docker, git and GnuPG: give them room, and run files in parallel
// only as far as two cores allow.
export default defineConfig({
  test: {
    include: ['**/*.test.ts'],
    exclude: ['node_modules/**', 'dist/**'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    maxWorkers: 2,
  },
});
