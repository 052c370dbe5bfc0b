import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';

import type { Context, Next } from 'koa';

interface RequestScope {
  requestId: string;
}

const scope = new AsyncLocalStorage<RequestScope>();

/** The id of the request being handled, for every log line written on its behalf. */
export function currentRequestId(): string | undefined {
  return scope.getStore()?.requestId;
}

/** A caller's own id is kept when it is short and plain, so a trace can span the proxy and Mayfly. */
const ACCEPTED_ID = /^[\w.:-]{1,128}$/;
export const REQUEST_ID_HEADER = 'X-Request-Id';

/**
 * Gives every request an id, answers it in the `X-Request-Id` header, and makes it available to every log line
 * written while the request is handled. The id a trusted proxy sent is kept (so one id spans the proxy's log and
 * Mayfly's); without a trusted proxy a caller could choose the id its audit lines carry, so a new UUID is used.
 */
export function assignRequestId(trustProxy: boolean) {
  return function requestId(ctx: Context, next: Next): Promise<void> {
    const offered = trustProxy ? ctx.get(REQUEST_ID_HEADER) : '';
    const id = ACCEPTED_ID.test(offered) ? offered : randomUUID();
    ctx.set(REQUEST_ID_HEADER, id);
    ctx.state.requestId = id;
    return scope.run({ requestId: id }, () => next());
  };
}
