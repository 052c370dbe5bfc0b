import { Batcher } from '../db/batcher.ts';
import type { Statements } from '../db/statements.ts';
import {
  findPayloadsById,
  upsertPayloads,
  type PayloadRow,
  type StoredPayload,
} from './oidc-payload.repository.ts';
import { claimReplayMarkers, type ReplayClaim } from './replay-marker.repository.ts';
import { findRevoked } from './revoked-token.repository.ts';

/**
 * The shared token state every token and introspection request touches: one-time values, stored (opaque) tokens
 * and revoked JWTs. Each operation is group-committed (see db/batcher.ts) over one prepared statement, so
 * concurrent requests share round trips, and a statement failure fails only the requests of its batch.
 */
export class TokenStore {
  readonly #statements: Statements;
  readonly #claims: Batcher<ReplayClaim, boolean>;
  readonly #revoked: Batcher<string, boolean>;
  readonly #writes: Batcher<PayloadRow, undefined>;
  /** One per model: a statement reads one model. */
  readonly #reads = new Map<string, Batcher<{ id: string; now: Date }, StoredPayload | undefined>>();

  constructor(statements: Statements) {
    this.#statements = statements;
    this.#claims = new Batcher((claims) => claimReplayMarkers(statements, claims));
    this.#revoked = new Batcher((jtis) => findRevoked(statements, jtis));
    this.#writes = new Batcher(async (rows) => {
      await upsertPayloads(statements, rows);
      return rows.map(() => undefined);
    });
  }

  /**
   * Records a one-time value (a proof's or an assertion's `jti`): true for the one request that claims it first,
   * across every instance; false for each replay.
   * @see RFC 9449 §11.1, RFC 7523 §3
   */
  claimOnce(claim: ReplayClaim): Promise<boolean> {
    return this.#claims.load(claim);
  }

  isRevoked(jti: string): Promise<boolean> {
    return this.#revoked.load(jti);
  }

  savePayload(row: PayloadRow): Promise<undefined> {
    return this.#writes.load(row);
  }

  /** An unexpired payload of `model` by (hashed) id. */
  findPayload(model: string, id: string, now: Date): Promise<StoredPayload | undefined> {
    let reads = this.#reads.get(model);
    if (!reads) {
      reads = new Batcher((lookups) =>
        findPayloadsById(
          this.#statements,
          model,
          lookups.map((lookup) => lookup.id),
          new Date(Math.max(...lookups.map((lookup) => lookup.now.getTime()))),
        ),
      );
      this.#reads.set(model, reads);
    }
    return reads.load({ id, now });
  }
}
