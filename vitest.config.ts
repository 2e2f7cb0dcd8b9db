import { fileURLToPath } from 'node:url';
import { configDefaults, defineConfig } from 'vitest/config';

const src = (path: string) => fileURLToPath(new URL(`./src/${path}`, import.meta.url));

export default defineConfig({
  resolve: {
    // Examples and tests import the package by its published name, served from source.
    alias: [
      { find: /^featurefn$/, replacement: src('index.ts') },
      { find: /^featurefn\/(.*)$/, replacement: src('$1.ts') },
    ],
  },
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Real databases: separate workers per file, without oversubscribing a 2-core machine.
    maxWorkers: 2,
    typecheck: { enabled: true, include: ['test/types/**/*.test-d.ts'] },
    projects: [
      {
        extends: true,
        test: {
          name: 'main',
          include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
          exclude: [...configDefaults.exclude, 'test/serial/**'],
        },
      },
      {
        // Tests that stop a shared server (Redis): one file at a time, after every other test.
        extends: true,
        test: {
          name: 'serial',
          include: ['test/serial/**/*.test.ts'],
          fileParallelism: false,
          typecheck: { enabled: false },
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
