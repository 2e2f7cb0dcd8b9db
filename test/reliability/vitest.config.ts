import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';
import base from '../../vitest.config.js';

/**
 * `npm run test:reliability`: the seeded suites (`*.fuzz.ts`) and the crash, fault and concurrency
 * runs, kept out of `npm test` for their length, and the regression tests of test/reliability,
 * which `npm test` also runs.
 */
const { projects: _, ...shared } = base.test ?? {};

export default defineConfig({
  ...base,
  root: fileURLToPath(new URL('../..', import.meta.url)),
  test: {
    ...shared,
    include: ['test/reliability/**/*.fuzz.ts', 'test/reliability/**/*.test.ts'],
    exclude: ['**/node_modules/**'],
    typecheck: { enabled: false },
  },
});
