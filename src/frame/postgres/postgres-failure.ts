import { DatabaseError } from 'pg';

/** What went wrong with a PostgreSQL call, in words, for error messages. @internal */
export function describeFailure(error: unknown): string {
  if (error instanceof DatabaseError) {
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
        return `${error.message} (SQLSTATE ${error.code ?? 'unknown'})`;
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
export function isQueryError(error: unknown): error is DatabaseError {
  if (!(error instanceof DatabaseError) || error.code === undefined) return false;
  const cls = error.code.slice(0, 2);
  // 08 connection, 53 resources, 57 operator intervention, 58 system, XX internal.
  return !['08', '53', '57', '58', 'XX'].includes(cls);
}
