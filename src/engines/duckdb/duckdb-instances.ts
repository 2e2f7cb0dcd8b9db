import { realpathSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';

/**
 * One DuckDB instance per database file in this process. DuckDB does not lock a file against a
 * second open in the same process: two instances on one file each keep their own view of it, and
 * whichever writes last overwrites the other's publications. Every `DuckDBMaterializer({ path })`
 * on a file therefore shares one instance, closed when the last of them closes.
 */
const open = new Map<string, { instance: Promise<DuckDBInstance>; users: number }>();

/** A shared instance on `path` and the function that gives it back (call it once). @internal */
export async function acquireInstance(
  path: string,
  options: Record<string, string>,
): Promise<{ instance: DuckDBInstance; release: () => void }> {
  // An in-memory database is private to the instance that opens it: never shared.
  if (path === ':memory:' || path === '') {
    const instance = await DuckDBInstance.create(path, options);
    return { instance, release: () => instance.closeSync() };
  }
  const file = canonicalPath(path);
  let entry = open.get(file);
  if (entry === undefined) {
    const created = { instance: DuckDBInstance.create(path, options), users: 0 };
    open.set(file, created);
    created.instance.catch(() => {
      if (open.get(file) === created) open.delete(file);
    });
    entry = created;
  }
  entry.users++;
  const held = entry;
  let instance: DuckDBInstance;
  try {
    instance = await held.instance;
  } catch (error) {
    held.users--;
    throw error;
  }
  let released = false;
  return {
    instance,
    release: () => {
      if (released) return;
      released = true;
      if (--held.users > 0) return;
      if (open.get(file) === held) open.delete(file);
      instance.closeSync();
    },
  };
}

/** The file's absolute path, through symbolic links of its folder (the file may not exist yet). */
function canonicalPath(path: string): string {
  const absolute = resolve(path);
  try {
    return realpathSync(absolute);
  } catch {
    try {
      return join(realpathSync(dirname(absolute)), basename(absolute));
    } catch {
      return absolute;
    }
  }
}
