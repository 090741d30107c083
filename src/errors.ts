/** Stable error codes for configuration, policy, certificate and store errors (after jose's JOSEErrorCode). */
export type BulwarkErrorCode =
  | 'BULWARK_ERR_CONFIG_PARSE'
  | 'BULWARK_ERR_CONFIG_INVALID'
  | 'BULWARK_ERR_POLICY_PARSE'
  | 'BULWARK_ERR_POLICY_INVALID'
  | 'BULWARK_ERR_POLICY_CASES'
  /** Any credential file: password (argon2id), SCRAM and TLS-PSK files. */
  | 'BULWARK_ERR_PASSWORD_FILE'
  | 'BULWARK_ERR_CERT'
  | 'BULWARK_ERR_STORE_CORRUPT'
  | 'BULWARK_ERR_AUDIT'
  | 'BULWARK_ERR_LISTEN';

export interface SourcePosition {
  file: string;
  line: number;
  column: number;
}

export class BulwarkError extends Error {
  override readonly name = 'BulwarkError';
  constructor(
    readonly code: BulwarkErrorCode,
    message: string,
    readonly position?: SourcePosition,
    readonly hint?: string,
  ) {
    super(message);
  }

  /** `file:line:column: message (hint)`, the form editors and CI annotations understand. */
  describe(): string {
    const where = this.position ? `${this.position.file}:${this.position.line}:${this.position.column}: ` : '';
    return `${where}${this.message}${this.hint ? ` (${this.hint})` : ''}`;
  }
}
