import { createHash, hkdfSync, timingSafeEqual } from 'node:crypto';

import type { Context } from 'koa';
import {
  calculateJwkThumbprint,
  decodeProtectedHeader,
  EmbeddedJWK,
  errors as joseErrors,
  jwtVerify,
  type JWK,
} from 'jose';

import type { TokenStore } from '../adapter/token-store.ts';
import type { AdminScope } from '../clients/admin-rights.ts';
import { findActiveOwnerScopes } from '../clients/client.repository.ts';
import type { Clock } from '../clock.ts';
import type { Db } from '../db/connect.ts';
import { MayflyError } from '../errors.ts';
import { hasPrivateMembers } from '../keys/jwk.ts';
import type { VerificationKeys } from '../keys/key-ring.ts';
import type { JwtAccessTokenClaims } from '../adapter/presented-jwt.ts';
import { verifyJwtAccessToken } from '../oidc/jwt-access-tokens.ts';
import { ASYMMETRIC_ALGS } from '../oidc/provider.ts';

/** The admin client behind a request, proven by a DPoP-bound token and a fresh proof of its key. */
export interface AdminPrincipal {
  clientId: string;
  scopes: ReadonlySet<string>;
  jkt: string;
}

export interface AdminAuthDeps {
  issuer: string;
  /** `<issuer>/admin` */
  audience: string;
  db: Db;
  tokens: TokenStore;
  clock: Clock;
  verificationKeys(): VerificationKeys;
  /** When set, every proof must carry a nonce this server issued (MAYFLY_DPOP_REQUIRE_NONCE). */
  nonces?: AdminNonces | undefined;
}

/** A proof is accepted while its iat is this close to now, either side; its jti is remembered a little longer. */
const PROOF_WINDOW_SECONDS = 300;
const PROOF_REPLAY_SECONDS = 2 * PROOF_WINDOW_SECONDS + 60;
const CLOCK_TOLERANCE_SECONDS = 5;
const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*$/;

const refuse = (message: string) => new MayflyError('invalid_token', message);
const refuseProof = (message: string) => new MayflyError('invalid_dpop_proof', message);

/**
 * Authenticates an admin API request: a JWT access token issued by this server for the admin audience, bound
 * to a key (cnf.jkt), presented with the DPoP scheme and a proof of that key made for this very request.
 * Everything that can be checked without the database is checked first.
 * @see RFC 9449 §4.3, §7.1; RFC 9068 §4; RFC 6750 §3.1
 */
export async function authenticateAdmin(ctx: Context, deps: AdminAuthDeps): Promise<AdminPrincipal> {
  const token = readDpopToken(ctx);
  const claims = await verifyAdminToken(token, deps);
  const proof = await verifyProof(ctx, token, claims.jkt, deps);

  if (await deps.tokens.isRevoked(claims.jti)) throw refuse('the access token has been revoked');
  const granted = await findActiveOwnerScopes(
    deps.db,
    claims.clientId,
    new Date(claims.iat * 1000),
    deps.audience,
  );
  if (!granted) throw refuse('the client of the access token is disabled or deleted');
  const now = deps.clock.now();
  const replayId = createHash('sha256').update(`admin\0${claims.jkt}\0${proof.jti}`).digest('base64url');
  const first = await deps.tokens.claimOnce({
    id: replayId,
    expiresAt: new Date(now.getTime() + PROOF_REPLAY_SECONDS * 1000),
    now,
  });
  if (!first) throw refuseProof('the DPoP proof has been used before: make a new proof for every request');
  // A scope taken away since the token was issued is gone at once, not when the token expires.
  const scopes = new Set([...claims.scopes].filter((scope) => granted.includes(scope)));
  return { clientId: claims.clientId, scopes, jkt: claims.jkt };
}

export function requireScope(principal: AdminPrincipal, scope: AdminScope): void {
  if (!principal.scopes.has(scope)) {
    throw new MayflyError('insufficient_scope', `this request needs a token with the ${scope} scope`);
  }
}

function readDpopToken(ctx: Context): string {
  const header = ctx.get('authorization');
  if (!header) {
    throw new MayflyError(
      'token_required',
      'the admin API needs a DPoP-bound access token for the admin audience: Authorization: DPoP <token>',
    );
  }
  const match = /^(\S+) +(\S+)$/.exec(header.trim());
  const scheme = match?.[1]?.toLowerCase();
  const token = match?.[2];
  if (scheme === 'bearer') {
    throw refuse(
      'the admin API accepts DPoP-bound tokens only, presented with the DPoP scheme and a DPoP proof',
    );
  }
  if (scheme !== 'dpop' || token === undefined || !TOKEN68.test(token)) {
    throw refuse('expected an Authorization header of the form: DPoP <access token>');
  }
  return token;
}

async function verifyAdminToken(
  token: string,
  deps: AdminAuthDeps,
): Promise<{ jti: string; iat: number; clientId: string; scopes: Set<string>; jkt: string }> {
  let claims: JwtAccessTokenClaims;
  try {
    claims = await verifyJwtAccessToken(token, { ...deps, clockToleranceSeconds: CLOCK_TOLERANCE_SECONDS });
  } catch (error) {
    throw refuse(describeTokenFailure(error));
  }
  if (claims.aud !== deps.audience)
    throw refuse(`the access token is not for the admin API (${deps.audience})`);
  const jkt = claims.cnf?.jkt;
  if (jkt === undefined) throw refuse('the access token is not DPoP-bound: request it with a DPoP proof');
  const scopes = new Set(claims.scope === undefined ? [] : claims.scope.split(' '));
  return { jti: claims.jti, iat: claims.iat, clientId: claims.client_id, scopes, jkt };
}

function describeTokenFailure(error: unknown): string {
  if (error instanceof joseErrors.JWTExpired) return 'the access token has expired';
  if (error instanceof joseErrors.JWTClaimValidationFailed) {
    return error.claim === 'iss'
      ? 'the access token was not issued by this server'
      : `the access token's ${error.claim} claim is not acceptable`;
  }
  if (
    error instanceof joseErrors.JWSSignatureVerificationFailed ||
    error instanceof joseErrors.JWKSNoMatchingKey
  ) {
    return 'the access token was not signed by this server';
  }
  return 'the access token is not a JWT access token issued by this server';
}

async function verifyProof(
  ctx: Context,
  token: string,
  boundJkt: string,
  deps: AdminAuthDeps,
): Promise<{ jti: string }> {
  const raw = ctx.req.headers.dpop;
  // Node joins repeated headers with ", "; a compact JWS never contains a comma.
  if (raw === undefined || raw === '') throw refuseProof('a DPoP proof header is required');
  if (Array.isArray(raw) || raw.includes(',')) throw refuseProof('send exactly one DPoP proof header');

  let jwk: JWK;
  try {
    const header = decodeProtectedHeader(raw);
    if (typeof header.jwk !== 'object' || hasPrivateMembers(header.jwk)) {
      throw refuseProof('the proof must carry the public key that signed it, and only a public key');
    }
    jwk = header.jwk;
  } catch (error) {
    if (error instanceof MayflyError) throw error;
    throw refuseProof('the DPoP proof is not a JWT');
  }

  let payload: Record<string, unknown>;
  try {
    ({ payload } = await jwtVerify(raw, EmbeddedJWK, {
      typ: 'dpop+jwt',
      algorithms: ASYMMETRIC_ALGS,
      requiredClaims: ['jti', 'htm', 'htu', 'iat', 'ath'],
      currentDate: deps.clock.now(),
      clockTolerance: CLOCK_TOLERANCE_SECONDS,
    }));
  } catch (error) {
    throw refuseProof(describeProofFailure(error));
  }
  const { jti, htm, htu, iat, ath, nonce } = payload;
  if (deps.nonces && !(typeof nonce === 'string' && deps.nonces.accepts(nonce))) {
    throw new MayflyError(
      'use_dpop_nonce',
      nonce === undefined
        ? 'this server requires a nonce in DPoP proofs: use the one in the DPoP-Nonce header'
        : 'the proof nonce is stale or was not issued here: use the one in the DPoP-Nonce header',
      [],
      { 'DPoP-Nonce': deps.nonces.current() },
    );
  }
  if (typeof jti !== 'string' || jti.length < 16 || jti.length > 256) {
    throw refuseProof('the proof jti must be a unique value of 16 to 256 characters');
  }
  if (htm !== ctx.method) throw refuseProof(`the proof htm must be ${ctx.method}`);
  if (typeof htu !== 'string' || !matchesRequestUrl(htu, ctx, deps.issuer)) {
    throw refuseProof(
      `the proof htu must be ${deps.issuer}${ctx.path}: this request's URL at the issuer, without query or fragment`,
    );
  }
  const now = deps.clock.now().getTime() / 1000;
  if (typeof iat !== 'number' || Math.abs(now - iat) > PROOF_WINDOW_SECONDS + CLOCK_TOLERANCE_SECONDS) {
    throw refuseProof('the proof iat is too far from the current time');
  }
  if (ath !== createHash('sha256').update(token).digest('base64url')) {
    throw refuseProof('the proof ath does not match the access token');
  }
  if ((await calculateJwkThumbprint(jwk)) !== boundJkt) {
    throw refuseProof('the proof is signed by a key other than the one the access token is bound to');
  }
  return { jti };
}

function describeProofFailure(error: unknown): string {
  if (error instanceof joseErrors.JOSEAlgNotAllowed) {
    return `the proof must be signed with one of ${ASYMMETRIC_ALGS.join(', ')}`;
  }
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) return 'the proof signature is invalid';
  if (error instanceof joseErrors.JWTClaimValidationFailed) {
    return error.claim === 'typ'
      ? 'the proof typ header must be dpop+jwt'
      : `the proof ${error.claim} claim is missing or invalid`;
  }
  return 'the DPoP proof is malformed';
}

/** @see RFC 9449 §4.3 (step 9): compared without query and fragment, after URI normalisation. */
function matchesRequestUrl(htu: string, ctx: Context, issuer: string): boolean {
  const claimed = URL.parse(htu);
  if (!claimed) return false;
  claimed.search = '';
  claimed.hash = '';
  // The issuer is the admin API's one canonical origin; the Host header is the caller's to choose, so a proof
  // made for another server must not become valid here by naming that server in Host.
  return URL.parse(`${issuer}${ctx.path}`)?.href === claimed.href;
}

const NONCE_STEP_SECONDS = 60;

/**
 * Server-provided nonces for admin API proofs, derived from the shared nonce secret and the time step, so every
 * instance issues and accepts the same values without storing them. Valid two steps either side.
 * @see RFC 9449 §9
 */
export class AdminNonces {
  readonly #secret: Buffer;
  readonly #clock: Clock;

  constructor(secret: Buffer, clock: Clock) {
    this.#secret = secret;
    this.#clock = clock;
  }

  current(): string {
    return this.#derive(this.#step());
  }

  accepts(nonce: string): boolean {
    const presented = Buffer.from(nonce);
    const step = this.#step();
    return [-2, -1, 0, 1, 2].some((offset) => {
      const expected = Buffer.from(this.#derive(step + offset));
      return expected.length === presented.length && timingSafeEqual(expected, presented);
    });
  }

  #step(): number {
    return Math.floor(this.#clock.now().getTime() / 1000 / NONCE_STEP_SECONDS);
  }

  #derive(step: number): string {
    const salt = Buffer.alloc(8);
    salt.writeBigUInt64BE(BigInt(step));
    return Buffer.from(hkdfSync('sha256', this.#secret, salt, 'Mayfly admin API DPoP nonce', 32)).toString(
      'base64url',
    );
  }
}
