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
  csrf_token_invalid: 403,
  not_found: 404,
  resource_not_found: 404,
  client_not_found: 404,
  key_not_found: 404,
  admin_user_not_found: 404,
  method_not_allowed: 405,
  resource_exists: 409,
  admin_user_exists: 409,
  form_already_sent: 409,
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

/** A schema's problems with an input, by path (dotted), as errors carry them. */
export function issueDetails(error: z.ZodError): ErrorDetail[] {
  return error.issues.map((issue) => ({ path: issue.path.join('.'), message: issue.message }));
}

/** Every problem `schema` finds in `input`; none when it is valid. */
export function inputProblems(schema: z.ZodType, input: unknown): ErrorDetail[] {
  const parsed = schema.safeParse(input);
  return parsed.success ? [] : issueDetails(parsed.error);
}

/** Parses untrusted input with a zod schema; every problem is named in one `invalid_input` error. */
export function parseInput<S extends z.ZodType>(schema: S, input: unknown): z.output<S> {
  const parsed = schema.safeParse(input);
  if (parsed.success) return parsed.data;
  const details = issueDetails(parsed.error);
  const summary = details.map((d) => (d.path ? `${d.path}: ${d.message}` : d.message)).join('; ');
  throw new MayflyError('invalid_input', summary, details);
}

/** JSON nested deeper than this is refused: no admin input needs more than a few levels. */
const MAX_DEPTH = 32;

type TextProblem = 'nul' | 'surrogate' | 'depth';

const PROBLEMS: Record<TextProblem, [message: string, detail: string]> = {
  nul: ['text must not contain NUL (U+0000) characters', 'contains a NUL character'],
  surrogate: [
    'text must be valid Unicode: an unpaired UTF-16 surrogate (\\uD800-\\uDFFF) cannot be stored as sent',
    'contains an unpaired surrogate',
  ],
  depth: [`nesting deeper than ${MAX_DEPTH} levels is not accepted`, 'nested too deeply'],
};

/**
 * Text that could not be stored as sent, refused with a clear error rather than failing in the database or being
 * silently altered: Postgres text cannot hold U+0000, and an unpaired surrogate would be replaced. Also refuses
 * nesting no input needs. (The name predates the last two checks.)
 */
export function refuseNul(value: unknown, where: string): void {
  const problem = findTextProblem(value);
  if (problem) {
    const [message, detail] = PROBLEMS[problem];
    throw new MayflyError('invalid_input', `${where}: ${message}`, [{ path: where, message: detail }]);
  }
}

export function containsNul(value: unknown): boolean {
  return findTextProblem(value) !== undefined;
}

/** Walks the value without recursion, so no input can exhaust the stack. */
function findTextProblem(value: unknown): TextProblem | undefined {
  const pending: [unknown, number][] = [[value, 0]];
  for (let item = pending.pop(); item !== undefined; item = pending.pop()) {
    const [current, depth] = item;
    if (typeof current === 'string') {
      const problem = textProblem(current);
      if (problem) return problem;
    } else if (typeof current === 'object' && current !== null) {
      if (depth >= MAX_DEPTH) return 'depth';
      for (const [key, member] of Object.entries(current)) {
        if (!Array.isArray(current)) {
          const problem = textProblem(key);
          if (problem) return problem;
        }
        pending.push([member, depth + 1]);
      }
    }
  }
  return undefined;
}

function textProblem(text: string): TextProblem | undefined {
  if (text.includes('\0')) return 'nul';
  if (!text.isWellFormed()) return 'surrogate';
  return undefined;
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
