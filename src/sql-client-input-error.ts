/**
 * MySQL/MariaDB errors a value can cause in a query that is otherwise sound: the user name or client id holds
 * characters the column's character set or collation cannot compare (a latin1 table asked about `ユーザー`), or
 * does not fit.
 */
const MYSQL_INPUT_ERRORS: ReadonlySet<string> = new Set([
  'ER_CANT_AGGREGATE_2COLLATIONS',
  'ER_CANT_AGGREGATE_3COLLATIONS',
  'ER_CANT_AGGREGATE_NCOLLATIONS',
  'ER_COLLATION_CHARSET_MISMATCH',
  'ER_INVALID_CHARACTER_STRING',
  'ER_CANNOT_CONVERT_STRING',
  'ER_TRUNCATED_WRONG_VALUE',
  'ER_TRUNCATED_WRONG_VALUE_FOR_FIELD',
  'ER_DATA_TOO_LONG',
]);

/**
 * True when the database refused the query because of a value the client supplied, not because it is unwell: an
 * SQLSTATE of class 22 (data exception: untranslatable character, invalid byte sequence, string too long) or one of
 * MySQL's character-set and collation errors. Such a refusal is the client's problem: a deny, never a count
 * against the backend's circuit breaker (authentication) and never a source failure that `on_error` could turn
 * into "ask the next source" (the SQL authorization source). Everything else (unreachable, timeout, the service
 * account refused, syntax errors in the configured query, server errors) stays a backend failure.
 *
 * Shared by the SQL authentication step, the SCRAM SQL store and the SQL authorization source.
 */
export function isClientInputError(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const { code, sqlState } = error as { code?: unknown; sqlState?: unknown };
  // pg puts the SQLSTATE in `code`; mysql2 puts its symbolic name there and the SQLSTATE in `sqlState`.
  const state = typeof sqlState === 'string' ? sqlState : typeof code === 'string' ? code : '';
  if (/^22[0-9A-Z]{3}$/.test(state)) return true;
  return typeof code === 'string' && MYSQL_INPUT_ERRORS.has(code);
}
