import type { Context, Next } from 'koa';

import { recordedProtocolError } from './protocol-audit.ts';
import { ROUTES } from './protocol-routes.ts';

/**
 * The provider reports two DPoP failures at the token endpoint as a generic `invalid_grant` and hides the precise
 * reason of proof failures behind one description. Clients need to know which rule they broke; the reasons
 * concern only the client's own request, so they are safe to return.
 * @see RFC 9449 §5 (invalid_dpop_proof), RFC 6749 §5.2
 */
export async function clarifyTokenErrors(ctx: Context, next: Next): Promise<void> {
  await next();
  if (ctx.status === 400 && AUTHENTICATED_ROUTES.has(ctx.path)) clarifyAuthenticationErrors(ctx);
  if (ctx.path !== ROUTES.token || ctx.status !== 400) return;
  const body = ctx.body as { error?: string; error_description?: string } | undefined;
  const detail = recordedProtocolError(ctx)?.error_detail;
  if (!body || !detail) return;
  if (body.error === 'invalid_grant' && detail === 'DPoP proof JWT not provided') {
    body.error = 'invalid_request';
    body.error_description = 'a DPoP proof is required: this client only obtains DPoP-bound tokens';
  } else if (body.error === 'invalid_grant' && detail === 'DPoP proof JWT Replay detected') {
    body.error = 'invalid_dpop_proof';
    body.error_description = 'DPoP proof replayed: its jti was already used';
  } else if (body.error === 'invalid_dpop_proof' && body.error_description === 'invalid DPoP key binding') {
    body.error_description = `invalid DPoP proof: ${detail}`;
  }
}

const AUTHENTICATED_ROUTES = new Set<string>([ROUTES.token, ROUTES.introspection, ROUTES.revocation]);

/**
 * The provider answers three failures of client authentication as `invalid_request`; RFC 6749 §5.2 names them
 * `invalid_client` (no authentication included, an unsupported method), and RFC 7523 §3.2 a client assertion
 * that is not a valid JWT. A client that used the Authorization header gets 401 with a challenge.
 */
function clarifyAuthenticationErrors(ctx: Context): void {
  const body = ctx.body as { error?: string; error_description?: string } | undefined;
  if (body?.error !== 'invalid_request') return;
  const authorization = ctx.get('authorization');
  let description: string;
  switch (body.error_description) {
    case 'no client authentication mechanism provided':
      description =
        'client authentication is required: client_secret_basic, client_secret_post or private_key_jwt';
      break;
    case 'invalid client_assertion format':
      description = 'the client_assertion is not a well-formed JWT';
      break;
    case 'invalid authorization header value format':
      // A malformed Basic header stays invalid_request; another scheme is a method Mayfly does not support.
      if (authorization === '' || /^basic(\s|$)/i.test(authorization)) return;
      description =
        'unsupported authentication scheme: use Basic (client_secret_basic) or a client assertion';
      break;
    default:
      return;
  }
  ctx.status = 401;
  ctx.body = { error: 'invalid_client', error_description: description };
  if (authorization !== '') ctx.set('WWW-Authenticate', 'Basic realm="mayfly", charset="UTF-8"');
}
