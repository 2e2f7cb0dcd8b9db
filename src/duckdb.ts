/**
 * The embedded DuckDB store. Needs the optional peer dependency `@duckdb/node-api`.
 * Importing it lets `materialize` take DuckDB query results as feature results.
 * @module
 */

import { duckdbAdapter } from './engines/duckdb/duckdb-adapter.js';
import { registerFrameAdapter } from './frame/adapters.js';

export {
  DUCKDB_FORMAT_VERSION,
  DuckDBMaterializer,
  type DuckDBMaterializerOptions,
} from './engines/duckdb/duckdb-materializer.js';
export { duckdbSource } from './engines/duckdb/duckdb-source.js';

registerFrameAdapter(duckdbAdapter);
