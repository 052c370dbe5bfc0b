import type { Logger } from './logger.ts';

/** Fields common to every access attempt on a protocol endpoint. Never a secret, proof or token value. */
interface AccessAttempt {
  outcome: 'success' | 'failure';
  /** The authenticated client, or the client id it claimed when authentication failed. */
  client_id: string | undefined;
  ip: string;
  /** OAuth error code and the precise reason, on failure. */
  error?: string | undefined;
  reason?: string | undefined;
  /** Present and true when the client is exempt from DPoP: the exception must stay visible. */
  bearer_allowed?: true | undefined;
}

export interface TokenAttempt extends AccessAttempt {
  resource: string | undefined;
  scopes: string[] | undefined;
  jkt: string | undefined;
  token_type: 'DPoP' | 'Bearer' | undefined;
  token_format?: 'jwt' | 'opaque' | undefined;
  expires_in?: number | undefined;
}

export interface IntrospectionAttempt extends AccessAttempt {
  /** Whether the caller learned the token is active. */
  active: boolean;
  /** The token's own client, audience, scopes and key binding, when it was found. */
  token_client_id?: string | undefined;
  resource?: string | undefined;
  scopes?: string[] | undefined;
  jkt?: string | undefined;
}

export interface RevocationAttempt extends AccessAttempt {
  revoked: boolean;
  token_client_id?: string | undefined;
  resource?: string | undefined;
  scopes?: string[] | undefined;
  jkt?: string | undefined;
}

export interface AdminChangeRecord {
  id: string;
  occurred_at: string;
  actor: string;
  action: string;
  target_type: string;
  target_id: string;
  before: object | null;
  after: object | null;
}

export interface AdminRequestAttempt {
  outcome: 'success' | 'failure';
  method: string;
  path: string;
  ip: string;
  status: number;
  /** The admin client, once its token was verified. */
  client_id: string | undefined;
  error?: string | undefined;
  reason?: string | undefined;
}

/** A step of the backoff applied to repeated failed authentication of one client id from one address. */
export interface AuthFailureBackoff {
  step: 'slowed' | 'blocked';
  client_id: string;
  ip: string;
  /** Failures counted in the window, this one included. */
  failures: number;
  delay_ms?: number;
  blocked_for_s?: number;
}

/** Unusual behaviour of one client (see src/abuse/anomaly-detector.ts). */
export interface AnomalyRecord {
  client_id: string;
  kind: string;
  window_seconds: number;
  observed: number;
  threshold: number;
  baseline: number | null;
  description: string;
}

/** One logger per business event, so every audit line of a kind has the same shape. */
export function createAudit(log: Logger) {
  const audit = log.child({ component: 'audit' });
  const level = (attempt: AccessAttempt) => (attempt.outcome === 'success' ? 'info' : 'warn');
  return {
    tokenRequest(attempt: TokenAttempt) {
      audit[level(attempt)]({ event: 'token', ...attempt }, `token ${attempt.outcome}`);
    },
    introspection(attempt: IntrospectionAttempt) {
      audit[level(attempt)]({ event: 'introspection', ...attempt }, `introspection ${attempt.outcome}`);
    },
    revocation(attempt: RevocationAttempt) {
      audit[level(attempt)]({ event: 'revocation', ...attempt }, `revocation ${attempt.outcome}`);
    },
    authFailureBackoff(step: AuthFailureBackoff) {
      audit.warn(
        { event: 'auth_failure_backoff', ...step },
        step.step === 'blocked' ? 'client authentication blocked' : 'client authentication slowed',
      );
    },
    anomaly(record: AnomalyRecord) {
      audit.warn({ event: 'anomaly', ...record }, `anomaly ${record.kind}`);
    },
    /** A committed admin change; the same record is stored in `audit_event`. */
    adminChange(change: AdminChangeRecord) {
      audit.info({ event: 'admin_change', ...change }, `admin ${change.action}`);
    },
    /** Every admin API request: who tried what, and on failure why it was refused. */
    adminRequest(attempt: AdminRequestAttempt) {
      audit[attempt.outcome === 'success' ? 'info' : 'warn'](
        { event: 'admin_request', ...attempt },
        `admin request ${attempt.outcome}`,
      );
    },
  };
}

export type Audit = ReturnType<typeof createAudit>;
