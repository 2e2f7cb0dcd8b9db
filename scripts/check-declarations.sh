#!/usr/bin/env bash
# Type-checks the built declarations alone, as a consumer's strict tsc does (skipLibCheck false):
# a fast guard against public types that name what stripInternal removed. Run after `npm run build`.
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc --noEmit --strict --skipLibCheck false --target ES2022 --module NodeNext --moduleResolution NodeNext \
  --types node dist/index.d.ts dist/duckdb.d.ts dist/postgres.d.ts dist/kysely.d.ts dist/polars.d.ts \
  dist/sqlite.d.ts dist/redis.d.ts
echo "declarations: every entry type-checks with skipLibCheck false"
