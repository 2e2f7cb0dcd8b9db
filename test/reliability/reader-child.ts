/**
 * Child process of the concurrency test: reads `Last()` over both workload features in a loop (see
 * last-reader.ts) until a line "stop" arrives on stdin, then prints its figures as one JSON line.
 * Usage: node --import tsx reader-child.ts '<StoreSpec as JSON>' <scale>
 * Prints `{"ready":true}` once the store is open, and `{"seen":3}` on its first read of each day.
 */
import { createInterface } from 'node:readline';
import { FeatureStore } from 'featurefn';
import { readLast } from './last-reader.js';
import { openStore, registerWorkload, type StoreSpec } from './workload.js';

const [spec, scale] = process.argv.slice(2) as [string, string];
const store = new FeatureStore();
// Every read must come from the store; versions differ from the writers' only if their code does.
store.config.onMissing = 'error';
const features = registerWorkload(store, Number(scale));
const materializer = await openStore(JSON.parse(spec) as StoreSpec);
store.addDecorator(materializer.decorator);
let stopped = false;
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === 'stop') stopped = true;
});
await materializer.listMaterializations(features.alpha); // opens the store
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
const figures = await readLast(
  store,
  features,
  () => stopped,
  Number(scale),
  (day) => process.stdout.write(`${JSON.stringify({ seen: day })}\n`),
);
await materializer.close();
process.stdout.write(`${JSON.stringify({ figures })}\n`);
process.exit(0);
