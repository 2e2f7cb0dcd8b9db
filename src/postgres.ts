/**
 * The PostgreSQL store, and PostgreSQL as a source of SQL features. Needs the optional peer
 * dependencies `pg` and `pg-copy-streams`.
 * @module
 */
export {
  type PostgresSource,
  type PostgresSourceOptions,
  postgresSource,
} from './frame/postgres/postgres-source.js';
export {
  POSTGRES_FORMAT_VERSION,
  PostgresMaterializer,
  type PostgresMaterializerOptions,
} from './materializer/postgres/postgres-materializer.js';
