/**
 * The errors of the registration endpoints, answered as RFC 7591 §3.2.2 JSON: `{error, error_description}`.
 * The description is meant for the developer of the client: it names the member and the rule it broke.
 * @see RFC 7591 §3.2.2, RFC 7592 §2, RFC 6750 §3.1
 */
export type RegistrationErrorCode =
  | 'invalid_client_metadata'
  | 'invalid_redirect_uri'
  | 'unapproved_software_statement'
  | 'invalid_token'
  | 'invalid_request';

export class RegistrationError extends Error {
  override name = 'RegistrationError';
  readonly status: number;
  readonly code: RegistrationErrorCode;
  readonly headers: Readonly<Record<string, string>>;

  constructor(
    code: RegistrationErrorCode,
    message: string,
    status = 400,
    headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.code = code;
    this.status = status;
    this.headers = headers;
  }

  toJSON() {
    return { error: this.code, error_description: this.message };
  }
}

export function invalidMetadata(message: string): RegistrationError {
  return new RegistrationError('invalid_client_metadata', message);
}

/**
 * Unknown, expired, used up, revoked: one answer for all, so that a caller learns nothing about which tokens
 * exist; the audit line says which it was.
 */
export function invalidToken(message: string): RegistrationError {
  return new RegistrationError('invalid_token', message, 401, {
    'WWW-Authenticate': 'Bearer error="invalid_token"',
  });
}
