import { Batcher } from '../db/batcher.ts';
import type { Db } from '../db/connect.ts';
import type { Statements } from '../db/statements.ts';
import {
  findClientAccess,
  findClientStates,
  ownsLiveTokens,
  type ClientAccess,
  type ClientState,
} from './client.repository.ts';

/** Enough for every client of a large deployment; the least recently read are dropped beyond it. */
const CAPACITY = 10_000;

/**
 * What the token path reads about a client, kept per process and reused while `client.version` (bumped by
 * triggers on every change to the client, its secrets, grants, rights and their resources) is unchanged and no
 * secret has expired. Each use still checks the version in the database, so a change made through any instance,
 * such as disabling the client, applies to the very next request: the cache saves the heavy read, never the check.
 * The checks of concurrent requests share one statement (see db/batcher.ts).
 */
export class ClientAccessCache {
  readonly #entries = new Map<string, ClientAccess>();
  /** Clients this process served and then found deleted, most recent last (for anomaly detection). */
  readonly #deleted = new Set<string>();
  readonly #states: Batcher<string, ClientState | undefined>;
  readonly #db: Db;

  constructor(db: Db, statements: Statements) {
    this.#db = db;
    this.#states = new Batcher((ids) => findClientStates(statements, ids));
  }

  /**
   * What this process last read about a client, without asking the database: for decisions that may lag one
   * request behind a change (which rate limit applies), never for authentication.
   */
  peek(clientId: string): ClientAccess | undefined {
    return this.#entries.get(clientId);
  }

  /**
   * What this process knows of a client: `deleted` only for clients it had read before they were deleted,
   * `unknown` for ids it never found.
   */
  stateOf(clientId: string): 'active' | 'disabled' | 'deleted' | 'unknown' {
    const entry = this.#entries.get(clientId);
    if (entry) return entry.client.disabled_at ? 'disabled' : 'active';
    return this.#deleted.has(clientId) ? 'deleted' : 'unknown';
  }

  async find(clientId: string, now: Date): Promise<ClientAccess | undefined> {
    const cached = this.#entries.get(clientId);
    if (cached) {
      const state = await this.#states.load(clientId);
      this.#entries.delete(clientId);
      if (state === undefined) {
        this.#deleted.add(clientId);
        if (this.#deleted.size > CAPACITY)
          this.#deleted.delete(this.#deleted.values().next().value as string);
        return undefined;
      }
      if (state.version === cached.version && (cached.validUntil === undefined || now < cached.validUntil)) {
        this.#entries.set(clientId, cached);
        return cached;
      }
    }
    return this.#load(clientId, now);
  }

  /**
   * Whether a token issued to `clientId` at `issuedAt` is still live: the client exists, is enabled, and was not
   * disabled since. Read at every call.
   */
  async ownsLiveTokens(clientId: string, issuedAt: Date): Promise<boolean> {
    return ownsLiveTokens(await this.#states.load(clientId), issuedAt);
  }

  async #load(clientId: string, now: Date): Promise<ClientAccess | undefined> {
    // Never shared with a read already under way: it may have started before a change this request must see.
    const access = await findClientAccess(this.#db, clientId, now);
    if (!access) return undefined;
    this.#deleted.delete(clientId);
    this.#entries.set(clientId, access);
    if (this.#entries.size > CAPACITY) {
      const oldest = this.#entries.keys().next();
      if (!oldest.done) this.#entries.delete(oldest.value);
    }
    return access;
  }
}
