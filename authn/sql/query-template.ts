import { BulwarkError } from '../../src/errors.js';
import type { ConnectAttempt } from '../types.js';

export const PLACEHOLDERS = ['username', 'clientid', 'peerhost', 'cert_cn'] as const;
export type Placeholder = (typeof PLACEHOLDERS)[number];

export interface CompiledQuery {
  /** The SQL with each `${name}` replaced by the dialect's bind marker (`$1` or `?`). */
  text: string;
  /** Which attempt field binds to each marker, in order. */
  params: readonly Placeholder[];
}

/**
 * Turns `${username}`-style placeholders into bind parameters. Values are never spliced into the SQL text,
 * so a username like `x' OR '1'='1` is only ever compared as data.
 */
export function compileQuery(sql: string, dialect: 'postgres' | 'mysql'): CompiledQuery {
  const params: Placeholder[] = [];
  const text = sql.replace(/\$\{([^}]*)\}/g, (whole: string, raw: string, offset: number) => {
    const name = raw.trim();
    if (!(PLACEHOLDERS as readonly string[]).includes(name)) {
      throw new BulwarkError(
        'BULWARK_ERR_CONFIG_INVALID',
        `query uses unknown placeholder \${${name}}`,
        undefined,
        `use one of ${PLACEHOLDERS.map((p) => `\${${p}}`).join(', ')}`,
      );
    }
    // Quoted, the marker would be a string literal ('$1'): the value never bound, every lookup failing or
    // comparing with the literal text. Refused, as the ACL sources refuse it.
    const before = sql[offset - 1];
    const after = sql[offset + whole.length];
    if (before === "'" || before === '"' || after === "'" || after === '"') {
      throw new BulwarkError(
        'BULWARK_ERR_CONFIG_INVALID',
        `do not quote ${whole}: it is sent as a query parameter`,
        undefined,
        'remove the quotes around it',
      );
    }
    params.push(name as Placeholder);
    return dialect === 'postgres' ? `$${params.length}` : '?';
  });
  if (!params.includes('username') && !params.includes('clientid') && !params.includes('cert_cn')) {
    throw new BulwarkError(
      'BULWARK_ERR_CONFIG_INVALID',
      'query must select by ${username}, ${clientid} or ${cert_cn}',
      undefined,
      'a query without an identity placeholder would return the same row for every client',
    );
  }
  return { text, params };
}

/** Bind values for one attempt; an absent value binds NULL, which matches no row in `col = $1`. */
export function bindValues(query: CompiledQuery, attempt: ConnectAttempt): (string | null)[] {
  return query.params.map((p) => {
    switch (p) {
      case 'username':
        return attempt.username ?? null;
      case 'clientid':
        return attempt.clientId;
      case 'peerhost':
        return attempt.peer.address;
      case 'cert_cn':
        return attempt.tls?.certificate?.subjectCn ?? null;
    }
  });
}
