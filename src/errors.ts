/**
 * Mayfly's own errors (outside the OAuth protocol, whose errors belong to oidc-provider): a stable `code` that
 * programs match on and a message a human can act on. Never carries a secret or a token value.
 */
export const ERROR_CODES = {
  invalid_input: 400,
  resource_not_found: 404,
  resource_exists: 409,
  scope_not_defined: 400,
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface ErrorDetail {
  path: string;
  message: string;
}

export class MayflyError extends Error {
  override name = 'MayflyError';
  readonly status: number;
  readonly code: ErrorCode;
  readonly details: ErrorDetail[];

  constructor(code: ErrorCode, message: string, details: ErrorDetail[] = []) {
    super(message);
    this.code = code;
    this.status = ERROR_CODES[code];
    this.details = details;
  }

  toJSON() {
    return {
      code: this.code,
      message: this.message,
      ...(this.details.length ? { details: this.details } : {}),
    };
  }
}
