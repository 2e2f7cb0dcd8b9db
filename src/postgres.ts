/**
 * The PostgreSQL store, and PostgreSQL as a source of SQL features. Needs the optional peer
 * dependencies `pg` and `pg-copy-streams`.
 * @module
 */

export {
  POSTGRES_FORMAT_VERSION,
  PostgresMaterializer,
  type PostgresMaterializerOptions,
} from './engines/postgres/materializer.js';
export {
  type PostgresSource,
  type PostgresSourceOptions,
  postgresSource,
} from './engines/postgres/source.js';
