import { fileURLToPath } from 'node:url';
import { defineConfig, type TestProjectInlineConfiguration } from 'vitest/config';
import base from '../../vitest.config.js';

const restart = 'test/reliability/postgres-restart.reliability.ts';

/** A project with the main config's aliases and timeouts, running `include` only. */
function project(name: string, groupOrder: number, include: string[], exclude: string[] = []) {
  return {
    resolve: base.resolve,
    test: {
      name,
      include,
      exclude,
      testTimeout: base.test?.testTimeout,
      hookTimeout: base.test?.hookTimeout,
      maxWorkers: base.test?.maxWorkers,
      sequence: { groupOrder },
    },
  } as TestProjectInlineConfiguration;
}

/**
 * `npm run test:reliability`: the seeded fuzz suites (`*.fuzz.ts`), crash injection, PostgreSQL
 * faults and concurrency (`*.reliability.ts`), all kept out of `npm test` for their length, and the
 * hostile-input regression tests, which `npm test` also runs. The restart test runs last, alone.
 */
export default defineConfig({
  root: fileURLToPath(new URL('../..', import.meta.url)),
  test: {
    projects: [
      project(
        'reliability',
        0,
        [
          'test/reliability/**/*.fuzz.ts',
          'test/reliability/**/*.reliability.ts',
          'test/reliability/**/*.test.ts',
        ],
        [restart],
      ),
      project('restart', 1, [restart]),
    ],
  },
});
