import { FeatureStore, Last } from 'featurefn';
import { PostgresMaterializer } from 'featurefn/postgres';
import pg from 'pg';
const N = 50, E = 2000;
const schema = `probe_wide_${process.pid}`;
const pool = new pg.Pool({ connectionString: 'postgres://postgres@127.0.0.1:5432/test', max: 3 });
const m = new PostgresMaterializer({ connection: pool, schema });
const store = new FeatureStore();
const feats = Array.from({ length: N }, (_, f) => store.feature({ module: 'wide', entity: 'entity', name: `f${f}` },
  async ({ when }: { when: Date }) => Array.from({ length: E }, (_, i) => ({ entity: `user_${i}`, [`f${f}`]: (i * 7 + f + when.getTime() / 1e9) % 1000 }))));
store.addDecorator(m.decorator);
for (const d of [1, 2, 3]) for (const f of feats) await m.materialize(f, { when: new Date(Date.UTC(2024, 0, d)) });
const frame = (k: string) => store.withParams({ when: Last() }).getFeatures(...feats).filter({ entity: k });
const ex = await frame('user_1').explain();
const sql = ex.split('\n').find((l) => l.startsWith('SELECT'))!;
const vals = ex.split('\n').filter((l) => /^\s+\$\d+ = /.test(l)).map((l) => { const v = l.replace(/^\s+\$\d+ = /, '').replace(/ \(\w+\)$/, ''); return v.startsWith('"') ? JSON.parse(v) : v; });
console.log(sql.slice(0, 400), '...', sql.slice(-700));
const c = await pool.connect(); if (process.env.GENERIC) await c.query("SET plan_cache_mode = force_generic_plan"); if (process.env.ANALYZE) { const t = sql.match(/FROM ("[^"]+"\."s_[0-9a-f]+")/)![1]; await c.query(`ANALYZE ${t}`); console.log("analyzed", t); }
await c.query({ name: 'p', text: sql, values: vals });
for (let i = 0; i < 8; i++) await c.query({ name: 'p', text: sql, values: vals });
const plan = await c.query({ text: 'EXPLAIN (ANALYZE, BUFFERS) EXECUTE p', values: [] }).catch(async () => {
  await c.query(`PREPARE q AS ${sql}`);
  for (let i = 0; i < 7; i++) await c.query(`EXECUTE q(${vals.map((v) => `'${v}'`).join(',')})`);
  return c.query(`EXPLAIN (ANALYZE, BUFFERS) EXECUTE q(${vals.map((v) => `'${v}'`).join(',')})`);
});
console.log(plan.rows.map((r) => r['QUERY PLAN']).join('\n'));
async function time(label: string, fn: (i: number) => Promise<unknown>) {
  for (let i = 0; i < 200; i++) await fn(i);
  const ts: number[] = [];
  for (let i = 0; i < 1000; i++) { const t = performance.now(); await fn(i); ts.push(performance.now() - t); }
  ts.sort((a, b) => a - b);
  console.log(label, 'p50', (ts[500]! * 1000).toFixed(0), 'µs p99', (ts[990]! * 1000).toFixed(0));
}
const ki = vals.indexOf("user_1"); await time("raw sql", (i) => c.query({ name: "p", text: sql, values: vals.map((v, j) => (j === ki ? `user_${i % E}` : v)) }));
await c.query(`CREATE TABLE ${schema}.hand AS SELECT 'user_' || i AS entity, ${Array.from({length: N}, (_, f) => `random() AS f${f}`).join(', ')} FROM generate_series(0, ${E - 1}) i`);
await c.query(`ALTER TABLE ${schema}.hand ADD PRIMARY KEY (entity)`);
await time('hand', (i) => c.query({ name: 'h', text: `SELECT * FROM ${schema}.hand WHERE entity = $1`, values: [`user_${i % E}`] }));
await time('51 params', (i) => c.query({ name: 't', text: `SELECT ${vals.map((_, j) => `$${j + 1}::text`).join(', ')}`, values: vals.map((v, j) => (j === ki ? `user_${i % E}` : v)) }));
await time('1 param 51 cols', (i) => c.query({ name: 'u', text: `SELECT ${vals.map((_, j) => `length($1::text)::float8 + ${j}`).join(', ')}`, values: [`user_${i % E}`] }));
await time('raw sql', (i) => c.query({ name: "p", text: sql, values: vals.map((v, j) => (j === ki ? `user_${i % E}` : v)) }));
c.release();
await time('featurefn', (i) => frame(`user_${i % E}`).toArray());
await m.close(); await pool.query(`DROP SCHEMA ${schema} CASCADE`); await pool.end();
