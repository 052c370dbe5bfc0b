import { IncomingMessage } from 'node:http';

import type { Context } from 'koa';

/**
 * Reads a request body up to `limit` bytes. A larger declared length is refused before reading anything, so a
 * client announcing a huge body does not hold the request open. Stopping early leaves the socket open, so that
 * the 413 still reaches the client.
 */
export async function readRequestBody(
  req: IncomingMessage,
  limit: number,
): Promise<Buffer | 'too-large' | 'aborted'> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return 'too-large';
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > limit) return 'too-large';
      chunks.push(chunk);
    }
  } catch {
    return 'aborted';
  }
  return Buffer.concat(chunks);
}

/** What each handed-over request carries (see replaceRequestBody), so that a later step need not read it. */
const handedOver = new WeakMap<IncomingMessage, Buffer>();

/**
 * The body of a request, read once: the provider is handed a fresh request with the same bytes, and a later step
 * calling this again gets them without reading anything.
 */
export async function readHandedOverBody(
  ctx: Context,
  limit: number,
): Promise<Buffer | 'too-large' | 'aborted'> {
  const known = handedOver.get(ctx.req);
  if (known) return known;
  const body = await readRequestBody(ctx.req, limit);
  if (typeof body !== 'string') replaceRequestBody(ctx, body);
  return body;
}

/**
 * Gives the provider a fresh, unread request carrying `bytes`, so it parses it as it would the original.
 */
export function replaceRequestBody(ctx: Context, bytes: Buffer): void {
  const original = ctx.req;
  const replacement = new IncomingMessage(original.socket);
  replacement.method = original.method;
  replacement.url = original.url;
  replacement.httpVersion = original.httpVersion;
  replacement.headers = { ...original.headers, 'content-length': String(bytes.length) };
  delete replacement.headers['transfer-encoding'];
  // Complete as the HTTP parser would mark it; an incomplete message destroys the socket when it ends.
  replacement.complete = true;
  replacement.push(bytes);
  replacement.push(null);
  ctx.req = replacement;
  ctx.request.req = replacement;
  handedOver.set(replacement, bytes);
}
