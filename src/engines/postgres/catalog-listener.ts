import type { ClientBase, Notification } from 'pg';
import { quoteIdentifier } from './dialect.js';

/** A connection the listener holds, and how to give it up. @internal */
export interface ListenerConnection {
  readonly client: ClientBase;
  /** Closes the connection (never returns it to a pool: it is LISTENing). */
  close(): Promise<void>;
}

/** Options of {@link CatalogListener}. @internal */
export interface CatalogListenerOptions {
  /** The channel to `LISTEN` on (already a valid name). */
  readonly channel: string;
  /** Opens a dedicated connection. */
  readonly connect: () => Promise<ListenerConnection>;
  /** Called with each notification's payload. */
  readonly onNotification: (payload: string | undefined) => void;
  /**
   * Called when notifications may have been missed: the connection dropped, and again once it
   * is back (whatever was published in between was not announced to this process).
   */
  readonly onGap: () => void;
  /** Called with the error that broke the connection, or a failed reconnection. */
  readonly onError: (error: unknown) => void;
  /** First reconnection delay in ms, doubled up to 5 s. Default is 100. */
  readonly retryMs?: number;
}

/**
 * Holds one connection that `LISTEN`s on the store's channel, so a process learns when another
 * one publishes. Reconnects by itself with backoff when the connection drops.
 * @internal
 */
export class CatalogListener {
  readonly #options: CatalogListenerOptions;
  #current: ListenerConnection | undefined;
  #timer: NodeJS.Timeout | undefined;
  #attempt = 0;
  #stopped = false;

  constructor(options: CatalogListenerOptions) {
    this.#options = options;
  }

  /** Connects and starts listening; rejects if the first connection fails. */
  async start(): Promise<void> {
    if (this.#current !== undefined || this.#stopped) return;
    await this.#connect();
  }

  /** Stops listening and closes the connection. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    const current = this.#current;
    this.#current = undefined;
    await current?.close().catch(() => undefined);
  }

  async #connect(): Promise<void> {
    const connection = await this.#options.connect();
    const { client } = connection;
    let lost = false;
    const onLost = (error?: Error) => {
      if (lost) return;
      if (!this.#stopped) this.#options.onError(error ?? new Error('the listening connection ended'));
      lost = true;
      client.off('notification', onNotification);
      if (this.#current === connection) this.#current = undefined;
      connection.close().catch(() => undefined);
      if (this.#stopped) return;
      this.#options.onGap();
      this.#schedule();
    };
    const onNotification = (message: Notification) => this.#options.onNotification(message.payload);
    // Keep the error listener for the client's whole life: a late 'error' with none would crash the process.
    client.on('error', onLost);
    client.on('end', () => onLost());
    client.on('notification', onNotification);
    try {
      await client.query(`LISTEN ${quoteIdentifier(this.#options.channel)}`);
    } catch (error) {
      lost = true;
      await connection.close().catch(() => undefined);
      throw error;
    }
    if (this.#stopped) {
      lost = true;
      await connection.close().catch(() => undefined);
      return;
    }
    this.#current = connection;
    this.#attempt = 0;
  }

  #schedule(): void {
    const delay = Math.min(5000, (this.#options.retryMs ?? 100) * 2 ** this.#attempt);
    this.#attempt++;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#stopped) return;
      this.#connect().then(
        () => {
          // Whatever was published while disconnected was not announced here.
          if (this.#current !== undefined) this.#options.onGap();
        },
        (error: unknown) => {
          this.#options.onError(error);
          this.#schedule();
        },
      );
    }, delay);
    // A listener waiting to reconnect must not keep the process alive by itself.
    this.#timer.unref();
  }
}
