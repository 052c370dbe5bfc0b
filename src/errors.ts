import type { z } from 'zod';

/**
 * Mayfly's own errors (outside the OAuth protocol, whose errors belong to oidc-provider): a stable `code` that
 * programs match on and a message a human can act on. Never carries a secret or a token value.
 */
export const ERROR_CODES = {
  invalid_input: 400,
  invalid_json: 400,
  scope_not_defined: 400,
  token_required: 401,
  invalid_token: 401,
  invalid_dpop_proof: 401,
  use_dpop_nonce: 401,
  insufficient_scope: 403,
  not_found: 404,
  resource_not_found: 404,
  client_not_found: 404,
  key_not_found: 404,
  method_not_allowed: 405,
  resource_exists: 409,
  resource_in_use: 409,
  resource_reserved: 409,
  scope_in_use: 409,
  last_admin_client: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  temporarily_unavailable: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface ErrorDetail {
  path: string;
  message: string;
}

/** Parses untrusted input with a zod schema; every problem is named in one `invalid_input` error. */
export function parseInput<S extends z.ZodType>(schema: S, input: unknown): z.output<S> {
  const parsed = schema.safeParse(input);
  if (parsed.success) return parsed.data;
  const details = parsed.error.issues.map((issue) => ({
    path: issue.path.join('.'),
    message: issue.message,
  }));
  const summary = details.map((d) => (d.path ? `${d.path}: ${d.message}` : d.message)).join('; ');
  throw new MayflyError('invalid_input', summary, details);
}

/** Postgres text cannot hold U+0000: refused here with a clear error rather than failing in the database. */
export function refuseNul(value: unknown, where: string): void {
  if (containsNul(value)) {
    throw new MayflyError('invalid_input', `${where}: text must not contain NUL (U+0000) characters`, [
      { path: where, message: 'contains a NUL character' },
    ]);
  }
}

export function containsNul(value: unknown): boolean {
  if (typeof value === 'string') return value.includes('\0');
  if (Array.isArray(value)) return value.some(containsNul);
  if (typeof value === 'object' && value !== null) {
    return Object.entries(value).some(([key, member]) => key.includes('\0') || containsNul(member));
  }
  return false;
}

export class MayflyError extends Error {
  override name = 'MayflyError';
  readonly status: number;
  readonly code: ErrorCode;
  readonly details: ErrorDetail[];
  /** Response headers the error calls for (WWW-Authenticate, Allow). */
  readonly headers: Readonly<Record<string, string>>;

  constructor(
    code: ErrorCode,
    message: string,
    details: ErrorDetail[] = [],
    headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.code = code;
    this.status = ERROR_CODES[code];
    this.details = details;
    this.headers = headers;
  }

  toJSON() {
    return {
      code: this.code,
      message: this.message,
      ...(this.details.length ? { details: this.details } : {}),
    };
  }
}
