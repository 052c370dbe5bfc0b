import type { Context, Next } from 'koa';
import { z } from 'zod';
import { isDatabaseUnavailable } from '../db/availability.ts';

import type { Audit } from '../observability/audit.ts';
import { MayflyError, parseInput, refuseNul } from '../errors.ts';
import { readRequestBody } from '../http/request-body.ts';
import { authenticateAdmin, requireScope, type AdminAuthDeps } from './admin-auth.ts';
import { ADMIN_ROUTES, type AdminDeps, type AdminRoute } from './admin.routes.ts';
import { buildOpenApiDocument } from './openapi.ts';

export const ADMIN_PREFIX = '/admin/v1';
const MAX_BODY_BYTES = 64 * 1024;

interface CompiledRoute {
  route: AdminRoute;
  pattern: RegExp;
  names: string[];
}

/** `/clients/{client_id}` → a pattern matching one path segment per parameter. */
function compileRoute(route: AdminRoute): CompiledRoute {
  const names: string[] = [];
  const source = route.path.replace(/\{([a-z_]+)\}/g, (_match, name: string) => {
    names.push(name);
    return '([^/]+)';
  });
  return { route, pattern: new RegExp(`^${source}$`), names };
}

function matchRoute(routes: readonly CompiledRoute[], path: string, method: string) {
  const matching = routes
    .map((compiled) => ({ compiled, match: compiled.pattern.exec(path) }))
    .filter((candidate) => candidate.match !== null);
  const found = matching.find((candidate) => candidate.compiled.route.method === method);
  return { found, allowed: matching.map((candidate) => candidate.compiled.route.method) };
}

function decodeParams(names: string[], match: RegExpExecArray): Record<string, string> {
  const params: Record<string, string> = {};
  names.forEach((name, index) => {
    const raw = match[index + 1] ?? '';
    try {
      params[name] = decodeURIComponent(raw);
      refuseNul(params[name], name);
    } catch (error) {
      if (error instanceof MayflyError) throw error;
      throw new MayflyError('invalid_input', `${name}: malformed percent-encoding in the path`, [
        { path: name, message: 'malformed percent-encoding' },
      ]);
    }
  });
  return params;
}

/** Query values as strings; a repeated parameter is refused rather than silently reduced to one value. */
function readQuery(ctx: Context): Record<string, string> {
  const query: Record<string, string> = {};
  for (const [name, value] of Object.entries(ctx.query)) {
    if (Array.isArray(value)) {
      throw new MayflyError('invalid_input', `${name}: give this query parameter once`, [
        { path: name, message: 'repeated query parameter' },
      ]);
    }
    if (value !== undefined) query[name] = value;
  }
  return query;
}

async function readJsonBody(ctx: Context, optional: boolean): Promise<unknown> {
  const length = ctx.request.length;
  const chunked = ctx.get('transfer-encoding') !== '';
  if (!chunked && !length) {
    if (optional) return undefined;
    throw new MayflyError('invalid_input', 'a JSON request body is required');
  }
  if (!ctx.is('application/json')) {
    throw new MayflyError(
      'unsupported_media_type',
      'send the request body as Content-Type: application/json',
    );
  }
  const bytes = length > MAX_BODY_BYTES ? 'too-large' : await readRequestBody(ctx.req, MAX_BODY_BYTES);
  if (bytes === 'too-large') {
    // The rest of the body is never read: the connection cannot be reused.
    ctx.set('Connection', 'close');
    throw new MayflyError('payload_too_large', `the request body is larger than ${MAX_BODY_BYTES} bytes`);
  }
  if (bytes === 'aborted') throw new MayflyError('invalid_input', 'the request body was cut off');
  let body: unknown;
  try {
    body = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new MayflyError('invalid_json', 'the request body is not valid JSON');
  }
  refuseNul(body, 'body');
  return body;
}

/** RFC 6750 §3 / RFC 9449 §7.1 challenge for a refused admin request. */
function challenge(error: MayflyError, algs: string): string | undefined {
  const escape = (value: string) => value.replace(/["\\]/g, '');
  switch (error.code) {
    case 'token_required':
      return `DPoP algs="${algs}"`;
    case 'invalid_token':
    case 'invalid_dpop_proof':
    case 'use_dpop_nonce':
      return `DPoP error="${error.code}", error_description="${escape(error.message)}", algs="${algs}"`;
    case 'insufficient_scope':
      return `DPoP error="insufficient_scope", error_description="${escape(error.message)}", algs="${algs}"`;
    default:
      return undefined;
  }
}

export interface AdminApiOptions {
  auth: AdminAuthDeps;
  deps: AdminDeps;
  audit: Audit;
  /** Proof algorithms announced in challenges. */
  proofAlgs: readonly string[];
}

/**
 * The admin API under /admin/v1. Every operation but the OpenAPI document needs a DPoP-bound admin token; every
 * input is parsed with the operation's schemas before its handler runs; every answer is logged.
 */
export function serveAdminApi(options: AdminApiOptions) {
  const routes = ADMIN_ROUTES.map(compileRoute);
  const algs = options.proofAlgs.join(' ');
  let openApi: string | undefined;

  return async function adminApi(ctx: Context, next: Next): Promise<void> {
    if (ctx.path !== ADMIN_PREFIX && !ctx.path.startsWith(`${ADMIN_PREFIX}/`)) {
      await next();
      return;
    }
    const path = ctx.path.slice(ADMIN_PREFIX.length) || '/';
    ctx.set('Cache-Control', 'no-store');
    if (path === '/openapi.json' && (ctx.method === 'GET' || ctx.method === 'HEAD')) {
      openApi ??= JSON.stringify(buildOpenApiDocument(ADMIN_ROUTES, options.auth.issuer));
      ctx.type = 'application/json';
      ctx.set('Cache-Control', 'public, max-age=300');
      ctx.body = openApi;
      return;
    }

    let clientId: string | undefined;
    // Read before the body: a request cut off midway no longer has a socket to ask.
    const ip = ctx.ip;
    try {
      const { found, allowed } = matchRoute(routes, path, ctx.method);
      if (!found) {
        if (allowed.length) {
          throw new MayflyError(
            'method_not_allowed',
            `${ctx.method} is not allowed here; use ${allowed.join(', ')}`,
            [],
            {
              Allow: allowed.join(', '),
            },
          );
        }
        throw new MayflyError(
          'not_found',
          `no admin API endpoint at ${ctx.path}; see ${ADMIN_PREFIX}/openapi.json`,
        );
      }
      const { route } = found.compiled;
      const principal = await authenticateAdmin(ctx, options.auth);
      clientId = principal.clientId;
      requireScope(principal, route.scope);
      const params = parseInput(
        route.params ?? NONE,
        decodeParams(found.compiled.names, found.match as RegExpExecArray),
      );
      const rawQuery = readQuery(ctx);
      refuseNul(rawQuery, 'query');
      const query = parseInput(route.query ?? NONE, rawQuery);
      // An optional body left out reads as an empty object: its members all have defaults.
      const raw = route.body ? ((await readJsonBody(ctx, route.bodyOptional === true)) ?? {}) : undefined;
      const body = route.body ? parseInput(route.body, raw) : undefined;
      const actor = { id: principal.clientId };
      const result = await route.handle({ actor, params, query, body, deps: options.deps });
      ctx.status = route.status;
      if (route.status !== 204) ctx.body = result;
      options.audit.adminRequest({
        outcome: 'success',
        method: ctx.method,
        path: ctx.path,
        ip,
        status: ctx.status,
        client_id: clientId,
      });
    } catch (thrown) {
      const error = isDatabaseUnavailable(thrown) ? databaseUnavailable() : thrown;
      if (!(error instanceof MayflyError)) {
        options.audit.adminRequest({
          outcome: 'failure',
          method: ctx.method,
          path: ctx.path,
          ip,
          status: 500,
          client_id: clientId,
          error: 'server_error',
          reason: 'an internal error occurred',
        });
        throw error;
      }
      ctx.status = error.status;
      ctx.body = error.toJSON();
      for (const [name, value] of Object.entries(error.headers)) ctx.set(name, value);
      const authenticate = challenge(error, algs);
      if (authenticate) ctx.set('WWW-Authenticate', authenticate);
      options.audit.adminRequest({
        outcome: 'failure',
        method: ctx.method,
        path: ctx.path,
        ip,
        status: error.status,
        client_id: clientId,
        error: error.code,
        reason: error.message,
      });
    }
  };
}

/** Operations without parameters take none: an unexpected query parameter is an error, not ignored. */
const NONE = z.strictObject({});

/** The admin API's answer while the database cannot be reached: retry shortly, nothing was changed. */
export function databaseUnavailable(): MayflyError {
  return new MayflyError(
    'temporarily_unavailable',
    'the database is unavailable; nothing was changed, retry shortly',
    [],
    { 'Retry-After': '1' },
  );
}
