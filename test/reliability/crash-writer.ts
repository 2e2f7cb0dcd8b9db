/**
 * Child process of the crash, fault and concurrency tests: materializes the workload (see
 * workload.ts) and says what it does on stdout, one JSON object a line, so the parent can kill it
 * anywhere and then check what it confirmed.
 * Usage: node --import tsx crash-writer.ts '<StoreSpec as JSON>' <first day> <publications> [scale]
 * - `{"ready":true}` once imports are done (before the store is opened);
 * - `{"begin":"alpha","day":2,"at":<ms>}` before each `materialize`;
 * - `{"confirmed":"alpha","day":2,"id":"17","rows":120000,"at":<ms>}` once it resolved;
 * - `{"done":true}` after `<publications>` of them (`0`: never stop), then it exits 0.
 * It cycles through (alpha, day), (beta, day), (alpha, day + 1)… from `<first day>`.
 */
import { FeatureStore } from 'featurefn';
import { DAYS, openStore, registerWorkload, type StoreSpec, whenOf } from './workload.js';

const [spec, first, count, scale] = process.argv.slice(2) as [string, string, string, string | undefined];
const say = (line: object) => process.stdout.write(`${JSON.stringify(line)}\n`);

const store = new FeatureStore();
const features = registerWorkload(store, scale === undefined ? 1 : Number(scale));
const materializer = await openStore(JSON.parse(spec) as StoreSpec);
say({ ready: true });
const total = Number(count);
for (let i = 0; total === 0 || i < total; i++) {
  const day = (Number(first) + Math.floor(i / 2)) % DAYS.length;
  const name = i % 2 === 0 ? 'alpha' : 'beta';
  say({ begin: name, day, at: Date.now() });
  const record = await materializer.materialize(features[name], { when: whenOf(day) });
  say({ confirmed: name, day, id: record.id, rows: record.rows, at: Date.now() });
}
await materializer.close();
say({ done: true });
