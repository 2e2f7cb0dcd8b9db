/**
 * The SQLite online store: serving reads in process, in microseconds. Needs the optional peer
 * dependency `better-sqlite3`.
 * @module
 */
export { SqliteOnlineStore, type SqliteOnlineStoreOptions } from './engines/sqlite/sqlite-online-store.js';
export type {
  OnlineKey,
  OnlineKeyValue,
  OnlineMaterialization,
  OnlinePublication,
  OnlineSource,
  OnlineStore,
} from './online/online-store.js';
