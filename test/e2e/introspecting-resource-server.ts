import type { IncomingMessage, ServerResponse } from 'node:http';

import { calculateJwkThumbprint, EmbeddedJWK, jwtVerify } from 'jose';
import * as client from 'openid-client';

import { accessTokenHash, allowHttp, listen, type Listening } from './helpers.ts';

/**
 * A resource server that knows nothing of token formats: for every request it asks Mayfly (RFC 7662, with
 * openid-client, authenticated as its own client), accepts only an active DPoP-bound token for its own audience,
 * then checks the request's DPoP proof (RFC 9449 §4.3, §7.1) and that its key is the one named by cnf.jkt.
 */
export interface IntrospectingResourceServer extends Listening {
  /** Its own openid-client configuration, so tests can introspect and attempt revocation as this client. */
  config: client.Configuration;
}

export interface ResourceServerOptions {
  issuer: string;
  audience: string;
  clientId: string;
  auth: client.ClientAuth;
}

/** Proof algorithms the resource server accepts (asymmetric only). */
const PROOF_ALGS = ['ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519', 'PS256', 'RS256'];
/** How far a proof's iat may be from now, in seconds. */
const PROOF_WINDOW = 60;

class Refusal extends Error {}

export async function startIntrospectingResourceServer(
  options: ResourceServerOptions,
): Promise<IntrospectingResourceServer> {
  const config = await client.discovery(new URL(options.issuer), options.clientId, undefined, options.auth, {
    execute: [allowHttp],
  });
  const seenProofs = new Set<string>();

  async function authorize(req: IncomingMessage, origin: string) {
    const [scheme, token, ...rest] = (req.headers.authorization ?? '').split(' ');
    if (scheme?.toLowerCase() !== 'dpop' || !token || rest.length) {
      throw new Refusal('DPoP authorization required');
    }
    const proof = req.headers.dpop;
    if (typeof proof !== 'string') throw new Refusal('DPoP proof required');

    const info = await client.tokenIntrospection(config, token);
    if (!info.active) throw new Refusal('token inactive');
    const aud = Array.isArray(info.aud) ? info.aud : [info.aud];
    if (!aud.includes(options.audience)) throw new Refusal('wrong audience');
    const jkt = info.cnf?.jkt;
    if (info.token_type !== 'DPoP' || typeof jkt !== 'string') throw new Refusal('token not DPoP-bound');

    const { payload, protectedHeader } = await jwtVerify(proof, EmbeddedJWK, {
      typ: 'dpop+jwt',
      algorithms: PROOF_ALGS,
    }).catch(() => {
      throw new Refusal('invalid DPoP proof');
    });
    const { htm, htu, iat, jti, ath } = payload as Record<string, unknown>;
    const url = new URL(req.url ?? '/', origin);
    if (htm !== req.method || htu !== `${origin}${url.pathname}`)
      throw new Refusal('proof for another request');
    if (typeof iat !== 'number' || Math.abs(Date.now() / 1000 - iat) > PROOF_WINDOW) {
      throw new Refusal('stale proof');
    }
    if (ath !== accessTokenHash(token)) throw new Refusal('proof for another token');
    if (typeof jti !== 'string' || seenProofs.has(jti)) throw new Refusal('proof replayed');
    seenProofs.add(jti);
    if ((await calculateJwkThumbprint(protectedHeader.jwk ?? {})) !== jkt) {
      throw new Refusal('proof key is not the token key');
    }
    return info;
  }

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const reply = (status: number, body: object) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    try {
      const info = await authorize(req, listening.url);
      reply(200, { client_id: info.client_id, scope: info.scope });
    } catch (error) {
      if (!(error instanceof Refusal)) {
        reply(500, { error: 'server_error', error_description: (error as Error).message });
        return;
      }
      res.setHeader('WWW-Authenticate', 'DPoP error="invalid_token", algs="ES256"');
      reply(401, { error: 'invalid_token', error_description: error.message });
    }
  };
  const listening = await listen((req, res) => {
    void handle(req, res);
  });
  return { ...listening, config };
}
