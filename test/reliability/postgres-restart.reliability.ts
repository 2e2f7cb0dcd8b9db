/**
 * The PostgreSQL server restarted (`pg_ctl restart -m fast`) while readers loop over `Last()`. (A
 * load in flight during the restart once never settled: see repro/postgres-restart-load-hang.ts.) The server is one of this test's own (see private-server.ts): restarting the shared
 * one would cut off every other test using it. Calls in flight fail with a FeatureStoreError naming
 * the lost connection; later calls recover by themselves; nothing published is lost or altered;
 * and the store hears other processes' publications again (its LISTEN connection reconnects).
 */
import { FeatureStore, type FeatureStoreError, Last } from 'featurefn';
import { PostgresMaterializer } from 'featurefn/postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { report, sleep, until } from './children.js';
import { checkFailure, printSamples } from './failures.js';
import { inspectStore, orphans } from './inspect.js';
import { type PrivateServer, postgresBinaries, startPrivateServer } from './private-server.js';
import { checksumOf, dayOf, expectedJoinChecksum, registerWorkload, whenOf } from './workload.js';

const SCALE = 0.2;

/** `promise`, or a failure naming `what` if it has not settled within 30 s: a call must never hang. */
function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`waited 30 s for ${what}`)), 30_000);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}
const binaries = postgresBinaries();
if ('reason' in binaries && process.env.CI === 'true')
  throw new Error(`the restart test needs PostgreSQL server binaries in CI: ${binaries.reason}`);

describe.skipIf('reason' in binaries)(
  `PostgreSQL server restarted during reads${'reason' in binaries ? ` (skipped: ${binaries.reason})` : ''}`,
  () => {
    let server: PrivateServer;
    beforeAll(async () => {
      server = await startPrivateServer((binaries as { bin: string }).bin);
    }, 120_000);
    afterAll(() => {
      printSamples('PostgreSQL restart');
      server?.stop();
    });

    it('in-flight calls fail clearly, later calls recover, nothing published is lost', async () => {
      const background: FeatureStoreError[] = [];
      const open = () =>
        new PostgresMaterializer({
          connection: server.url,
          schema: 'restart',
          poolSize: 4,
          onError: (error) => background.push(error),
        });
      const materializer = open();
      const store = new FeatureStore();
      store.config.onMissing = 'error';
      const features = registerWorkload(store, SCALE);
      store.addDecorator(materializer.decorator);
      for (const day of [0, 1])
        for (const f of [features.alpha, features.beta])
          await materializer.materialize(f, { when: whenOf(day) });
      const before = [
        ...(await materializer.listMaterializations(features.alpha)),
        ...(await materializer.listMaterializations(features.beta)),
      ].map((m) => m.id);

      const problems: string[] = [];
      let reads = 0;
      let failed = 0;
      let running = true;
      const frame = store.withParams({ when: Last() }).getFeatures(features.alpha, features.beta);
      // Whole reads, checked against what was published, and key lookups: many round trips, so
      // that some are in flight while the server goes down and while it starts again.
      const reader = async (whole: boolean) => {
        while (running) {
          await new Promise((resolve) => setImmediate(resolve));
          try {
            if (whole) {
              const rows = await frame.toArray({ params: true });
              if (checksumOf('join', rows) !== expectedJoinChecksum(dayOf(rows[0]!.when), SCALE))
                problems.push(`a read of ${rows.length} rows differs from what was published`);
            } else {
              const rows = await frame.filter({ k: 'K000042' }).toArray();
              if (rows.length !== 1) problems.push(`a key lookup gave ${rows.length} rows`);
            }
            reads++;
          } catch (error) {
            failed++;
            checkFailure(error, problems);
          }
        }
      };
      const readers = [reader(true), reader(false), reader(false), reader(false)];
      await sleep(1_000);
      const restartStarted = Date.now();
      await server.restart();
      const restartMs = Date.now() - restartStarted;
      await sleep(3_000);
      running = false;
      await within(Promise.all(readers), 'the readers to finish their last call');

      // Recovered: reads succeed again, and every publication is still there, whole.
      let recovered = 0;
      for (let i = 0; i < 20; i++) {
        const rows = await within(frame.toArray({ params: true }), 'a read after the restart');
        if (checksumOf('join', rows) === expectedJoinChecksum(1, SCALE) && dayOf(rows[0]!.when) === 1)
          recovered++;
      }
      const after = [
        ...(await materializer.listMaterializations(features.alpha)),
        ...(await materializer.listMaterializations(features.beta)),
      ];
      for (const id of before)
        if (!after.some((m) => m.id === id)) problems.push(`publication ${id} is gone`);
      const spec = { engine: 'postgres' as const, url: server.url, schema: 'restart' };
      for (const orphan of orphans(await inspectStore(spec))) problems.push(`orphan table ${orphan}`);
      // And it hears another process's publications again: Last() moves to day 3.
      const other = open();
      const otherStore = new FeatureStore();
      const otherFeatures = registerWorkload(otherStore, SCALE);
      for (const f of [otherFeatures.alpha, otherFeatures.beta])
        await within(other.materialize(f, { when: whenOf(3) }), 'a publication after the restart');
      await within(other.close(), 'closing the other store');
      const moved = await until(async () => {
        const rows = await frame.toArray({ params: true });
        return dayOf(rows[0]!.when) === 3 ? true : undefined;
      }, 'Last() to see the publication made after the restart');
      await within(materializer.close(), 'closing the store');
      for (const error of background) checkFailure(error, problems);
      report('PostgreSQL restart', {
        reads,
        failedReads: failed,
        restarts: 1,
        restartMs,
        backgroundErrors: background.length,
        recoveredReads: recovered,
        violations: problems.length,
      });
      expect(problems).toEqual([]);
      expect(failed).toBeGreaterThan(0);
      expect(recovered).toBe(20);
      expect(moved).toBe(true);
    }, 180_000);
  },
);
