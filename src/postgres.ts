/**
 * The PostgreSQL store. Needs the optional peer dependencies `pg` and `pg-copy-streams`.
 * @module
 */
export {
  POSTGRES_FORMAT_VERSION,
  PostgresMaterializer,
  type PostgresMaterializerOptions,
} from './materializer/postgres/postgres-materializer.js';
