/** An error the PostgreSQL server sent: it carries a SQLSTATE `code` and a `severity`. @internal */
export interface ServerError extends Error {
  readonly code: string;
  readonly severity: string;
}

/**
 * True for an error the server sent, recognised by its shape (a five-character SQLSTATE `code`
 * and a `severity`), so it holds whichever copy of `pg` raised it. @internal
 */
export function isServerError(error: unknown, ...codes: string[]): error is ServerError {
  const { code, severity } = (error ?? {}) as { code?: unknown; severity?: unknown };
  return (
    typeof code === 'string' &&
    /^[0-9A-Z]{5}$/.test(code) &&
    typeof severity === 'string' &&
    (codes.length === 0 || codes.includes(code))
  );
}

/** What went wrong with a PostgreSQL call, in words, for error messages. @internal */
export function describeFailure(error: unknown): string {
  if (isServerError(error)) {
    switch (error.code) {
      case '57P01':
        return 'the server ended the connection (an administrator terminated it, or the server is shutting down)';
      case '57P02':
      case '57P03':
        return 'the server is restarting and does not accept connections yet';
      case '3D000':
        return `the database does not exist (${error.message})`;
      case '28P01':
      case '28000':
        return `the server refused the credentials (${error.message})`;
      default:
        return `${error.message} (SQLSTATE ${error.code})`;
    }
  }
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  if (code === 'ECONNREFUSED')
    return `nothing accepts connections there (${String(message)}); is the server running?`;
  if (code === 'ECONNRESET' || code === 'EPIPE') return 'the connection to the server was reset';
  if (typeof message === 'string') {
    if (/Connection terminated|not queryable|terminated unexpectedly/i.test(message)) {
      return `the connection to the server was lost (${message})`;
    }
    return message;
  }
  return String(error);
}

/**
 * True for an error in the query itself (syntax, unknown table or column, a failing cast…), as
 * opposed to the connection or the server: the feature's SQL must change, retrying will not help.
 * @internal
 */
export function isQueryError(error: unknown): error is ServerError {
  if (!isServerError(error)) return false;
  const cls = error.code.slice(0, 2);
  // 08 connection, 53 resources, 57 operator intervention, 58 system, XX internal.
  return !['08', '53', '57', '58', 'XX'].includes(cls);
}

/**
 * True when the connection was lost (the server ended the session, or the socket closed): the
 * statement may or may not have run, so only an idempotent read may be sent again.
 * @internal
 */
export function isConnectionLoss(error: unknown): boolean {
  if (isServerError(error)) return error.code === '57P01' || error.code.startsWith('08');
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  if (code === 'ECONNRESET' || code === 'EPIPE') return true;
  return typeof message === 'string' && /Connection terminated|not queryable/i.test(message);
}
