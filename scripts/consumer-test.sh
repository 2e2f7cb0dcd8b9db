#!/usr/bin/env bash
# Installs the packed package the way a user does (from the tarball, peers from the registry) into
# fresh projects outside the repository, one per entry point with only the peers that entry needs,
# then for each: a strict `tsc` with `skipLibCheck: false`, and a small script run with plain
# `node` and with `tsx`. Run after `npm run build`. Catches peer ranges npm cannot satisfy and
# declarations that only compile inside the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

fail() {
  echo "" >&2
  echo "CONSUMER TEST FAILED: $*" >&2
  exit 1
}

FAILURES=()
# problem <message>: recorded, and the run goes on to the next entry point; the script fails at the end.
problem() {
  echo "  FAILED: $*" >&2
  FAILURES+=("$*")
}

[ -f dist/index.d.ts ] || fail "dist/ is missing; run \`npm run build\` first"

dev_version() { node -p "require('./package.json').devDependencies['$1']"; }
DUCKDB_VERSION=$(dev_version @duckdb/node-api)
POLARS_VERSION=$(dev_version nodejs-polars)
TOOLS="typescript@$(dev_version typescript) tsx@$(dev_version tsx) @types/node@$(dev_version @types/node)"
PG_URL=${FEATUREFN_PG_URL:-postgres://postgres@127.0.0.1:5432/test}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/featurefn-consumer.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
npm pack --silent --pack-destination "$WORK" >/dev/null
TARBALL=$(ls "$WORK"/featurefn-*.tgz)
echo "consumer test: packed $(basename "$TARBALL") into $WORK"

# The compiler and runners live in the parent folder: every project finds them, and none of them
# brings a peer along.
(cd "$WORK" && npm init -y >/dev/null && npm install --no-audit --no-fund --save-exact $TOOLS >/dev/null) ||
  fail "could not install $TOOLS"

# install <dir> <packages…>: a fresh ESM project with the tarball and the given packages.
install() {
  local dir=$WORK/$1
  shift
  mkdir -p "$dir"
  cat >"$dir/package.json" <<JSON
{ "name": "consumer-$(basename "$dir")", "private": true, "type": "module" }
JSON
  cat >"$dir/tsconfig.json" <<'JSON'
{
  "compilerOptions": {
    "target": "ES2022",
    "module": "NodeNext",
    "moduleResolution": "NodeNext",
    "strict": true,
    "skipLibCheck": false,
    "types": ["node"],
    "outDir": "out"
  },
  "include": ["main.ts"]
}
JSON
  local log=$dir/npm-install.log
  if ! (cd "$dir" && npm install --no-audit --no-fund "$TARBALL" "$@") >"$log" 2>&1; then
    cat "$log" >&2
    problem "npm install featurefn $* failed in $dir (log above)"
  elif grep -q ERESOLVE "$log"; then
    cat "$log" >&2
    problem "npm install featurefn $* printed ERESOLVE: a peer range in package.json does not accept that version"
  fi
  cp "$WORK/departures.ts" "$dir/"
}

# The feature the stores' scripts materialize and read back; each project gets a copy.
cat >"$WORK/departures.ts" <<'TS'
import { FeatureStore } from 'featurefn';

export const store = new FeatureStore();
/** Departures per origin. */
export const departures = store.feature(
  { module: 'consumer', entity: 'origin' },
  async function departures({ when }: { when: Date }) {
    return [
      { origin: 'SFO', departures: when.getUTCDate() },
      { origin: 'LAX', departures: 1 },
    ];
  },
);
TS

# Materializes departures with DuckDB, publishes it to the online store that ./online.ts exports,
# and reads it back from there: main.ts of every online store's project.
cat >"$WORK/online-main.ts" <<'TS'
import { Last } from 'featurefn';
import { DuckDBMaterializer } from 'featurefn/duckdb';
import { departures, store } from './departures.js';
import { label, online } from './online.js';

const materializer = new DuckDBMaterializer({ path: ':memory:', online });
store.addDecorator(materializer.decorator);
try {
  await materializer.materialize(departures, { when: new Date('2001-03-08') });
  const frame = store.withParams({ when: Last() }).getFeatures(departures).filter({ origin: 'SFO' });
  const rows = await frame.toArray();
  if (JSON.stringify(rows) !== JSON.stringify([{ origin: 'SFO', departures: 8 }]))
    throw new Error(`read back ${JSON.stringify(rows)}`);
  const plan = await frame.explain();
  if (!plan.includes('online')) throw new Error(`not served online:\n${plan}`);
} finally {
  await materializer.close();
  await online.close(); // the materializer does not own it
}
console.log(`  ${label}: materialized, published online and read back`);
TS

# check <dir> <label>: strict tsc (emitting to out/), then node on the output and tsx on the source.
check() {
  local dir=$WORK/$1 label=$2
  echo "consumer test: $label"
  # tsc still emits when it reports errors, so the scripts run either way.
  (cd "$dir" && "$WORK/node_modules/.bin/tsc" -p .) ||
    problem "$label: tsc with skipLibCheck false failed on a consumer's main.ts (errors above)"
  (cd "$dir" && node out/main.js) || problem "$label: node out/main.js failed (output above)"
  (cd "$dir" && "$WORK/node_modules/.bin/tsx" main.ts) || problem "$label: tsx main.ts failed (output above)"
}

# --- featurefn alone: no peer installed -------------------------------------------------------
install core
cat >"$WORK/core/main.ts" <<'TS'
import { FeatureStore, FeatureStoreError, Last, type LazyFrame } from 'featurefn';

const store = new FeatureStore();
/** Departures per origin. */
const departures = store.feature(
  { module: 'consumer', entity: 'origin' },
  async function departures({ when }: { when: Date }) {
    return [{ origin: 'SFO', departures: when.getUTCDate() }];
  },
);
const rows = await departures({ when: new Date('2001-03-08') });
if (rows[0]?.departures !== 8) throw new Error(`unexpected rows ${JSON.stringify(rows)}`);
// The frame's polars method must type-check without nodejs-polars installed.
const frame: LazyFrame = store.withParams({ when: Last() }).getFeatures(departures);
const toPolars: () => Promise<unknown> = () => frame.toPolars();
void toPolars;
if (!(new FeatureStoreError('STORE_ERROR', 'x') instanceof Error)) throw new Error('FeatureStoreError');
console.log('  featurefn alone: ok');
TS
check core 'featurefn alone'

# --- featurefn/duckdb + @duckdb/node-api ------------------------------------------------------
install duckdb @duckdb/node-api
INSTALLED=$(node -p "require('$WORK/duckdb/node_modules/@duckdb/node-api/package.json').version")
[ "$INSTALLED" = "$DUCKDB_VERSION" ] ||
  problem "\`npm install featurefn @duckdb/node-api\` installed @duckdb/node-api $INSTALLED, but featurefn is built and tested with $DUCKDB_VERSION: fix its peer range"
cat >"$WORK/duckdb/main.ts" <<'TS'
import { Last } from 'featurefn';
import { DuckDBMaterializer } from 'featurefn/duckdb';
import { departures, store } from './departures.js';

const materializer = new DuckDBMaterializer({ path: ':memory:' });
store.addDecorator(materializer.decorator);
try {
  await materializer.materialize(departures, { when: new Date('2001-03-08') });
  const rows = await store.withParams({ when: Last() }).getFeatures(departures).filter({ origin: 'SFO' }).toArray();
  if (JSON.stringify(rows) !== JSON.stringify([{ origin: 'SFO', departures: 8 }]))
    throw new Error(`read back ${JSON.stringify(rows)}`);
} finally {
  await materializer.close();
}
console.log('  featurefn/duckdb: materialized and read back');
TS
check duckdb "featurefn/duckdb with @duckdb/node-api@$INSTALLED"

# --- featurefn/postgres + pg + pg-copy-streams ------------------------------------------------
install postgres pg pg-copy-streams @types/pg @types/pg-copy-streams
cat >"$WORK/postgres/main.ts" <<'TS'
import { Last } from 'featurefn';
import { PostgresMaterializer } from 'featurefn/postgres';
import pg from 'pg';
import { departures, store } from './departures.js';

const url = process.env.FEATUREFN_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const schema = `consumer_${process.pid}_${Date.now()}`;
const materializer = new PostgresMaterializer({ connection: url, schema });
store.addDecorator(materializer.decorator);
try {
  await materializer.materialize(departures, { when: new Date('2001-03-08') });
  const rows = await store.withParams({ when: Last() }).getFeatures(departures).filter({ origin: 'SFO' }).toArray();
  if (JSON.stringify(rows) !== JSON.stringify([{ origin: 'SFO', departures: 8 }]))
    throw new Error(`read back ${JSON.stringify(rows)}`);
} finally {
  await materializer.close();
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await client.end();
}
console.log('  featurefn/postgres: materialized and read back');
TS
FEATUREFN_PG_URL=$PG_URL check postgres 'featurefn/postgres with pg and pg-copy-streams'

# --- featurefn/sqlite + better-sqlite3, with featurefn/duckdb as the offline store ------------
install sqlite @duckdb/node-api better-sqlite3 @types/better-sqlite3
cp "$WORK/online-main.ts" "$WORK/sqlite/main.ts"
cat >"$WORK/sqlite/online.ts" <<'TS'
import { SqliteOnlineStore } from 'featurefn/sqlite';

export const label = 'featurefn/sqlite (SQLite)';
export const online = new SqliteOnlineStore(); // in memory; give it a path to keep it
TS
check sqlite 'featurefn/sqlite with better-sqlite3 (DuckDB offline)'

# --- featurefn/redis + ioredis, with featurefn/duckdb as the offline store --------------------
install redis @duckdb/node-api ioredis
cp "$WORK/online-main.ts" "$WORK/redis/main.ts"
cat >"$WORK/redis/online.ts" <<'TS'
import { RedisOnlineStore } from 'featurefn/redis';

export const label = 'featurefn/redis (Redis)';
export const online = new RedisOnlineStore({
  url: process.env.FEATUREFN_REDIS_URL ?? 'redis://127.0.0.1:6379',
  prefix: `consumer:${process.pid}:${Date.now()}:`,
});
TS
check redis 'featurefn/redis with ioredis (DuckDB offline)'

# --- featurefn/polars + nodejs-polars (its native package is skipped by npm on Node 20) --------
install polars "nodejs-polars@$POLARS_VERSION" "nodejs-polars-linux-x64-gnu@$POLARS_VERSION"
cat >"$WORK/polars/main.ts" <<'TS'
import type { LazyFrame } from 'featurefn';
import { toPolars, type PolarsDataFrame } from 'featurefn/polars';

// With featurefn/polars imported, a frame's toPolars() is typed as a polars DataFrame.
const height = async (frame: LazyFrame): Promise<number> => (await frame.toPolars()).height;
void height;

const df: PolarsDataFrame = await toPolars([{ origin: 'SFO', departures: 8 }]);
if (df.height !== 1 || df.getColumn('departures').get(0) !== 8) throw new Error(`got ${df.toString()}`);
console.log('  featurefn/polars: ok');
TS
check polars "featurefn/polars with nodejs-polars@$POLARS_VERSION"

# --- featurefn/kysely + kysely -----------------------------------------------------------------
install kysely kysely
cat >"$WORK/kysely/main.ts" <<'TS'
import { kyselyAdapter } from 'featurefn/kysely';
import { DummyDriver, Kysely, PostgresAdapter, PostgresIntrospector, PostgresQueryCompiler } from 'kysely';

interface Database {
  flights: { origin: string; delay: number };
}
const db = new Kysely<Database>({
  dialect: {
    createAdapter: () => new PostgresAdapter(),
    createDriver: () => new DummyDriver(),
    createIntrospector: (k) => new PostgresIntrospector(k),
    createQueryCompiler: () => new PostgresQueryCompiler(),
  },
});
const query = db.selectFrom('flights').select(['origin', 'delay']);
if (!kyselyAdapter.canAdapt(query)) throw new Error('a Kysely select is not recognised');
await db.destroy();
console.log('  featurefn/kysely: ok');
TS
check kysely 'featurefn/kysely with kysely'

if [ ${#FAILURES[@]} -gt 0 ]; then
  printf '  - %s\n' "${FAILURES[@]}" >&2
  fail "${#FAILURES[@]} problem(s) above; a user installing featurefn from npm would hit them"
fi
echo "consumer test: every entry point installs, type-checks (skipLibCheck false) and runs"
