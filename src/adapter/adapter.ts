import { createHash } from 'node:crypto';

import type { Adapter, AdapterFactory, AdapterPayload } from 'oidc-provider';

import type { Clock } from '../clock.ts';
import type { Db } from '../db/connect.ts';
import {
  consumePayload,
  deletePayload,
  deletePayloadsByGrantId,
  findPayload,
  type PayloadLookup,
} from './oidc-payload.repository.ts';
import { deleteReplayMarker, extendReplayMarker } from './replay-marker.repository.ts';
import { insertRevokedToken } from './revoked-token.repository.ts';
import { currentPresentedJwt } from './presented-jwt.ts';
import type { TokenStore } from './token-store.ts';

export interface AdapterDependencies {
  db: Db;
  /** The hot reads and writes, batched. */
  tokens: TokenStore;
  clock: Clock;
  /** Client metadata for oidc-provider, or undefined when the client does not exist or may not act. */
  findClientMetadata(clientId: string): Promise<AdapterPayload | undefined>;
  /**
   * How long a replay marker is kept when first written, in seconds: at least the DPoP proof acceptance window
   * plus clock skew, so the common case needs no second write.
   */
  replayWindowSeconds: number;
  /** Told of each one-time value claimed for the first time (before the provider goes on); may throw. */
  oneTimeValueClaimed?: ((id: string) => Promise<void>) | undefined;
}

/** Ids are stored hashed: for access tokens and registration tokens the id is the bearer value itself. */
function hashId(id: string): string {
  return createHash('sha256').update(id, 'utf8').digest('base64url');
}

/** RFC 6749 §A.1: a client_id is printable ASCII (VSCHAR); bounded here. Anything else cannot be a client. */
const CLIENT_ID = /^[\x20-\x7E]{1,255}$/;

export function createAdapterFactory(deps: AdapterDependencies): AdapterFactory {
  return (model: string): Adapter => {
    switch (model) {
      case 'Client':
        return new ClientAdapter(deps);
      case 'ReplayDetection':
        return new ReplayDetectionAdapter(deps);
      case 'ClientCredentials':
        return new ClientCredentialsAdapter(deps);
      case 'AccessToken':
      case 'RefreshToken':
        // Issued only by grants Mayfly does not enable; looking them up would cost a query per introspection.
        return new NeverIssuedAdapter(model);
      default:
        return new PayloadAdapter(model, deps);
    }
  };
}

/** Any oidc-provider model, stored in `oidc_payload` under hashed ids. */
class PayloadAdapter implements Adapter {
  protected readonly model: string;
  protected readonly deps: AdapterDependencies;

  constructor(model: string, deps: AdapterDependencies) {
    this.model = model;
    this.deps = deps;
  }

  async upsert(id: string, payload: AdapterPayload, expiresIn?: number): Promise<void> {
    const { jti: _bearerValue, ...stored } = payload;
    await this.deps.tokens.savePayload({
      model: this.model,
      id: hashId(id),
      payload: stored,
      grantId: payload.grantId ?? null,
      uid: payload.uid ? hashId(payload.uid) : null,
      userCode: payload.userCode ? hashId(payload.userCode) : null,
      expiresAt:
        expiresIn === undefined ? null : new Date(this.deps.clock.now().getTime() + expiresIn * 1000),
    });
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    const found = await this.deps.tokens.findPayload(this.model, hashId(id), this.deps.clock.now());
    return found && { ...found.payload, jti: id, ...(found.consumed ? { consumed: true } : {}) };
  }

  async findByUid(uid: string): Promise<AdapterPayload | undefined> {
    return this.findBy({ column: 'uid', value: hashId(uid) });
  }

  async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
    return this.findBy({ column: 'user_code', value: hashId(userCode) });
  }

  async consume(id: string): Promise<void> {
    await consumePayload(this.deps.db, this.model, hashId(id), this.deps.clock.now());
  }

  async destroy(id: string): Promise<void> {
    await deletePayload(this.deps.db, this.model, hashId(id));
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    await deletePayloadsByGrantId(this.deps.db, this.model, grantId);
  }

  private async findBy(lookup: PayloadLookup): Promise<AdapterPayload | undefined> {
    const found = await findPayload(this.deps.db, this.model, lookup, this.deps.clock.now());
    return found && { ...found.payload, ...(found.consumed ? { consumed: true } : {}) };
  }
}

/** Opaque client_credentials tokens, plus the JWT access tokens presented at introspection and revocation. */
class ClientCredentialsAdapter extends PayloadAdapter {
  constructor(deps: AdapterDependencies) {
    super('ClientCredentials', deps);
  }

  override async find(id: string): Promise<AdapterPayload | undefined> {
    const presented = currentPresentedJwt();
    if (presented?.reference !== id) return super.find(id);
    const claims = presented.claims;
    if (!claims || (await this.deps.tokens.isRevoked(claims.jti))) return undefined;
    return {
      kind: 'ClientCredentials',
      jti: claims.jti,
      iat: claims.iat,
      exp: claims.exp,
      clientId: claims.client_id,
      aud: claims.aud,
      ...(claims.scope ? { scope: claims.scope } : {}),
      ...(claims.cnf?.jkt ? { jkt: claims.cnf.jkt } : {}),
    };
  }

  override async destroy(id: string): Promise<void> {
    const claims = currentPresentedJwt()?.claims;
    if (claims?.jti === id) {
      await insertRevokedToken(this.deps.db, claims.jti, claims.client_id, new Date(claims.exp * 1000));
      return;
    }
    await super.destroy(id);
  }
}

/** Models looked up by id alone: nothing is ever found by uid or user code, consumed, or tied to a grant. */
abstract class IdOnlyAdapter implements Adapter {
  abstract find(id: string): Promise<AdapterPayload | undefined>;
  abstract upsert(id: string, payload: AdapterPayload, expiresIn?: number): Promise<void>;
  abstract destroy(id: string): Promise<void>;

  findByUid(): Promise<undefined> {
    return Promise.resolve(undefined);
  }

  findByUserCode(): Promise<undefined> {
    return Promise.resolve(undefined);
  }

  consume(): Promise<void> {
    return Promise.resolve();
  }

  revokeByGrantId(): Promise<void> {
    return Promise.resolve();
  }
}

/**
 * oidc-provider checks one-time values (DPoP proof and client assertion `jti`s) as find-then-upsert, which lets
 * concurrent duplicates through. Here `find` itself claims the value with one atomic insert: only the caller
 * whose insert wins sees "not found" and proceeds; every other one sees the marker and is rejected cleanly.
 * The provider already hashes these ids; they are not bearer values.
 * @see RFC 9449 §11.1, RFC 7523 §3 (jti replay)
 */
class ReplayDetectionAdapter extends IdOnlyAdapter {
  private readonly deps: AdapterDependencies;

  constructor(deps: AdapterDependencies) {
    super();
    this.deps = deps;
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    const now = this.deps.clock.now();
    const expiresAt = new Date(now.getTime() + this.deps.replayWindowSeconds * 1000);
    if (await this.deps.tokens.claimOnce({ id, expiresAt, now })) {
      await this.deps.oneTimeValueClaimed?.(id);
      return undefined;
    }
    // The provider checks this payload against its own (real) clock and treats an invalid one as absent, which
    // would let the replay through: date it from real time, whatever clock the database rows follow.
    const issuedAt = Math.floor(Date.now() / 1000);
    return {
      kind: 'ReplayDetection',
      jti: id,
      iat: issuedAt,
      exp: issuedAt + this.deps.replayWindowSeconds,
    };
  }

  async upsert(id: string, _payload: AdapterPayload, expiresIn?: number): Promise<void> {
    // The marker exists since find(); only a value valid for longer than the window needs a later expiry.
    if (expiresIn === undefined || expiresIn <= this.deps.replayWindowSeconds) return;
    await extendReplayMarker(this.deps.db, id, new Date(this.deps.clock.now().getTime() + expiresIn * 1000));
  }

  async destroy(id: string): Promise<void> {
    await deleteReplayMarker(this.deps.db, id);
  }
}

/** A model no enabled grant creates: nothing to find, and writing one is a configuration error. */
class NeverIssuedAdapter extends IdOnlyAdapter {
  private readonly model: string;

  constructor(model: string) {
    super();
    this.model = model;
  }

  find(): Promise<undefined> {
    return Promise.resolve(undefined);
  }

  upsert(): Promise<void> {
    return Promise.reject(new Error(`${this.model} is never issued by Mayfly`));
  }

  destroy(): Promise<void> {
    return Promise.resolve();
  }
}

/** Clients live in Mayfly's own tables; the provider reads them, it never writes them. */
class ClientAdapter extends IdOnlyAdapter {
  private readonly deps: AdapterDependencies;

  constructor(deps: AdapterDependencies) {
    super();
    this.deps = deps;
  }

  find(id: string): Promise<AdapterPayload | undefined> {
    // Whatever a request claims as client_id (form, Basic user, assertion sub) reaches here unchecked.
    if (!CLIENT_ID.test(id)) return Promise.resolve(undefined);
    return this.deps.findClientMetadata(id);
  }

  upsert(): Promise<void> {
    return Promise.reject(new Error('clients are managed by Mayfly, not through the provider'));
  }

  destroy(): Promise<void> {
    return Promise.reject(new Error('clients are managed by Mayfly, not through the provider'));
  }
}
