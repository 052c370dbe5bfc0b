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

/** A client_credentials request with client_secret_basic and, when a key is given, a fresh DPoP proof. */
export async function requestToken(baseUrl: string, req: TokenRequest) {
  const form: Record<string, string> = { grant_type: 'client_credentials' };
  if (req.resource !== undefined) form.resource = req.resource;
  if (req.scope !== undefined) form.scope = req.scope;
  let call = request(baseUrl)
    .post('/token')
    .type('form')
    .set('Authorization', basicAuth(req.clientId, req.secret));
  const proof = req.proof ?? (req.key ? await createProof(req.key, { htu: `${baseUrl}/token` }) : undefined);
  if (proof) call = call.set('DPoP', proof);
  return call.send(form);
}
