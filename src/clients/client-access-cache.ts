import type { Db } from '../db/connect.ts';
import { findClientAccess, findClientVersion, type ClientAccess } from './client.repository.ts';

/** Enough for every client of a large deployment; the least recently read are dropped beyond it. */
const CAPACITY = 10_000;

/**
 * What the token path reads about a client, kept per process and reused while `client.version` (bumped by
 * triggers on every change to the client, its secrets, grants, rights and their resources) is unchanged and no
 * secret has expired. Each use still checks the version in the database, so a change made through any instance,
 * such as disabling the client, applies to the very next request: the cache saves the heavy read, never the check.
 */
export class ClientAccessCache {
  readonly #entries = new Map<string, ClientAccess>();
  readonly #db: Db;

  constructor(db: Db) {
    this.#db = db;
  }

  async find(clientId: string, now: Date): Promise<ClientAccess | undefined> {
    const cached = this.#entries.get(clientId);
    if (cached) {
      const version = await findClientVersion(this.#db, clientId);
      this.#entries.delete(clientId);
      if (version === undefined) return undefined;
      if (version === cached.version && (cached.validUntil === undefined || now < cached.validUntil)) {
        this.#entries.set(clientId, cached);
        return cached;
      }
    }
    const access = await findClientAccess(this.#db, clientId, now);
    if (!access) return undefined;
    this.#entries.set(clientId, access);
    if (this.#entries.size > CAPACITY) {
      const oldest = this.#entries.keys().next();
      if (!oldest.done) this.#entries.delete(oldest.value);
    }
    return access;
  }
}
