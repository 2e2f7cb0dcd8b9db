/**
 * The embedded DuckDB store. Needs the optional peer dependency `@duckdb/node-api`.
 * @module
 */

export { duckdbSource } from './frame/duckdb/duckdb-source.js';
export {
  DUCKDB_FORMAT_VERSION,
  DuckDBMaterializer,
  type DuckDBMaterializerOptions,
} from './materializer/duckdb/duckdb-materializer.js';
