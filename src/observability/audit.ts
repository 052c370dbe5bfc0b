import { flatRecordLogger, type Logger } from './logger.ts';

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

/** A sign-in attempt at the web console; the password and code never appear. */
export interface ConsoleSignIn {
  outcome: 'success' | 'failure';
  /** The user signing in, when the name given is a user's. */
  user?: string | undefined;
  /** A name that is no user's, as the start of its SHA-256 (it may be a password typed in the wrong field). */
  unknown_user?: string | undefined;
  ip: string;
  reason?: string | undefined;
}

/** A request of a signed-in console user (or one refused for want of a session or a valid form token). */
export interface ConsoleRequestAttempt {
  outcome: 'success' | 'failure';
  method: string;
  path: string;
  ip: string;
  status: number;
  user: string | undefined;
  error?: string | undefined;
  reason?: string | undefined;
}

/** A refused request at a protocol endpoint, as the overview of the console lists the latest ones. */
export interface Denial {
  at: string;
  endpoint: 'token' | 'introspection' | 'revocation';
  client_id: string | undefined;
  ip: string;
  error: string | undefined;
  reason: string | undefined;
}

/** Denials kept in memory per instance for the console's overview; the log has every one. */
const RECENT_DENIALS = 50;

/** One logger per business event, so every audit line of a kind has the same shape. */
export function createAudit(log: Logger) {
  const audit = log.child({ component: 'audit' });
  // Access attempts are flat records (see AccessAttempt), written for every protocol request.
  const attempts = flatRecordLogger(log, { component: 'audit' });
  const level = (attempt: AccessAttempt) => (attempt.outcome === 'success' ? 'info' : 'warn');
  const level2 = (outcome: 'success' | 'failure') => (outcome === 'success' ? 'info' : 'warn');
  const denials: Denial[] = [];
  const remember = (endpoint: Denial['endpoint'], attempt: AccessAttempt) => {
    if (attempt.outcome !== 'failure') return;
    const { client_id, ip, error, reason } = attempt;
    denials.unshift({ at: new Date().toISOString(), endpoint, client_id, ip, error, reason });
    if (denials.length > RECENT_DENIALS) denials.pop();
  };
  return {
    /** The latest refused protocol requests seen by this instance, newest first. */
    recentDenials(): readonly Denial[] {
      return [...denials];
    },
    tokenRequest(attempt: TokenAttempt) {
      remember('token', attempt);
      attempts[level(attempt)]({ event: 'token', ...attempt }, `token ${attempt.outcome}`);
    },
    introspection(attempt: IntrospectionAttempt) {
      remember('introspection', attempt);
      attempts[level(attempt)]({ event: 'introspection', ...attempt }, `introspection ${attempt.outcome}`);
    },
    revocation(attempt: RevocationAttempt) {
      remember('revocation', attempt);
      attempts[level(attempt)]({ event: 'revocation', ...attempt }, `revocation ${attempt.outcome}`);
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
    consoleSignIn(attempt: ConsoleSignIn) {
      audit[level2(attempt.outcome)](
        { event: 'console_sign_in', ...attempt },
        `console sign-in ${attempt.outcome}`,
      );
    },
    consoleRequest(attempt: ConsoleRequestAttempt) {
      audit[level2(attempt.outcome)](
        { event: 'console_request', ...attempt },
        `console request ${attempt.outcome}`,
      );
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
