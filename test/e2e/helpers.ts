import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type RequestListener } from 'node:http';
import type { AddressInfo } from 'node:net';

import {
  calculateJwkThumbprint,
  decodeJwt,
  exportJWK,
  type CryptoKey,
  type JSONWebKeySet,
  type JWTPayload,
} from 'jose';
import * as oauth from 'oauth4webapi';
import * as client from 'openid-client';

/*
 * Mayfly and the resource servers under test listen on plain HTTP over loopback, so both client libraries need
 * their documented opt-in to http:// URLs. The libraries mark it deprecated only to make it stand out.
 */
// eslint-disable-next-line @typescript-eslint/no-deprecated
export const insecure = { [oauth.allowInsecureRequests]: true } as const;
// eslint-disable-next-line @typescript-eslint/no-deprecated
export const allowHttp: (config: client.Configuration) => void = client.allowInsecureRequests;

/** A real HTTP server on 127.0.0.1 (a resource server under test, or a fake peer). */
export interface Listening {
  /** Origin, without a trailing slash: http://127.0.0.1:<port> */
  url: string;
  close(): Promise<void>;
}

export async function listen(handler: RequestListener): Promise<Listening> {
  const server = createServer(handler);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
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

/** The incoming request as a Fetch API Request, for validators that take one (oauth4webapi). */
export function toFetchRequest(req: IncomingMessage, origin: string): Request {
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (typeof value === 'string') headers.set(name, value);
    else if (Array.isArray(value)) for (const v of value) headers.append(name, v);
  }
  return new Request(`${origin}${req.url ?? '/'}`, { method: req.method ?? 'GET', headers });
}

/** RFC 7638 thumbprint of a public key, computed independently of the client library under test. */
export async function thumbprintOf(publicKey: CryptoKey): Promise<string> {
  return calculateJwkThumbprint(await exportJWK(publicKey));
}

/** RFC 9449 §4.2 `ath`: base64url SHA-256 of the access token. */
export function accessTokenHash(token: string): string {
  return createHash('sha256').update(token, 'ascii').digest('base64url');
}

/** Claims of a JWT access token as Mayfly issues them (RFC 9068 with cnf.jkt). */
export interface AccessTokenClaims extends JWTPayload {
  client_id?: string;
  scope?: string;
  cnf?: { jkt?: string };
}

export async function fetchJwks(url: string): Promise<JSONWebKeySet> {
  return (await (await fetch(url)).json()) as JSONWebKeySet;
}

/** A JSON response body, whose shape the assertions check. */
export type Json = Record<string, unknown>;

export const claimsOf = (token: string): AccessTokenClaims => decodeJwt<AccessTokenClaims>(token);

/** Records what a client library actually sent, while passing each request through to the network. */
export interface SentRequest {
  url: string;
  headers: Headers;
  body: URLSearchParams;
  status: number;
  responseHeaders: Headers;
}

/** What oauth4webapi and openid-client hand to a custom fetch. */
export interface FetchOptions {
  body?: unknown;
  headers: Record<string, string>;
  method: string;
  redirect?: 'manual';
  signal?: AbortSignal | undefined;
  duplex?: 'half';
}

export function recordingFetch(sent: SentRequest[]) {
  return async (url: string, init: FetchOptions): Promise<Response> => {
    const response = await fetch(url, init as RequestInit);
    const { body } = init;
    sent.push({
      url,
      headers: new Headers(init.headers),
      body: new URLSearchParams(body instanceof URLSearchParams || typeof body === 'string' ? body : ''),
      status: response.status,
      responseHeaders: response.headers,
    });
    return response;
  };
}
