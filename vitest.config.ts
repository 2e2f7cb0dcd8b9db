import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Real databases: keep files in separate workers, but do not oversubscribe a 2-core machine.
    maxWorkers: 2,
    typecheck: { enabled: true, include: ['test/types/**/*.test-d.ts'] },
  },
});
