import type { Context } from 'koa';

import type { Refusal } from '../abuse/rate-limits.ts';
import { MayflyError } from '../errors.ts';
import { signInPage } from '../../views/sign-in.ts';
import { openTotpSecret, claimTotpStep, findAdminUser } from './admin-user.service.ts';
import { verifyPassword } from './password.ts';
import { createSession, newSecret, purgeSessions } from './sessions.ts';
import { matchTotp } from './totp.ts';
import type { ConsoleDeps } from './console.ts';
import {
  CONSOLE_PREFIX,
  isSameOriginPost,
  readCookie,
  readForm,
  sameToken,
  sessionCookieName,
  setCookie,
} from './http.ts';

export const SIGN_IN_PATH = '/sign-in';
/** Holds the sign-in form's token (double submit): a page of another site can neither read nor send it. */
const FORM_COOKIE = 'mayfly-console-sign-in';
const FORM_COOKIE_SECONDS = 3600;
/** One message for every wrong credential, so a failed sign-in does not tell which part was wrong. */
const WRONG = 'The user name, password or authentication code is not right.';

const NOTICES: Readonly<Record<string, string>> = {
  ended: 'Your session has ended. Sign in again to continue.',
  signed_out: 'You have signed out.',
};

/**
 * Sign-in: a user name, a password and, for users with a second factor, a TOTP code. Attempts are limited per
 * source address and per user name before any password is checked, and repeated failures for one user from one
 * address are slowed, then blocked (the protocol endpoints' backoff, under a `console:` key).
 */
export function signInPages(deps: ConsoleDeps) {
  const limits = deps.limits;
  const path = `${CONSOLE_PREFIX}${SIGN_IN_PATH}`;

  function show(ctx: Context, options: { user?: string; error?: string; status?: number }): void {
    const formToken = newSecret();
    setCookie(ctx, deps.issuer, FORM_COOKIE, formToken, { path, maxAge: FORM_COOKIE_SECONDS });
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

  function refuse(ctx: Context, user: string, refusal: Refusal, reason: string): void {
    ctx.set('Retry-After', String(refusal.retryAfterSeconds));
    deps.audit.consoleSignIn({ outcome: 'failure', user, ip: ctx.ip, reason });
    show(ctx, {
      user,
      status: 429,
      error: `Too many sign-in attempts. Wait ${refusal.retryAfterSeconds} seconds, then try again.`,
    });
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
    const form = await readForm(ctx);
    const field = (name: string) => {
      const value = form[name];
      return typeof value === 'string' ? value : '';
    };
    const user = field('user').trim().toLowerCase().slice(0, 64);
    const cookieToken = readCookie(ctx, FORM_COOKIE);
    if (
      cookieToken === undefined ||
      !sameToken(field('_csrf'), cookieToken) ||
      !isSameOriginPost(ctx, deps.issuer)
    ) {
      deps.audit.consoleSignIn({
        outcome: 'failure',
        user,
        ip,
        reason: 'sign-in form token missing or stale',
      });
      show(ctx, {
        user,
        status: 403,
        error: 'This sign-in form has expired or was not sent from this page. Try again with the form below.',
      });
      return;
    }
    if (!user || !field('password')) {
      show(ctx, { user, status: 400, error: 'Enter your user name and password.' });
      return;
    }

    const byAddress = await limits.consume('console-sign-in-address', ip, deps.settings.signInPerAddress, {
      exact: true,
    });
    if (byAddress) {
      refuse(ctx, user, byAddress, 'too many sign-in attempts from this address');
      return;
    }
    const byUser = await limits.consume('console-sign-in-user', user, deps.settings.signInPerUser, {
      exact: true,
    });
    if (byUser) {
      refuse(ctx, user, byUser, 'too many sign-in attempts for this user');
      return;
    }
    const failureKey = `console:${user}`;
    const blocked = await limits.blockedAfterFailures(failureKey, ip);
    if (blocked) {
      refuse(ctx, user, blocked, 'blocked after repeated failures');
      return;
    }

    const row = await findAdminUser(deps.admin.db, user);
    const passwordOk = await verifyPassword(field('password'), row?.password_hash);
    let reason: string | undefined;
    if (!row || !passwordOk) reason = row ? 'wrong password' : 'no such user';
    else if (row.disabled_at) reason = 'user disabled';
    else if (row.totp_secret !== null) {
      const secret = openTotpSecret(deps.admin.keks, row.name, row.totp_secret);
      const lastStep = row.totp_last_step === null ? null : Number(row.totp_last_step);
      const step = matchTotp(secret, field('code').replace(/\s/g, ''), deps.clock.now(), lastStep);
      if (step === undefined || !(await claimTotpStep(deps.admin.db, row.name, step))) {
        reason = field('code') ? 'wrong or reused authentication code' : 'authentication code missing';
      }
    }
    if (reason !== undefined || !row) {
      const outcome = await limits.recordFailure(failureKey, ip);
      deps.audit.consoleSignIn({ outcome: 'failure', user, ip, reason: reason ?? 'no such user' });
      if (outcome.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, outcome.delayMs));
      show(ctx, { user, status: 401, error: WRONG });
      return;
    }

    // Sessions are only created here, so ended ones are cleared here too: the table stays as small as its use.
    await purgeSessions(deps.admin.db, deps.clock.now(), deps.settings.idleTimeout);
    // A new session id on every sign-in: an id known before signing in is worth nothing after.
    const session = await createSession(
      deps.admin.db,
      row.name,
      deps.clock.now(),
      deps.settings.sessionLifetime,
    );
    setCookie(ctx, deps.issuer, sessionCookieName(deps.issuer), session.id, { path: CONSOLE_PREFIX });
    setCookie(ctx, deps.issuer, FORM_COOKIE, '', { path, maxAge: 0 });
    deps.audit.consoleSignIn({ outcome: 'success', user: row.name, ip });
    ctx.status = 303;
    ctx.redirect(CONSOLE_PREFIX);
  };
}
