import { randomUUID } from 'node:crypto';

import { SignJWT, type CryptoKey } from 'jose';
import request from 'supertest';

import { createProof, type DpopKey } from './dpop.ts';

export function basicAuth(clientId: string, secret: string): string {
  return `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`).toString('base64')}`;
}

export interface TokenRequest {
  clientId: string;
  secret: string;
  resource?: string | undefined;
  scope?: string | undefined;
  key?: DpopKey | undefined;
  proof?: string | undefined;
}

export interface TokenPost {
  /** Sign a fresh DPoP proof for `POST /token` with this key… */
  key?: DpopKey | undefined;
  /** …or send this proof as is. */
  proof?: string | undefined;
  authorization?: string | undefined;
}

/** POST /token with a form (an object, or a pre-encoded string for repeated or raw parameters). */
export async function postToken(
  baseUrl: string,
  form: Record<string, string> | string,
  options: TokenPost = {},
) {
  let call = request(baseUrl).post('/token').type('form');
  if (options.authorization) call = call.set('Authorization', options.authorization);
  const proof =
    options.proof ?? (options.key ? await createProof(options.key, { htu: `${baseUrl}/token` }) : undefined);
  if (proof) call = call.set('DPoP', proof);
  return call.send(form);
}

/** A client_credentials request with client_secret_basic and, when a key is given, a fresh DPoP proof. */
export function requestToken(baseUrl: string, req: TokenRequest) {
  const form: Record<string, string> = { grant_type: 'client_credentials' };
  if (req.resource !== undefined) form.resource = req.resource;
  if (req.scope !== undefined) form.scope = req.scope;
  return postToken(baseUrl, form, {
    key: req.key,
    proof: req.proof,
    authorization: basicAuth(req.clientId, req.secret),
  });
}

export interface AssertionOptions {
  clientId: string;
  /** The token endpoint, or the issuer: both are accepted audiences (RFC 7523 §3). */
  audience: string;
  key: CryptoKey | Uint8Array;
  alg?: string;
  kid?: string;
  /** Seconds since the epoch; default now and now + 60. */
  iat?: number;
  exp?: number;
}

/** A private_key_jwt client assertion with a fresh jti. @see RFC 7523 §3 */
export function createClientAssertion(options: AssertionOptions): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ iat: options.iat ?? now, exp: options.exp ?? now + 60 })
    .setProtectedHeader({ alg: options.alg ?? 'ES256', ...(options.kid ? { kid: options.kid } : {}) })
    .setIssuer(options.clientId)
    .setSubject(options.clientId)
    .setAudience(options.audience)
    .setJti(randomUUID())
    .sign(options.key);
}

export const JWT_BEARER_ASSERTION = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
