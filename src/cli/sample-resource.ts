import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

import { calculateJwkThumbprint, EmbeddedJWK, jwtVerify } from 'jose';
import * as oauth from 'oauth4webapi';

/** What the sample resource needs from Mayfly: its metadata, and how to introspect an opaque token. */
export interface SampleResourceOptions {
  as: oauth.AuthorizationServer;
  /** The resource identifier: the audience every token must name. */
  audience: string;
  introspect(token: string): Promise<oauth.IntrospectionResponse>;
  transport: Omit<oauth.ValidateJWTAccessTokenOptions, 'requireDPoP' | 'signingAlgorithms'>;
  /** Preferred port; 0 or a busy port means any free one. */
  port: number;
}

export interface SampleResource {
  url: string;
  /** Set when the preferred port could not be used. */
  portFallbackReason: string | undefined;
  close(): Promise<void>;
}

const PROOF_ALGS = ['ES256', 'ES384', 'ES512', 'PS256', 'RS256', 'EdDSA', 'Ed25519'];
const PROOF_WINDOW_SECONDS = 300;

/**
 * A minimal protected resource, as a newcomer would write one: JWT access tokens are validated locally with
 * oauth4webapi's validateJwtAccessToken (DPoP required, audience = the resource identifier, keys from the
 * server's JWKS); opaque tokens are introspected and their DPoP proof checked against cnf.jkt.
 */
export async function startSampleResource(options: SampleResourceOptions): Promise<SampleResource> {
  let url = '';
  const server = createServer((req, res) => {
    void answerRequest(req, res, url, options);
  });
  let portFallbackReason: string | undefined;
  try {
    await listen(server, options.port);
  } catch (error) {
    portFallbackReason = `port ${options.port} is not available (${(error as NodeJS.ErrnoException).code ?? 'error'})`;
    await listen(server, 0);
  }
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    portFallbackReason,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => {
          if (error) reject(error);
          else resolve();
        });
      }),
  };
}

async function listen(server: Server, port: number): Promise<void> {
  server.listen(port, '127.0.0.1');
  await Promise.race([
    once(server, 'listening'),
    once(server, 'error').then(([error]) => {
      throw error;
    }),
  ]);
}

async function answerRequest(
  req: IncomingMessage,
  res: ServerResponse,
  origin: string,
  options: SampleResourceOptions,
) {
  const reply = (status: number, body: object, challenge?: string) => {
    res.writeHead(status, {
      'content-type': 'application/json',
      ...(challenge
        ? { 'www-authenticate': `DPoP error="invalid_token", error_description="${challenge}"` }
        : {}),
    });
    res.end(JSON.stringify(body));
  };
  const request = toFetchRequest(req, origin);
  try {
    const caller = isJwt(readToken(request) ?? '')
      ? await validateJwt(request, options)
      : await validateByIntrospection(request, options);
    reply(200, { message: `hello, ${caller.client_id}`, client_id: caller.client_id, scope: caller.scope });
  } catch (error) {
    const reason = error instanceof Error ? error.message.replace(/["\\]/g, '') : 'invalid token';
    reply(401, { error: 'invalid_token', error_description: reason }, reason);
  }
}

async function validateJwt(request: Request, options: SampleResourceOptions) {
  const claims = await oauth.validateJwtAccessToken(options.as, request, options.audience, {
    requireDPoP: true,
    signingAlgorithms: ['ES256'],
    ...options.transport,
  });
  return { client_id: claims.client_id, scope: claims.scope };
}

/** RFC 7662 for the token, then RFC 9449 §4.3 and §7.1 for the proof that comes with it. */
async function validateByIntrospection(request: Request, options: SampleResourceOptions) {
  const authorization = request.headers.get('authorization') ?? '';
  const token = readToken(request);
  if (!token || !/^dpop /i.test(authorization)) throw new Error('expected Authorization: DPoP <token>');
  const info = await options.introspect(token);
  const audiences = typeof info.aud === 'string' ? [info.aud] : (info.aud ?? []);
  if (!info.active || !audiences.includes(options.audience))
    throw new Error('the token is not active for this resource');
  const proof = request.headers.get('dpop');
  if (!proof) throw new Error('a DPoP proof is required');
  const { payload, protectedHeader } = await jwtVerify(proof, EmbeddedJWK, {
    typ: 'dpop+jwt',
    algorithms: PROOF_ALGS,
  });
  const url = new URL(request.url);
  const now = Date.now() / 1000;
  if (
    payload.htm !== request.method ||
    payload.htu !== `${url.origin}${url.pathname}` ||
    typeof payload.iat !== 'number' ||
    Math.abs(now - payload.iat) > PROOF_WINDOW_SECONDS ||
    payload.ath !== createHash('sha256').update(token).digest('base64url') ||
    !protectedHeader.jwk ||
    (await calculateJwkThumbprint(protectedHeader.jwk)) !== info.cnf?.jkt
  ) {
    throw new Error('the DPoP proof does not match this request or this token');
  }
  return { client_id: info.client_id, scope: info.scope };
}

function readToken(request: Request): string | undefined {
  return /^(?:dpop|bearer) +(\S+)$/i.exec(request.headers.get('authorization') ?? '')?.[1];
}

const isJwt = (token: string) => /^[\w-]+\.[\w-]+\.[\w-]+$/.test(token);

function toFetchRequest(req: IncomingMessage, origin: string): Request {
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (typeof value === 'string') headers.set(name, value);
    else if (Array.isArray(value)) for (const v of value) headers.append(name, v);
  }
  return new Request(`${origin}${req.url ?? '/'}`, { method: req.method ?? 'GET', headers });
}
