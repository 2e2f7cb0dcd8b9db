/**
 * The PostgreSQL server restarted (`pg_ctl restart -m fast`) while readers loop over `Last()` and a
 * load is in flight. The server is one of this test's own (see private-server.ts): restarting the
 * shared one would cut off every other test using it. Calls in flight fail with a FeatureStoreError
 * naming the lost connection (the load: saying that nothing was stored, or that the outcome is
 * unknown), or complete; none hangs; later calls recover by themselves; nothing published is lost
 * or altered; and the store hears other processes' publications again (its LISTEN connection
 * reconnects).
 */
import { FeatureStore, FeatureStoreError, Last } from 'featurefn';
import { PostgresMaterializer } from 'featurefn/postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { report, sleep, until } from './children.js';
import { checkFailure, printSamples } from './failures.js';
import { recoveredReads, startReaders } from './fault-readers.js';
import { inspectStore, orphans } from './inspect.js';
import { type PrivateServer, postgresBinaries, startPrivateServer } from './private-server.js';
import { checksumOf, dayOf, expectedChecksum, registerWorkload, whenOf } from './workload.js';

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
  `PostgreSQL server restarted during reads and a load${'reason' in binaries ? ` (skipped: ${binaries.reason})` : ''}`,
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
      const frame = store.withParams({ when: Last() }).getFeatures(features.alpha, features.beta);
      const readers = startReaders(frame, SCALE, problems);
      await sleep(1_000);
      // A load of day 2 (22,000 rows), in flight when the server goes down.
      const loading = materializer.materialize(features.alpha, { when: whenOf(2) }).then(
        (record) => record,
        (error: unknown) => error,
      );
      await sleep(100);
      const restartStarted = Date.now();
      await server.restart();
      const restartMs = Date.now() - restartStarted;
      const load = await within(loading, 'the load in flight during the restart to settle');
      await sleep(3_000);
      await within(readers.stop(), 'the readers to finish their last call');
      if (load instanceof Error) {
        checkFailure(load, problems);
        if (!/Nothing was stored|may or may not have been stored/.test(load.message))
          problems.push(`the failed load does not say what was stored: ${load.message.slice(0, 300)}`);
      }

      // Recovered: reads succeed again, and every publication is still there, whole.
      const recovered = await within(recoveredReads(frame, SCALE, 1), 'the reads after the restart');
      // The load's day: stored whole, or not at all (then the previous record, if any, is left).
      const [day2] = await materializer
        .listMaterializations(features.alpha)
        .then((all) => all.filter((m) => dayOf(m.params.when) === 2));
      if (load instanceof FeatureStoreError && /Nothing was stored/.test(load.message) && day2 !== undefined)
        problems.push(`the load said nothing was stored, but day 2 has record ${day2.id}`);
      if (!(load instanceof Error) && day2?.id !== (load as { id: string }).id)
        problems.push(`the load's record ${(load as { id: string }).id} is not day 2's (${day2?.id})`);
      if (day2 !== undefined) {
        const rows = await store
          .withParams({ when: whenOf(2) })
          .getFeatures(features.alpha)
          .toArray();
        if (checksumOf('alpha', rows) !== expectedChecksum('alpha', 2, SCALE))
          problems.push('the load of day 2 reads back altered');
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
        reads: readers.counts.reads,
        failedReads: readers.counts.failed,
        load: load instanceof Error ? 'failed' : 'completed',
        restarts: 1,
        restartMs,
        backgroundErrors: background.length,
        recoveredReads: recovered,
        violations: problems.length,
      });
      expect(problems).toEqual([]);
      expect(readers.counts.failed).toBeGreaterThan(0);
      expect(recovered).toBe(20);
      expect(moved).toBe(true);
    }, 180_000);
  },
);
