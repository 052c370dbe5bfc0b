import { createHmac } from 'node:crypto';

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
 * Password checks running at once, at most. Each costs 32 MiB and holds a thread of libuv's pool, which the token
 * endpoint's WebCrypto signing and verification share: two of its threads are always left free (one, for sign-ins
 * from a browser the user signed in with before), and a flood of sign-ins is answered 503 instead.
 */
const POOL_THREADS = Number(process.env.UV_THREADPOOL_SIZE) || 4;
const MAX_CHECKS = Math.max(1, POOL_THREADS - 2);
const MAX_CHECKS_KNOWN_DEVICE = Math.max(1, POOL_THREADS - 1);

/** One message for every wrong credential, so a failed sign-in does not tell which part was wrong. */
const WRONG = 'The user name, password or authentication code is not right.';

const NOTICES: Readonly<Record<string, string>> = {
  ended: 'Your session has ended. Sign in again to continue.',
  signed_out: 'You have signed out.',
};

/** Postgres (and PGlite) SQLSTATE 23503: the referenced row is gone. */
function isForeignKeyViolation(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === '23503';
}

/**
 * Sign-in: a user name, a password and, for users with a second factor, a TOTP code.
 *
 * - Attempts are limited per source address (IPv6 by /64) and per user name before any password is checked. A
 *   browser the user signed in with before (a signed "device" cookie, void once the credentials change or the user
 *   is deleted) has a budget of its own instead of the user's: others spending the user's cannot lock the user out
 *   of it.
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

  const mac = (text: string) => createHmac('sha256', deps.deviceKey).update(text).digest('base64url');

  /**
   * A name typed at sign-in that names no user is logged as a keyed hash only: people sometimes type their password
   * into the name field, and a plain hash of a password could be reversed with a dictionary.
   */
  const loggedName = (name: string, row: AdminUserRow | undefined) =>
    row ? { user: row.name } : { unknown_user: mac(`unknown user\n${name}`).slice(0, 16) };

  /**
   * The device cookie: `<name>.<credentials version>.<issued>.<mac>`. It names the credentials it was earned with,
   * so a new password voids every earlier cookie. The MAC also covers the user's random id, which the cookie does
   * not carry: the version restarts at 0 for a user deleted and created again under the same name, the id does not.
   */
  const deviceValue = (user: Pick<AdminUserRow, 'id' | 'name' | 'credentials_version'>, issued: number) =>
    [
      Buffer.from(user.name).toString('base64url'),
      user.credentials_version,
      issued,
      mac(`device\n${user.id}\n${user.name}\n${user.credentials_version}\n${issued}`),
    ].join('.');

  /**
   * An id of the browser's device cookie when it is valid for `row`'s current credentials and less than
   * DEVICE_COOKIE_SECONDS old; undefined otherwise.
   */
  function knownDevice(ctx: Context, row: AdminUserRow | undefined): string | undefined {
    const value = readCookie(ctx, deviceCookie) ?? '';
    const [, versionText, issuedText, signature] = value.split('.');
    if (!row || !versionText || !issuedText || !signature) return undefined;
    if (!/^\d{1,10}$/.test(versionText) || !/^\d{1,12}$/.test(issuedText)) return undefined;
    const issued = Number(issuedText);
    const age = deps.clock.now().getTime() / 1000 - issued;
    const valid =
      Number(versionText) === row.credentials_version &&
      age >= 0 &&
      age < DEVICE_COOKIE_SECONDS &&
      sameToken(value, deviceValue(row, issued));
    return valid ? signature.slice(0, 16) : undefined;
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
    // A forgotten code is not a guess: only wrong codes count towards the lock.
    if (!code.trim()) return 'authentication code missing';
    const lastStep = row.totp_last_step === null ? null : Number(row.totp_last_step);
    const step = matchTotp(secret, code.replace(/\s/g, ''), deps.clock.now(), lastStep);
    if (step !== undefined && (await claimTotpStep(deps.admin.db, row, step))) return undefined;
    const failures = await recordTotpFailure(deps.admin.db, row);
    if (failures >= TOTP_LOCK_AFTER) {
      deps.log.warn(
        { event: 'console_second_factor_locked', user: row.name, failures },
        'console second factor locked after repeated wrong codes',
      );
      return 'second factor locked';
    }
    return 'wrong or reused authentication code';
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
    // Read before anything is checked: its id and credentials version are the ones a session will hold (see
    // createSession).
    const row = await findAdminUser(deps.admin.db, user);
    const logged = loggedName(user, row);
    if (byAddress) {
      refuse(ctx, logged, byAddress, 'too many sign-in attempts from this address', user);
      return;
    }
    // A browser the user signed in with has a budget of its own, which nobody without its cookie can spend.
    const device = knownDevice(ctx, row);
    const byUser = await limits.consume(
      'console-sign-in-user',
      device === undefined ? user : `device:${device}`,
      deps.settings.signInPerUser,
      { exact: true },
    );
    if (byUser) {
      refuse(ctx, logged, byUser, 'too many sign-in attempts for this user', user);
      return;
    }
    const failureKey = `console:${user}`;
    const blocked = await limits.blockedAfterFailures(failureKey, address);
    if (blocked) {
      refuse(ctx, logged, blocked, 'blocked after repeated failures', user);
      return;
    }

    if (checksInFlight >= (device === undefined ? MAX_CHECKS : MAX_CHECKS_KNOWN_DEVICE)) {
      deps.audit.consoleSignIn({ outcome: 'failure', ...logged, ip, reason: 'too many sign-ins at once' });
      ctx.set('Retry-After', '1');
      show(ctx, { user, status: 503, error: 'The server is busy signing others in. Try again in a moment.' });
      return;
    }
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

    if (row.totp_failures > 0) await resetTotpFailures(deps.admin.db, row);
    // Sessions are only created here, so ended ones are cleared here too: the table stays as small as its use.
    await purgeSessions(deps.admin.db, deps.clock.now(), deps.settings.idleTimeout);
    // A browser signing in again leaves its previous session behind: that one ends now.
    const previous = readCookie(ctx, sessionCookie);
    if (previous !== undefined) {
      const old = await findSession(deps.admin.db, previous, deps.clock.now(), deps.settings.idleTimeout);
      if (old) await deleteSession(deps.admin.db, old.idHash);
    }
    // A new session id on every sign-in: an id known before signing in is worth nothing after. It holds the
    // user id and credentials version read before the check, so a change that raced the check ends it (see
    // findSession).
    let session: { id: string };
    try {
      session = await createSession(deps.admin.db, row, deps.clock.now(), deps.settings.sessionLifetime);
    } catch (error) {
      if (!isForeignKeyViolation(error)) throw error;
      // The user was deleted while signing in (and perhaps created again: its id is another).
      deps.audit.consoleSignIn({ outcome: 'failure', ...logged, ip, reason: 'no such user' });
      show(ctx, { user, status: 401, error: WRONG });
      return;
    }
    setCookie(ctx, sessionCookie, session.id);
    setCookie(ctx, formCookie, '', 0);
    const issued = Math.floor(deps.clock.now().getTime() / 1000);
    setCookie(ctx, deviceCookie, deviceValue(row, issued), DEVICE_COOKIE_SECONDS);
    deps.audit.consoleSignIn({ outcome: 'success', user: row.name, ip });
    ctx.status = 303;
    ctx.redirect(CONSOLE_PREFIX);
  };
}
