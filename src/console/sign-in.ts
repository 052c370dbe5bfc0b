import { createHash, createHmac } from 'node:crypto';

import type { Context } from 'koa';

import { addressKey } from '../abuse/protocol-guard.ts';
import type { Refusal } from '../abuse/rate-limits.ts';
import type { AdminUserRow } from '../db/tables/admin-user.table.ts';
import { MayflyError } from '../errors.ts';
import { UnsealError } from '../keys/envelope.ts';
import { signInPage } from '../../views/sign-in.ts';
import {
  claimTotpStep,
  findAdminUser,
  openTotpSecret,
  recordTotpFailure,
  resetTotpFailures,
  TOTP_LOCK_AFTER,
} from './admin-user.service.ts';
import type { ConsoleDeps } from './console.ts';
import {
  CONSOLE_PREFIX,
  consoleCookie,
  isSameOriginPost,
  readCookie,
  readForm,
  sameToken,
  setCookie,
} from './http.ts';
import { verifyPassword } from './password.ts';
import { createSession, deleteSession, findSession, newSecret, purgeSessions } from './sessions.ts';
import { matchTotp } from './totp.ts';

export const SIGN_IN_PATH = '/sign-in';
const FORM_COOKIE_SECONDS = 3600;
/** How long a browser stays known for the user who signed in with it. */
const DEVICE_COOKIE_SECONDS = 30 * 86_400;
/**
 * Password checks running at once, at most: each costs 32 MiB and a thread of the pool that other crypto and DNS
 * share, so a flood of sign-ins from many addresses is answered 503 rather than starving the token endpoint.
 */
const MAX_CONCURRENT_CHECKS = 8;

/** One message for every wrong credential, so a failed sign-in does not tell which part was wrong. */
const WRONG = 'The user name, password or authentication code is not right.';

const NOTICES: Readonly<Record<string, string>> = {
  ended: 'Your session has ended. Sign in again to continue.',
  signed_out: 'You have signed out.',
};

/**
 * A name typed at sign-in that names no user is logged as a short hash only: people sometimes type their password
 * into the name field.
 */
function loggedName(name: string, row: AdminUserRow | undefined): { user?: string; unknown_user?: string } {
  return row
    ? { user: row.name }
    : { unknown_user: createHash('sha256').update(name).digest('hex').slice(0, 16) };
}

/**
 * Sign-in: a user name, a password and, for users with a second factor, a TOTP code.
 *
 * - Attempts are limited per source address (IPv6 by /64) and per user name before any password is checked. The
 *   per-user limit does not apply in a browser the user signed in with before (a signed "device" cookie): others
 *   spending it cannot lock the user out of a known browser.
 * - Repeated failures for one user from one address are slowed, then blocked (the protocol endpoints' backoff).
 * - After TOTP_LOCK_AFTER wrong codes in a row following the right password, the second factor locks until an
 *   administrator enrols a new one.
 */
export function signInPages(deps: ConsoleDeps) {
  const limits = deps.limits;
  let checksInFlight = 0;
  const path = `${CONSOLE_PREFIX}${SIGN_IN_PATH}`;
  const formCookie = consoleCookie(deps.issuer, 'mayfly-console-sign-in', path);
  const deviceCookie = consoleCookie(deps.issuer, 'mayfly-console-device', path);
  const sessionCookie = consoleCookie(deps.issuer, 'mayfly-console', CONSOLE_PREFIX);

  const deviceMac = (name: string, issued: number) =>
    createHmac('sha256', deps.deviceKey).update(`${name}\n${issued}`).digest('base64url');

  /** Whether the browser holds a device cookie for `name`, issued less than DEVICE_COOKIE_SECONDS ago. */
  function knownDevice(ctx: Context, name: string): boolean {
    const [encoded, issuedText, mac] = (readCookie(ctx, deviceCookie) ?? '').split('.');
    if (!encoded || !issuedText || !mac || !/^\d{1,12}$/.test(issuedText)) return false;
    const issued = Number(issuedText);
    const age = deps.clock.now().getTime() / 1000 - issued;
    return (
      Buffer.from(encoded, 'base64url').toString('utf8') === name &&
      age >= 0 &&
      age < DEVICE_COOKIE_SECONDS &&
      sameToken(mac, deviceMac(name, issued))
    );
  }

  function show(ctx: Context, options: { user?: string; error?: string; status?: number }): void {
    // A second tab keeps working: the form token of the browser is reused while it lasts.
    const current = readCookie(ctx, formCookie);
    const formToken = current !== undefined && /^[\w-]{43}$/.test(current) ? current : newSecret();
    setCookie(ctx, formCookie, formToken, FORM_COOKIE_SECONDS);
    const notice = Object.keys(NOTICES).find((name) => ctx.query[name] === '1');
    ctx.status = options.status ?? 200;
    ctx.type = 'text/html; charset=utf-8';
    ctx.body = signInPage({
      csrf: formToken,
      user: options.user ?? '',
      error: options.error,
      notice: notice === undefined ? undefined : NOTICES[notice],
    }).value;
  }

  function refuse(ctx: Context, logged: object, refusal: Refusal, reason: string, user: string): void {
    ctx.set('Retry-After', String(refusal.retryAfterSeconds));
    deps.audit.consoleSignIn({ outcome: 'failure', ...logged, ip: ctx.ip, reason });
    show(ctx, {
      user,
      status: 429,
      error: `Too many sign-in attempts. Wait ${refusal.retryAfterSeconds} seconds, then try again.`,
    });
  }

  /** Why the credentials do not sign `row` in, or undefined when they do. */
  async function check(
    row: AdminUserRow | undefined,
    password: string,
    code: string,
  ): Promise<string | undefined> {
    const passwordOk = await verifyPassword(password, row?.password_hash);
    if (!row) return 'no such user';
    if (!passwordOk) return 'wrong password';
    if (row.disabled_at) return 'user disabled';
    if (row.totp_secret === null) return undefined;
    if (row.totp_failures >= TOTP_LOCK_AFTER) return 'second factor locked';
    let secret: Buffer;
    try {
      secret = openTotpSecret(deps.admin.keks, row.name, row.totp_secret);
    } catch (error) {
      if (!(error instanceof UnsealError)) throw error;
      deps.log.error({ err: error, user: row.name }, 'the TOTP secret of a console user does not open');
      return 'second factor unreadable: sealed with a KEK this server does not have';
    }
    const lastStep = row.totp_last_step === null ? null : Number(row.totp_last_step);
    const step = matchTotp(secret, code.replace(/\s/g, ''), deps.clock.now(), lastStep);
    if (step !== undefined && (await claimTotpStep(deps.admin.db, row.name, step))) return undefined;
    const failures = await recordTotpFailure(deps.admin.db, row.name);
    if (failures >= TOTP_LOCK_AFTER) {
      deps.log.warn(
        { event: 'console_second_factor_locked', user: row.name, failures },
        'console second factor locked after repeated wrong codes',
      );
      return 'second factor locked';
    }
    return code ? 'wrong or reused authentication code' : 'authentication code missing';
  }

  return async function signIn(ctx: Context): Promise<void> {
    if (ctx.method === 'GET' || ctx.method === 'HEAD') {
      show(ctx, {});
      return;
    }
    if (ctx.method !== 'POST') {
      throw new MayflyError('method_not_allowed', `${ctx.method} is not allowed here`, [], {
        Allow: 'GET, POST',
      });
    }
    const ip = ctx.ip;
    const address = addressKey(ip);
    const form = await readForm(ctx);
    const field = (name: string) => {
      const value = form[name];
      return typeof value === 'string' ? value : '';
    };
    const user = field('user').trim().toLowerCase().slice(0, 64);
    const cookieToken = readCookie(ctx, formCookie);
    if (
      cookieToken === undefined ||
      !sameToken(field('_csrf'), cookieToken) ||
      !isSameOriginPost(ctx, deps.issuer)
    ) {
      deps.audit.consoleSignIn({ outcome: 'failure', ip, reason: 'sign-in form token missing or stale' });
      show(ctx, {
        user,
        status: 403,
        error: 'This sign-in form has expired or was not sent from this page. Try again with the form below.',
      });
      return;
    }
    if (!user || !field('password')) {
      deps.audit.consoleSignIn({ outcome: 'failure', ip, reason: 'user name or password missing' });
      show(ctx, { user, status: 400, error: 'Enter your user name and password.' });
      return;
    }

    const byAddress = await limits.consume(
      'console-sign-in-address',
      address,
      deps.settings.signInPerAddress,
      { exact: true },
    );
    const row = byAddress ? undefined : await findAdminUser(deps.admin.db, user);
    const logged = loggedName(user, row);
    if (byAddress) {
      refuse(ctx, logged, byAddress, 'too many sign-in attempts from this address', user);
      return;
    }
    if (!knownDevice(ctx, user)) {
      const byUser = await limits.consume('console-sign-in-user', user, deps.settings.signInPerUser, {
        exact: true,
      });
      if (byUser) {
        refuse(ctx, logged, byUser, 'too many sign-in attempts for this user', user);
        return;
      }
    }
    const failureKey = `console:${user}`;
    const blocked = await limits.blockedAfterFailures(failureKey, address);
    if (blocked) {
      refuse(ctx, logged, blocked, 'blocked after repeated failures', user);
      return;
    }

    if (checksInFlight >= MAX_CONCURRENT_CHECKS) {
      deps.audit.consoleSignIn({ outcome: 'failure', ...logged, ip, reason: 'too many sign-ins at once' });
      ctx.set('Retry-After', '1');
      show(ctx, { user, status: 503, error: 'The server is busy signing others in. Try again in a moment.' });
      return;
    }
    // The session counts from the moment the credentials were read (see createSession).
    const checkedAt = deps.clock.now();
    checksInFlight += 1;
    let reason: string | undefined;
    try {
      reason = await check(row, field('password'), field('code'));
    } finally {
      checksInFlight -= 1;
    }
    if (reason !== undefined || !row) {
      const outcome = await limits.recordFailure(failureKey, address);
      deps.audit.consoleSignIn({ outcome: 'failure', ...logged, ip, reason: reason ?? 'no such user' });
      if (outcome.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, outcome.delayMs));
      show(ctx, { user, status: 401, error: WRONG });
      return;
    }

    if (row.totp_failures > 0) await resetTotpFailures(deps.admin.db, row.name);
    // Sessions are only created here, so ended ones are cleared here too: the table stays as small as its use.
    await purgeSessions(deps.admin.db, deps.clock.now(), deps.settings.idleTimeout);
    // A browser signing in again leaves its previous session behind: that one ends now.
    const previous = readCookie(ctx, sessionCookie);
    if (previous !== undefined) {
      const old = await findSession(deps.admin.db, previous, deps.clock.now(), deps.settings.idleTimeout);
      if (old) await deleteSession(deps.admin.db, old.idHash);
    }
    // A new session id on every sign-in: an id known before signing in is worth nothing after.
    const session = await createSession(deps.admin.db, row.name, checkedAt, deps.settings.sessionLifetime);
    setCookie(ctx, sessionCookie, session.id);
    setCookie(ctx, formCookie, '', 0);
    const issued = Math.floor(deps.clock.now().getTime() / 1000);
    const device = `${Buffer.from(row.name).toString('base64url')}.${issued}.${deviceMac(row.name, issued)}`;
    setCookie(ctx, deviceCookie, device, DEVICE_COOKIE_SECONDS);
    deps.audit.consoleSignIn({ outcome: 'success', user: row.name, ip });
    ctx.status = 303;
    ctx.redirect(CONSOLE_PREFIX);
  };
}
