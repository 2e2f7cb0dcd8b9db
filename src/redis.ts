/**
 * The Redis online store: serving reads from a shared server, in one round trip. Needs the
 * optional peer dependency `ioredis`.
 * @module
 */
export { RedisOnlineStore, type RedisOnlineStoreOptions } from './engines/redis/redis-online-store.js';
export type {
  OnlineKey,
  OnlineKeyValue,
  OnlineMaterialization,
  OnlinePublication,
  OnlineSource,
  OnlineStore,
} from './online/online-store.js';
