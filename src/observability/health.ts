import type { Context, Next } from 'koa';

/** Liveness: the process answers. Never rate-limited, never cached, no detail. */
export function serveHealth() {
  return async function health(ctx: Context, next: Next): Promise<void> {
    if (ctx.path !== '/healthz') {
      await next();
      return;
    }
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { status: 'ok' };
  };
}
