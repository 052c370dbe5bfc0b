import { readFileSync } from 'node:fs';

import type { Context, Next } from 'koa';
import { z } from 'zod';

import type { RateLimits } from '../abuse/rate-limits.ts';
import { ADMIN_ROUTES, type AdminDeps } from '../admin/admin.routes.ts';
import { ADMIN_SCOPES, type AdminScope } from '../clients/admin-rights.ts';
import type { Clock } from '../clock.ts';
import type { ConsoleSettings } from '../config/config.ts';
import { isDatabaseUnavailable } from '../db/availability.ts';
import { MayflyError, parseInput, refuseNul } from '../errors.ts';
import type { Audit } from '../observability/audit.ts';
import type { Logger } from '../observability/logger.ts';
import type { Html } from '../../views/html.ts';
import { errorPage } from '../../views/error.ts';
import type { PageContext } from '../../views/layout.ts';
import { CONSOLE_PAGES } from './pages/index.ts';
import {
  CONSOLE_PREFIX,
  isSameOriginPost,
  consoleCookie,
  hasCookie,
  readCookie,
  readForm,
  sameToken,
  readOnly,
  setCookie,
  type FormValues,
} from './http.ts';
import { claimFormToken, deleteSession, findSession, touchSession, type ConsoleSession } from './sessions.ts';
import { SIGN_IN_PATH, signInPages } from './sign-in.ts';

/** Scripts and styles from this origin only, no inline code, forms posting only here, never framed. */
const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

export interface ConsoleDeps {
  settings: ConsoleSettings;
  /** Signs the cookie that marks a browser a user signed in with (see sign-in.ts). */
  deviceKey: Buffer;
  issuer: string;
  admin: AdminDeps;
  clock: Clock;
  audit: Audit;
  limits: RateLimits;
  log: Logger;
}

export interface ConsoleUser {
  name: string;
  role: 'read' | 'write';
}

export interface ConsoleRequest {
  ctx: Context;
  deps: ConsoleDeps;
  user: ConsoleUser;
  params: Readonly<Record<string, string>>;
  query: Readonly<Record<string, string>>;
  /** The submitted form (POST), CSRF token removed. */
  form: FormValues;
  page: PageContext;
  /**
   * Runs one admin API operation as this user: the same input schemas, scope check, service and audit trail as
   * the API, with the user (`user:<name>`) as the actor.
   */
  admin: <T = unknown>(
    operationId: string,
    input?: { params?: object; query?: object; body?: unknown },
  ) => Promise<T>;
}

export type ConsoleResult =
  | { html: Html; status?: number }
  /** 303 See Other to `location`; `notice` is shown once on the next page. */
  | { redirect: string; notice?: string };

export interface ConsolePage {
  method: 'GET' | 'POST';
  /** Under /console, e.g. `/clients/{client_id}`. */
  path: string;
  handle(request: ConsoleRequest): Promise<ConsoleResult>;
}

interface CompiledPage {
  page: ConsolePage;
  pattern: RegExp;
  names: string[];
}

function compile(page: ConsolePage): CompiledPage {
  const names: string[] = [];
  const source = page.path.replace(/\{([a-z_]+)\}/g, (_match, name: string) => {
    names.push(name);
    return '([^/]+)';
  });
  return { page, pattern: new RegExp(`^${source}$`), names };
}

const ASSETS: Readonly<Record<string, { type: string; file: string }>> = {
  '/assets/console.css': { type: 'text/css; charset=utf-8', file: 'console.css' },
  '/assets/console.js': { type: 'text/javascript; charset=utf-8', file: 'console.js' },
};
const assetsDir = new URL('../../views/assets/', import.meta.url);

function readQuery(ctx: Context): Record<string, string> {
  const query = Object.create(null) as Record<string, string>;
  for (const [name, value] of Object.entries(ctx.query)) {
    if (typeof value === 'string' && value !== '') query[name] = value;
  }
  refuseNul(query, 'query');
  return query;
}

const NONE = z.strictObject({});
const ROUTES_BY_ID = new Map(ADMIN_ROUTES.map((route) => [route.operationId, route]));
const ROLE_SCOPES: Readonly<Record<ConsoleUser['role'], readonly AdminScope[]>> = {
  read: [ADMIN_SCOPES.read],
  write: [ADMIN_SCOPES.read, ADMIN_SCOPES.write],
};

/** The admin API operation `operationId`, run as a console user (see ConsoleRequest.admin). */
export async function runAdminOperation(
  deps: AdminDeps,
  user: ConsoleUser,
  operationId: string,
  input: { params?: object; query?: object; body?: unknown },
): Promise<unknown> {
  const route = ROUTES_BY_ID.get(operationId);
  if (!route) throw new Error(`no admin operation ${operationId}`);
  if (!ROLE_SCOPES[user.role].includes(route.scope)) throw readOnly();
  const params = parseInput(route.params ?? NONE, input.params ?? {});
  const query = parseInput(route.query ?? NONE, input.query ?? {});
  const body = route.body ? parseInput(route.body, input.body ?? {}) : undefined;
  return route.handle({ actor: { id: `user:${user.name}` }, params, query, body, deps });
}

/** Error pages: what went wrong and what to do, never internals. */
function errorResult(error: MayflyError): ConsoleResult {
  const titles: Partial<Record<string, string>> = {
    insufficient_scope: 'Not allowed',
    csrf_token_invalid: 'Form refused',
    form_already_sent: 'Form already sent',
    payload_too_large: 'Form too large',
    unsupported_media_type: 'Not a form',
    temporarily_unavailable: 'Temporarily unavailable',
  };
  const title = titles[error.code] ?? (error.status === 404 ? 'Not found' : 'Request refused');
  return { html: errorPage(title, error.message), status: error.status };
}

/**
 * The web console under /console: server-rendered pages for signed-in console users. Every page but sign-in needs
 * a live session; every form post needs the session's CSRF token and a same-origin request; every change runs
 * through the admin API's operations (see runAdminOperation).
 */
export function serveConsole(deps: ConsoleDeps) {
  const pages = CONSOLE_PAGES.map(compile);
  const signIn = signInPages(deps);
  const sessionCookie = consoleCookie(deps.issuer, 'mayfly-console', CONSOLE_PREFIX);
  const assets = new Map(
    Object.entries(ASSETS).map(([path, asset]) => [
      path,
      { type: asset.type, body: readFileSync(new URL(asset.file, assetsDir)) },
    ]),
  );

  return async function console(ctx: Context, next: Next): Promise<void> {
    if (ctx.path !== CONSOLE_PREFIX && !ctx.path.startsWith(`${CONSOLE_PREFIX}/`)) {
      await next();
      return;
    }
    const path = ctx.path.slice(CONSOLE_PREFIX.length) || '/';
    const asset = assets.get(path);
    if (asset && (ctx.method === 'GET' || ctx.method === 'HEAD')) {
      ctx.type = asset.type;
      ctx.set('Cache-Control', 'no-cache');
      ctx.body = asset.body;
      return;
    }
    ctx.set('Content-Security-Policy', CONTENT_SECURITY_POLICY);
    ctx.set('Cache-Control', 'no-store');
    ctx.set('X-Frame-Options', 'DENY');
    // Not no-referrer (the default elsewhere): under it browsers send `Origin: null` with the console's own form
    // posts, which the same-origin check must refuse. same-origin still sends nothing to other sites.
    ctx.set('Referrer-Policy', 'same-origin');
    const ip = ctx.ip;
    let user: string | undefined;
    const record = (status: number, error?: MayflyError) => {
      deps.audit.consoleRequest({
        outcome: error ? 'failure' : 'success',
        method: ctx.method,
        path: ctx.path,
        ip,
        status,
        user,
        ...(error ? { error: error.code, reason: error.message } : {}),
      });
    };
    try {
      if (path === SIGN_IN_PATH) {
        await signIn(ctx);
        return;
      }
      const sessionId = readCookie(ctx, sessionCookie);
      const now = deps.clock.now();
      const session =
        sessionId === undefined
          ? undefined
          : await findSession(deps.admin.db, sessionId, now, deps.settings.idleTimeout);
      if (!session) {
        // Back to sign-in; a cookie that no longer opens a session (or comes twice) means the session ended.
        const sent = hasCookie(ctx, sessionCookie);
        const reason = sent ? '?ended=1' : '';
        if (sent) setCookie(ctx, sessionCookie, '', 0);
        ctx.status = 303;
        ctx.redirect(`${CONSOLE_PREFIX}${SIGN_IN_PATH}${reason}`);
        record(303, new MayflyError('token_required', sent ? 'session ended' : 'not signed in'));
        return;
      }
      user = session.userName;
      if (path === '/sign-out' && ctx.method === 'POST') {
        const form = await readForm(ctx);
        refuseForgedPost(ctx, deps, session, form);
        await deleteSession(deps.admin.db, session.idHash);
        setCookie(ctx, sessionCookie, '', 0);
        ctx.status = 303;
        ctx.redirect(`${CONSOLE_PREFIX}${SIGN_IN_PATH}?signed_out=1`);
        record(303);
        return;
      }
      const result = await dispatch(ctx, deps, pages, path, session);
      if ('redirect' in result) {
        await touchSession(
          deps.admin.db,
          session.idHash,
          now,
          result.notice ? { set: result.notice } : 'keep',
        );
        ctx.status = 303;
        ctx.redirect(result.redirect);
      } else {
        await touchSession(deps.admin.db, session.idHash, now, session.notice ? 'clear' : 'keep');
        ctx.status = result.status ?? 200;
        ctx.type = 'text/html; charset=utf-8';
        ctx.body = result.html.value;
      }
      record(ctx.status);
    } catch (thrown) {
      const error = isDatabaseUnavailable(thrown)
        ? new MayflyError(
            'temporarily_unavailable',
            'the database is unavailable; nothing was changed, retry shortly',
          )
        : thrown;
      if (!(error instanceof MayflyError)) {
        deps.log.error({ err: error, path: ctx.path, method: ctx.method }, 'console error');
        record(500, new MayflyError('invalid_input', 'an internal error occurred'));
        ctx.status = 500;
        ctx.type = 'text/html; charset=utf-8';
        ctx.body = errorPage(
          'Something went wrong',
          'An internal error occurred; nothing more is shown here. The server log has the details.',
        ).value;
        return;
      }
      const result = errorResult(error);
      ctx.status = error.status;
      for (const [name, value] of Object.entries(error.headers)) ctx.set(name, value);
      ctx.type = 'text/html; charset=utf-8';
      ctx.body = 'html' in result ? result.html.value : '';
      record(error.status, error);
    }
  };
}

function refuseForgedPost(ctx: Context, deps: ConsoleDeps, session: ConsoleSession, form: FormValues): void {
  const token = form._csrf;
  if (typeof token !== 'string' || !sameToken(token, session.csrf) || !isSameOriginPost(ctx, deps.issuer)) {
    throw new MayflyError(
      'csrf_token_invalid',
      'this form was not sent from a current console page (its security token is missing or stale): go back, ' +
        'reload the page and submit it again',
    );
  }
}

async function dispatch(
  ctx: Context,
  deps: ConsoleDeps,
  pages: readonly CompiledPage[],
  path: string,
  session: ConsoleSession,
): Promise<ConsoleResult> {
  // A literal segment wins over a parameter (`/clients/new` over `/clients/{client_id}`), whatever the order.
  const matching = pages
    .map((compiled) => ({ compiled, match: compiled.pattern.exec(path) }))
    .filter((candidate) => candidate.match !== null)
    .sort((a, b) => a.compiled.names.length - b.compiled.names.length);
  const method = ctx.method === 'HEAD' ? 'GET' : ctx.method;
  const found = matching.find((candidate) => candidate.compiled.page.method === method);
  if (!found) {
    if (matching.length) {
      const allowed = [...new Set(matching.map((candidate) => candidate.compiled.page.method))].join(', ');
      throw new MayflyError('method_not_allowed', `${ctx.method} is not allowed here`, [], {
        Allow: allowed,
      });
    }
    throw new MayflyError('not_found', `there is no console page at ${ctx.path}`);
  }
  const params: Record<string, string> = {};
  found.compiled.names.forEach((name, index) => {
    try {
      params[name] = decodeURIComponent(found.match?.[index + 1] ?? '');
    } catch {
      throw new MayflyError('not_found', `there is no console page at ${ctx.path}`);
    }
  });
  refuseNul(params, 'path');
  let form: FormValues = {};
  if (method === 'POST') {
    const { _csrf, _once, ...rest } = await readForm(ctx);
    refuseForgedPost(ctx, deps, session, { _csrf: _csrf ?? '' });
    // A form whose answer is shown once (a new secret) carries a one-time token: sent again, it is refused.
    if (_once !== undefined) {
      if (typeof _once !== 'string' || !/^[\w-]{43}$/.test(_once)) {
        throw new MayflyError(
          'invalid_input',
          'the form carries a malformed one-time token: reload the page',
        );
      }
      if (!(await claimFormToken(deps.admin.db, session.idHash, _once))) {
        throw new MayflyError(
          'form_already_sent',
          'this form was already sent, and its answer is shown only once: open the list to see what it did',
        );
      }
    }
    form = rest;
  }
  const user: ConsoleUser = { name: session.userName, role: session.role };
  return found.compiled.page.handle({
    ctx,
    deps,
    user,
    params,
    query: readQuery(ctx),
    form,
    page: { user, csrf: session.csrf, notice: session.notice ?? undefined },
    admin: async <T>(operationId: string, input: { params?: object; query?: object; body?: unknown } = {}) =>
      (await runAdminOperation(deps.admin, user, operationId, input)) as T,
  });
}
