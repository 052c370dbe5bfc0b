import { hkdfSync } from 'node:crypto';
import { once } from 'node:events';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { AddressInfo } from 'node:net';

import Koa, { type Context, type Next } from 'koa';
import mount from 'koa-mount';
import type Provider from 'oidc-provider';

import type { AppContext } from './context.ts';
import { guardProtocolRequests } from './abuse/protocol-guard.ts';
import { serveAdminApi } from './admin/admin-api.ts';
import { AdminNonces } from './admin/admin-auth.ts';
import { serveConsole } from './console/console.ts';
import { MayflyError } from './errors.ts';
import { ASYMMETRIC_ALGS } from './oidc/provider.ts';
import { presentJwtAccessTokens } from './oidc/jwt-access-tokens.ts';
import { auditProtocolRequests, issuedTokenJkt } from './oidc/protocol-audit.ts';
import { clarifyTokenErrors } from './oidc/token-errors.ts';
import { isDatabaseUnavailable } from './db/availability.ts';
import { serveHealth } from './observability/health.ts';
import { serveMetrics } from './observability/metrics.ts';
import { assignRequestId } from './observability/request-context.ts';
import { REGISTRATION_PATH, serveRegistration } from './registration/registration-routes.ts';
import {
  answerDatabaseOutages,
  completeIntrospectionResponse,
  haltSigningWhen,
  pinRequestOrigin,
  TEMPORARILY_UNAVAILABLE,
  restrictToServedEndpoints,
  serveJwks,
  serveServerMetadata,
} from './oidc/protocol-routes.ts';

export function createApp(app: AppContext): Koa {
  // Only the entries trusted proxies appended to X-Forwarded-For: a client writes whatever it likes before them.
  const koa = new Koa({ proxy: app.config.trustProxy, maxIpsCount: app.config.proxyHops });
  koa.silent = true;
  koa.use(secureHeaders);
  koa.use(assignRequestId(app.config.trustProxy));
  koa.use(app.metrics.observeRequests());
  koa.use(pinRequestOrigin(app.config.issuer, app.config.trustProxy));
  koa.use(errorBoundary(app));
  koa.use(serveHealth(() => app.readiness()));
  // On the main port unless MAYFLY_METRICS_PORT names an internal one (see startMetricsServer).
  if (app.config.metricsPort === undefined) koa.use(serveMetrics(app.metrics));
  koa.use(serveJwks(() => app.keys.current.published, app.config.keys.jwksMaxAge));
  koa.use(
    serveAdminApi({
      auth: {
        issuer: app.config.issuer,
        audience: app.config.admin.audience,
        db: app.db,
        tokens: app.tokens,
        clock: app.clock,
        verificationKeys: () => app.keys.current.verification,
        nonces: app.config.dpop.requireNonce
          ? new AdminNonces(app.secrets.dpopNonceSecret, app.clock)
          : undefined,
      },
      deps: app.admin,
      audit: app.audit,
      proofAlgs: ASYMMETRIC_ALGS,
    }),
  );
  if (app.config.console.enabled) {
    koa.use(
      serveConsole({
        settings: app.config.console,
        deviceKey: Buffer.from(
          hkdfSync(
            'sha256',
            app.secrets.dpopNonceSecret,
            Buffer.alloc(0),
            'mayfly console device cookie',
            32,
          ),
        ),
        issuer: app.config.issuer,
        admin: app.admin,
        clock: app.clock,
        audit: app.audit,
        limits: app.limits,
        log: app.log.child({ component: 'console' }),
      }),
    );
  }
  const registration = app.config.registration.enabled;
  if (registration) {
    koa.use(
      serveRegistration({
        deps: { ...app.admin, issuer: app.config.issuer },
        limits: app.limits,
        log: app.log.child({ component: 'audit' }),
      }),
    );
  }
  koa.use(restrictToServedEndpoints());
  koa.use(
    serveServerMetadata({
      registrationEndpoint: registration ? `${app.config.issuer}${REGISTRATION_PATH}` : undefined,
    }),
  );
  koa.use(auditProtocolRequests(app.audit, app.metrics));
  koa.use(
    guardProtocolRequests({
      limits: app.limits,
      clients: app.clients,
      audit: app.audit,
      metrics: app.metrics,
      log: app.log.child({ component: 'limits' }),
      observe: (ctx, { route, authenticated, claimed, address }) => {
        // A request refused by a limit says nothing about the client's own behaviour.
        if (route !== 'token' || ctx.status === 429) return;
        app.anomalies.tokenRequest({
          authenticated,
          claimed,
          issued: ctx.status === 200,
          address,
          dpopJkt: issuedTokenJkt(ctx),
        });
      },
    }),
  );
  koa.use(haltSigningWhen(() => app.keys.current.signingProblem));
  koa.use(clarifyTokenErrors);
  koa.use(
    presentJwtAccessTokens({
      issuer: app.config.issuer,
      clock: app.clock,
      verificationKeys: () => app.keys.current.verification,
    }),
  );
  koa.use(completeIntrospectionResponse);
  koa.use(answerDatabaseOutages);
  koa.use(currentProvider(app));
  return koa;
}

/**
 * Hands each request to the provider current when it arrives: a key change swaps the provider without touching
 * requests already in flight.
 */
function currentProvider(app: AppContext) {
  type Handler = (ctx: Context, next: Next) => Promise<void>;
  const mounted = new WeakMap<Provider, Handler>();
  return function provider(ctx: Context, next: Next): Promise<void> {
    let middleware = mounted.get(app.provider);
    if (!middleware) {
      middleware = mount(app.provider) as Handler;
      mounted.set(app.provider, middleware);
    }
    return middleware(ctx, next);
  };
}

/**
 * Every answer is JSON (or a JWK Set) meant for programs: nothing to sniff, frame, run scripts from or refer on.
 */
function secureHeaders(ctx: Context, next: Next): Promise<void> {
  ctx.set('X-Content-Type-Options', 'nosniff');
  ctx.set('Content-Security-Policy', "default-src 'none'; frame-ancestors 'none'");
  ctx.set('Referrer-Policy', 'no-referrer');
  return next();
}

/** Whatever escapes the provider: a stable JSON error, never a stack trace. */
function errorBoundary(app: AppContext) {
  return async function handleErrors(ctx: Context, next: Next): Promise<void> {
    try {
      await next();
    } catch (error) {
      if (error instanceof MayflyError) {
        ctx.status = error.status;
        ctx.body = error.toJSON();
        return;
      }
      if (isDatabaseUnavailable(error)) {
        app.log.warn({ err: error, path: ctx.path, method: ctx.method }, 'database unavailable');
        ctx.status = 503;
        ctx.set('Retry-After', '1');
        ctx.body = { ...TEMPORARILY_UNAVAILABLE };
        return;
      }
      const status = (error as { status?: unknown }).status;
      const expose = (error as { expose?: unknown }).expose === true;
      if (typeof status === 'number' && status >= 400 && status < 500 && expose) {
        ctx.status = status;
        ctx.body = { error: 'invalid_request', error_description: (error as Error).message };
        return;
      }
      app.log.error({ err: error, path: ctx.path, method: ctx.method }, 'unhandled error');
      ctx.status = 500;
      ctx.body = { error: 'server_error', error_description: 'an internal error occurred' };
    }
  };
}

export interface RunningServer {
  server: Server;
  url: string;
  /** Stops accepting connections, lets requests in flight finish, and cuts what is left after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

export async function startServer(
  app: AppContext,
  port = app.config.port,
  host = app.config.host,
): Promise<RunningServer> {
  return listen(createApp(app), port, host);
}

/** `/metrics` alone on its own port (MAYFLY_METRICS_PORT), for an internal network only. */
export async function startMetricsServer(app: AppContext, port: number): Promise<RunningServer> {
  const koa = new Koa();
  koa.silent = true;
  koa.use(serveMetrics(app.metrics));
  koa.use((ctx) => {
    ctx.status = 404;
    ctx.body = { error: 'not_found', error_description: `no endpoint at ${ctx.path}` };
  });
  return listen(koa, port, app.config.host);
}

/**
 * Requests that never reach a middleware — those Node's HTTP parser refuses (headers over 16 KiB, malformed HTTP)
 * and CONNECT requests — get the same kind of answer as every other refusal: a status, `Cache-Control: no-store`
 * and a JSON error body, instead of a bare status line or a closed connection.
 */
export function answerUnparsableRequests(server: Server): void {
  // CONNECT (authority-form target, RFC 9112 §3.2.3) asks for a tunnel: no proxy here. Unanswered, Node would
  // close the connection without a word.
  server.on('connect', (_request: IncomingMessage, socket: Duplex) => {
    answerOnSocket(socket, '405 Method Not Allowed', 'CONNECT is not supported: this server is not a proxy');
  });
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
    if (error.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const tooLarge = error.code === 'HPE_HEADER_OVERFLOW';
    answerOnSocket(
      socket,
      tooLarge ? '431 Request Header Fields Too Large' : '400 Bad Request',
      tooLarge
        ? 'the request line and headers are larger than 16 KiB'
        : 'the request is not well-formed HTTP/1.1',
    );
  });
}

/** An `invalid_request` answer written on the socket itself, which then closes. */
function answerOnSocket(socket: Duplex, status: string, description: string): void {
  const body = JSON.stringify({ error: 'invalid_request', error_description: description });
  socket.end(
    `HTTP/1.1 ${status}\r\n` +
      'Content-Type: application/json; charset=utf-8\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      'Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n' +
      body,
  );
}

async function listen(koa: Koa, port: number, host: string): Promise<RunningServer> {
  const server = koa.listen(port, host);
  answerUnparsableRequests(server);
  await once(server, 'listening');
  const address = server.address() as AddressInfo;
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  // Responses in flight, so that a shutdown can ask each to close its connection once answered.
  const inFlight = new Set<ServerResponse>();
  let stopping = false;
  server.on('request', (_request: IncomingMessage, response: ServerResponse) => {
    inFlight.add(response);
    if (stopping) closeAfterAnswer(response);
    response.once('close', () => {
      inFlight.delete(response);
      if (stopping) server.closeIdleConnections();
    });
  });
  return {
    server,
    url: `http://${shownHost}:${address.port}`,
    async stop(graceMs = 10_000) {
      stopping = true;
      for (const response of inFlight) closeAfterAnswer(response);
      const deadline = setTimeout(() => {
        server.closeAllConnections();
      }, graceMs);
      try {
        await new Promise<void>((resolve, reject) => {
          server.close((error) => {
            if (error) reject(error);
            else resolve();
          });
          server.closeIdleConnections();
        });
      } finally {
        clearTimeout(deadline);
      }
    },
  };
}

/** A draining server answers, then closes the connection rather than keep it alive for more requests. */
function closeAfterAnswer(response: ServerResponse): void {
  if (!response.headersSent) response.setHeader('Connection', 'close');
}
