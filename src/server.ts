import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import Koa, { type Context, type Next } from 'koa';
import mount from 'koa-mount';

import type { AppContext } from './context.ts';
import { MayflyError } from './errors.ts';
import { presentJwtAccessTokens } from './oidc/jwt-access-tokens.ts';
import { auditProtocolRequests } from './oidc/protocol-audit.ts';
import { clarifyTokenErrors } from './oidc/token-errors.ts';
import { ROUTES, restrictToServedEndpoints, serveJwks, serveServerMetadata } from './oidc/protocol-routes.ts';

/** Until keys rotate automatically, the published key set only changes between deployments. */
const JWKS_MAX_AGE = 300;

export function createApp(app: AppContext): Koa {
  const koa = new Koa({ proxy: app.config.trustProxy });
  koa.silent = true;
  koa.use(errorBoundary(app));
  koa.use(async (ctx, next) => {
    if (ctx.path !== '/healthz') {
      await next();
      return;
    }
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { status: 'ok' };
  });
  koa.use(serveJwks(() => app.publishedKeys, JWKS_MAX_AGE));
  koa.use(restrictToServedEndpoints());
  koa.use(serveServerMetadata());
  koa.use(auditProtocolRequests(app.audit));
  koa.use(clarifyTokenErrors);
  koa.use(
    presentJwtAccessTokens({
      issuer: app.config.issuer,
      clock: app.clock,
      verificationKeys: () => app.keys.verificationKeys,
    }),
  );
  koa.use(completeIntrospectionResponse);
  koa.use(mount(app.provider));
  return koa;
}

/**
 * RFC 7662 §2.2 lists `sub`; for client_credentials tokens the subject is the client itself, as in the JWT.
 */
async function completeIntrospectionResponse(ctx: Context, next: Next): Promise<void> {
  await next();
  if (ctx.path !== ROUTES.introspection || ctx.status !== 200) return;
  const body = ctx.body as Record<string, unknown> | undefined;
  if (body?.active === true && body.sub === undefined) body.sub = body.client_id;
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
  stop(): Promise<void>;
}

export async function startServer(
  app: AppContext,
  port = app.config.port,
  host = app.config.host,
): Promise<RunningServer> {
  const server = createApp(app).listen(port, host);
  await once(server, 'listening');
  const address = server.address() as AddressInfo;
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    server,
    url: `http://${shownHost}:${address.port}`,
    async stop() {
      await new Promise<void>((resolve, reject) => {
        server.close((error) => {
          if (error) reject(error);
          else resolve();
        });
        server.closeIdleConnections();
      });
    },
  };
}
