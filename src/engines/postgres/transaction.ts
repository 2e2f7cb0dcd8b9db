import type { Pool, PoolClient } from 'pg';
import { parse as parseConnectionString } from 'pg-connection-string';

/**
 * A transaction on a pool connection: {@link begin} opens it, `commit()` ends it, and `end()`
 * (always, in a `finally`) rolls back whatever was not committed and gives the connection back,
 * or closes it if it failed. The one place BEGIN, COMMIT, ROLLBACK and release are written.
 * @internal
 */
export class Transaction {
  readonly client: PoolClient;
  #open = false;
  #broken: Error | undefined;
  readonly #onError = (error: Error) => {
    this.#broken ??= error;
  };

  private constructor(client: PoolClient) {
    this.client = client;
    client.on('error', this.#onError);
  }

  /** Sends BEGIN on `client`; on failure closes the connection and rethrows. */
  static async begin(client: PoolClient, statements = ''): Promise<Transaction> {
    const transaction = new Transaction(client);
    try {
      await client.query(`BEGIN;${statements}`);
      transaction.#open = true;
    } catch (error) {
      // Closed, not given back: a session the server ended answers BEGIN with its last message,
      // and pg would still call the connection queryable.
      transaction.#broken ??= error as Error;
      await transaction.end();
      throw error;
    }
    return transaction;
  }

  async commit(): Promise<void> {
    await this.client.query('COMMIT');
    this.#open = false;
  }

  /** Rolls back if still open (also closing its cursors) and releases the connection; never throws. */
  async end(): Promise<void> {
    if (this.#open && this.#broken === undefined) {
      await this.client.query('ROLLBACK').catch((error: Error) => {
        this.#broken = error;
      });
    }
    this.#open = false;
    this.client.off('error', this.#onError);
    // A connection that failed is closed rather than given back to the pool.
    this.client.release(this.#broken);
  }
}

/**
 * Session settings featurefn's connections use, so that what they read does not depend on how the
 * server, database or role is configured: ISO dates (what `pg` and featurefn parse) and
 * shortest-exact floats (`extra_float_digits = 3`; 0 or less would round them). `local` gives the
 * `SET LOCAL` form, which lasts only for the current transaction.
 * @internal
 */
export function sessionSettings(local = false): string {
  const set = local ? 'SET LOCAL' : 'SET';
  return `${set} DateStyle = 'ISO, MDY'; ${set} extra_float_digits = 3`;
}

/**
 * Applies {@link sessionSettings} to every connection `pool` opens from now on, as startup options
 * of the connection (`-c DateStyle=ISO,MDY -c extra_float_digits=3`), so no query is queued before
 * the pool's own. Connections a user's pool opened before, and pools whose connection string sets
 * `options` itself, are covered only where featurefn sets them per transaction.
 * @internal
 */
export function settleSessions(pool: Pool): void {
  const config = (pool as unknown as { options: { options?: string; connectionString?: string } }).options;
  // pg lets `options` in a connection string override the config's: nothing to add to then.
  if (config.connectionString !== undefined && parseConnectionString(config.connectionString).options) return;
  const flags = '-c DateStyle=ISO,MDY -c extra_float_digits=3';
  config.options = config.options ? `${config.options} ${flags}` : flags;
}

/**
 * Gives every connection `pool` opens from now on an `'error'` listener of its own. The server
 * ending a session (a restart, `pg_terminate_backend`) while featurefn holds its connection between
 * queries emits `'error'` outside any query, and an `'error'` event nobody listens to ends the
 * Node process. The holder learns of it from its next query (pg: "not queryable"); an idle
 * connection is still reported by the pool's own `'error'` event.
 * @internal
 */
export function guardConnections(pool: Pool): void {
  pool.on('connect', (client) => {
    client.on('error', () => undefined);
  });
}
