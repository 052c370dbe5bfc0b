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
