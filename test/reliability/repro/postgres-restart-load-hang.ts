/**
 * REPRODUCER (not in any test glob): a PostgreSQL `materialize` in flight while the server
 * restarts (`pg_ctl restart -m fast`) sometimes never settles: neither the record nor an error,
 * ever (seen in 1 of 3 runs of test/reliability/postgres-restart.test.ts with the load in it).
 * Expected: it resolves (committed before the restart) or rejects with a FeatureStoreError saying
 * nothing was stored, within seconds of the restart.
 *
 * Usage: node --import tsx test/reliability/repro/postgres-restart-load-hang.ts [attempts=10]
 * Prints one line per attempt (settled how, or HUNG) and exits 1 if any attempt hung.
 * Starts a throwaway server of its own (see ../private-server.ts); needs initdb and pg_ctl.
 */
import { FeatureStore, Last } from 'featurefn';
import { PostgresMaterializer } from 'featurefn/postgres';
import { postgresBinaries, startPrivateServer } from '../private-server.js';
import { registerWorkload, whenOf } from '../workload.js';

const binaries = postgresBinaries();
if ('reason' in binaries) throw new Error(binaries.reason);
const server = await startPrivateServer(binaries.bin);
let hung = 0;
try {
  const attempts = Number(process.argv[2] ?? 10);
  for (let i = 0; i < attempts; i++) {
    const materializer = new PostgresMaterializer({
      connection: server.url,
      schema: `repro_${i}`,
      poolSize: 4,
      onError: () => undefined,
    });
    const store = new FeatureStore();
    const { alpha, beta } = registerWorkload(store, 0.2);
    store.addDecorator(materializer.decorator);
    for (const f of [alpha, beta]) await materializer.materialize(f, { when: whenOf(0) });
    // Readers looping meanwhile, as in the test where it was seen.
    let reading = true;
    const frame = store.withParams({ when: Last() }).getFeatures(alpha, beta);
    const readers = [0, 1, 2, 3].map(async () => {
      while (reading) {
        await new Promise((resolve) => setImmediate(resolve));
        await frame
          .filter({ k: 'K000042' })
          .toArray()
          .catch(() => undefined);
      }
    });
    const started = Date.now();
    const loading = materializer.materialize(alpha, { when: whenOf(2) }).then(
      () => 'resolved',
      (error: unknown) => `rejected: ${String(error).slice(0, 160)}`,
    );
    await new Promise((resolve) => setTimeout(resolve, 100 + 150 * (i % 5)));
    await server.restart();
    const outcome = await Promise.race([
      loading,
      new Promise<string>((resolve) =>
        setTimeout(() => resolve('HUNG (not settled 30 s after the restart)'), 30_000),
      ),
    ]);
    reading = false;
    await Promise.all(readers);
    if (outcome.startsWith('HUNG')) hung++;
    console.log(`attempt ${i}: ${outcome} (${Date.now() - started} ms)`);
    await Promise.race([materializer.close(), new Promise((resolve) => setTimeout(resolve, 5_000))]);
  }
} finally {
  server.stop();
}
console.log(`${hung} hung`);
process.exit(hung > 0 ? 1 : 0);
