/**
 * Kysely select queries as feature results. Needs the optional peer dependency `kysely` only
 * when a `PostgresMaterializer` gives a stored Kysely feature back as a Kysely query.
 *
 * A feature may return `db.selectFrom(...)...` without running it; featurefn runs it with
 * `execute()` when it materializes or reads live. The adapter is registered by default; this
 * module exports it for tools that list or wrap adapters.
 * @module
 */
export { type KyselySelectLike, kyselyAdapter } from './frame/kysely/kysely-adapter.js';
