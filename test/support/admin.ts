import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { importJWK } from 'jose';
import request from 'supertest';

import { ADMIN_PREFIX } from '../../src/admin/admin-api.ts';
import type { AdminCredentials } from '../../src/admin/bootstrap.ts';
import { createProof, generateDpopKey, type DpopKey, type ProofOptions } from './dpop.ts';
import { createClientAssertion, JWT_BEARER_ASSERTION, postToken } from './oauth.ts';
import type { TestServer } from './server.ts';

export async function readAdminCredentials(server: TestServer): Promise<AdminCredentials> {
  return JSON.parse(await readFile(join(server.keysDir, 'admin.json'), 'utf8')) as AdminCredentials;
}

export { ADMIN_PREFIX };

export interface AdminToken {
  token: string;
  key: DpopKey;
}

/** An admin token the way any client gets one: client_credentials, private_key_jwt and a DPoP proof. */
export async function obtainAdminToken(
  server: TestServer,
  options: { scope?: string; credentials?: AdminCredentials; resource?: string } = {},
): Promise<AdminToken> {
  const credentials = options.credentials ?? (await readAdminCredentials(server));
  const key = await generateDpopKey();
  const form = {
    grant_type: 'client_credentials',
    resource: options.resource ?? `${server.url}/admin`,
    scope: options.scope ?? 'admin:read admin:write',
    client_assertion_type: JWT_BEARER_ASSERTION,
  };
  const signAssertion = async () =>
    createClientAssertion({
      clientId: credentials.client_id,
      audience: server.url,
      key: await importJWK(credentials.private_jwk, 'ES256'),
    });
  let response = await postToken(server.url, { ...form, client_assertion: await signAssertion() }, { key });
  // A server that requires DPoP nonces names the one to use (RFC 9449 §8); one retry with it.
  const nonce = response.headers['dpop-nonce'];
  if (response.status === 400 && nonce) {
    const proof = await createProof(key, { htu: `${server.url}/token`, nonce });
    response = await postToken(server.url, { ...form, client_assertion: await signAssertion() }, { proof });
  }
  if (response.status !== 200) {
    throw new Error(`admin token refused: ${response.status} ${JSON.stringify(response.body)}`);
  }
  return { token: (response.body as { access_token: string }).access_token, key };
}

export function accessTokenHash(token: string): string {
  return createHash('sha256').update(token).digest('base64url');
}

export interface AdminCallOptions {
  body?: unknown;
  /** Raw query string, appended as is. */
  query?: string;
  /** Override the Authorization header (undefined: leave it out). */
  authorization?: string | null;
  /** Send this DPoP header instead of a fresh, correct proof (null: none). */
  proof?: string | null;
  /** Changes to the fresh proof, for negative tests. */
  proofOptions?: Partial<ProofOptions>;
  contentType?: string;
}

/** One admin API request with a fresh DPoP proof made for exactly this method, URL and token. */
export async function adminCall(
  server: TestServer,
  admin: AdminToken,
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE' | 'PUT',
  path: string,
  options: AdminCallOptions = {},
) {
  const url = `${ADMIN_PREFIX}${path}`;
  const proof =
    options.proof === undefined
      ? await createProof(admin.key, {
          htm: method,
          htu: `${server.url}${url}`,
          ath: accessTokenHash(admin.token),
          ...options.proofOptions,
        })
      : options.proof;
  const target = options.query ? `${url}?${options.query}` : url;
  let call = request(server.url)[method.toLowerCase() as 'get' | 'post' | 'patch' | 'delete' | 'put'](target);
  const authorization = options.authorization === undefined ? `DPoP ${admin.token}` : options.authorization;
  if (authorization !== null) call = call.set('Authorization', authorization);
  if (proof !== null) call = call.set('DPoP', proof);
  if (options.body !== undefined) {
    call = call.set('Content-Type', options.contentType ?? 'application/json');
    return call.send(typeof options.body === 'string' ? options.body : JSON.stringify(options.body));
  }
  return call;
}
