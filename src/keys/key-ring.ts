import { createHash } from 'node:crypto';

import { createLocalJWKSet, type JWTVerifyGetKey } from 'jose';

import type { Actor } from '../audit/audit-trail.ts';
import type { Jwk, SigningKeyRow } from '../db/tables/signing-key.table.ts';
import type { Logger } from '../observability/logger.ts';
import {
  listKeys,
  openPrivateJwk,
  revokeKey,
  rewrapKeys,
  rotateKeys,
  runKeyPlanner,
  toKeyState,
  KEY_SCHEDULER,
  type KeyDeps,
  type RevocationResult,
  type RotationResult,
  type SigningKeyInfo,
} from './key.service.ts';
import { nextChangeAt, plan, publishedAt, signingKeyAt, type KeyState } from './lifecycle.ts';
import { findSigningKeys } from './signing-key.repository.ts';

/** The JWKS document as served: body and strong ETag computed once per key-set change. */
export interface PublishedKeys {
  body: string;
  etag: string;
}

export function publishKeys(publicJwks: { keys: unknown[] }): PublishedKeys {
  const body = JSON.stringify(publicJwks);
  return { body, etag: `"${createHash('sha256').update(body).digest('base64url')}"` };
}

/** What Mayfly verifies its own JWT access tokens with: every published key, never a revoked one. */
export interface VerificationKeys {
  getKey: JWTVerifyGetKey;
  algorithms: string[];
  /**
   * Re-reads the keys when a token names a kid this instance does not know yet (another instance may have just
   * created it); rate-limited. Resolves to the keys to retry with.
   */
  refresh(): Promise<VerificationKeys>;
}

/** The key set one instance works with at a given moment. */
export interface KeySetView {
  /** The key the provider signs with: the scheduled signer, or while that cannot be opened, the last one. */
  signer: { kid: string; alg: string; privateJwk: Jwk };
  /**
   * Why the provider must not sign right now: the scheduled signer does not open with this instance's KEKs and
   * the previous one is revoked or removed. Token requests are refused meanwhile; /readyz says so.
   */
  signingProblem: string | undefined;
  publicJwks: { keys: Jwk[] };
  published: PublishedKeys;
  verification: VerificationKeys;
  /** Changes whenever the signer, its problem or the published set does. */
  fingerprint: string;
}

export interface KeyRingOptions extends KeyDeps {
  log: Logger;
  /** Seconds between reads of the key table (changes made by other instances show up within this time). */
  checkInterval: number;
}

type Listener = (view: KeySetView, previous: KeySetView) => void;

/**
 * One instance's view of the signing keys. It re-reads the table every check interval (and at the next scheduled
 * transition), runs the planner when the schedule calls for a change (one instance applies it, under a lock),
 * and tells its listeners when the signer or the published set changed, so the provider is rebuilt.
 */
export class KeyRing {
  readonly #options: KeyRingOptions;
  #rows: SigningKeyRow[] = [];
  #view: KeySetView | undefined;
  #opened = new Map<string, Jwk>();
  #listeners: Listener[] = [];
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;
  #lastUnknownKidRefresh = 0;

  private constructor(options: KeyRingOptions) {
    this.#options = options;
  }

  /**
   * Seals any key still stored in clear, creates the first key of a new installation, and checks that every
   * stored key opens with the configured KEK (a wrong MAYFLY_KEK stops start-up here, with the kid it failed on).
   */
  static async open(options: KeyRingOptions): Promise<KeyRing> {
    const ring = new KeyRing(options);
    const stored = await findSigningKeys(options.db);
    if (stored.some((row) => row.sealed_private_jwk === null)) {
      const result = await rewrapKeys(options, KEY_SCHEDULER);
      options.log.info({ sealed: result.sealed }, 'sealed signing keys stored in clear under the KEK');
    }
    await runKeyPlanner(options);
    ring.#rows = await findSigningKeys(options.db);
    for (const row of ring.#rows) if (!row.revoked_at) ring.#open(row);
    ring.#view = ring.#build();
    return ring;
  }

  get current(): KeySetView {
    if (!this.#view) throw new Error('the key ring is not open');
    return this.#view;
  }

  onChange(listener: Listener): void {
    this.#listeners.push(listener);
  }

  /** Starts the periodic check. */
  start(): void {
    this.#stopped = false;
    this.#schedule();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
  }

  /**
   * Reads the table, applies the schedule if it is due, and swaps the view when something changed. Never throws:
   * while the database is unreachable the instance keeps its last view (time-based transitions still apply).
   */
  async refresh(): Promise<void> {
    // One refresh at a time; a request for another while one runs waits for it and runs again.
    const previous = this.#running;
    const run = (async () => {
      await previous;
      try {
        await this.#refreshOnce();
      } catch (error) {
        this.#options.log.error({ err: error }, 'refreshing the signing keys failed');
      }
    })();
    this.#running = run;
    await run;
  }

  /** At most one re-read per second for tokens naming an unknown kid, so forged kids cannot load the database. */
  async #refreshForUnknownKid(): Promise<VerificationKeys> {
    const now = Date.now();
    if (now - this.#lastUnknownKidRefresh >= 1_000) {
      this.#lastUnknownKidRefresh = now;
      await this.refresh();
    } else {
      await this.#running;
    }
    return this.current.verification;
  }

  async list(): Promise<SigningKeyInfo[]> {
    return listKeys(this.#options);
  }

  async rotate(actor: Actor, immediate: boolean): Promise<RotationResult> {
    const result = await rotateKeys(this.#options, actor, immediate);
    await this.refresh();
    return result;
  }

  async revoke(actor: Actor, kid: string): Promise<RevocationResult> {
    const result = await revokeKey(this.#options, actor, kid);
    await this.refresh();
    return result;
  }

  async #refreshOnce(): Promise<void> {
    const { db, clock, settings, log } = this.#options;
    // What time alone changes (a scheduled activation) applies at once, before any database round trip.
    this.#apply(this.#build());
    try {
      let rows = await findSigningKeys(db);
      if (plan(rows.map(toKeyState), clock.now(), settings).length > 0) {
        const { actions } = await runKeyPlanner(this.#options, { skipIfBusy: true });
        if (actions.length) log.info({ actions: actions.map((a) => a.type) }, 'signing keys follow the schedule');
        rows = await findSigningKeys(db);
      }
      this.#rows = rows;
    } catch (error) {
      log.warn({ err: error }, 'could not read or update the signing keys; keeping the current set');
    }
    this.#apply(this.#build());
  }

  #apply(view: KeySetView): void {
    const previous = this.#view;
    this.#view = view;
    if (!previous || previous.fingerprint === view.fingerprint) return;
    if (view.signingProblem) this.#options.log.error({ problem: view.signingProblem }, 'signing is halted');
    this.#options.log.info(
      { signing_kid: view.signer.kid, published: view.publicJwks.keys.map((key) => key.kid) },
      'signing keys changed',
    );
    for (const listener of this.#listeners) {
      try {
        listener(view, previous);
      } catch (error) {
        this.#options.log.error({ err: error }, 'applying the new signing keys failed');
      }
    }
  }

  #schedule(): void {
    if (this.#stopped) return;
    const { clock, settings, checkInterval } = this.#options;
    const now = clock.now();
    const next = nextChangeAt(this.#rows.map(toKeyState), now, settings);
    const untilNext = next ? next.getTime() - now.getTime() + 1 : Infinity;
    const delay = Math.max(10, Math.min(checkInterval * 1000, untilNext));
    this.#timer = setTimeout(() => {
      // refresh() never rejects.
      void this.refresh().then(() => {
        this.#schedule();
      });
    }, delay);
    this.#timer.unref();
  }

  #open(row: SigningKeyRow): Jwk {
    const cached = this.#opened.get(row.kid);
    if (cached) return cached;
    const jwk = openPrivateJwk(row, this.#options.keks);
    this.#opened.set(row.kid, jwk);
    return jwk;
  }

  /**
   * The view at this instant, from the rows last read: published keys and verification keys straight from the
   * rows (a revoked key leaves both at once), and the scheduled signer opened with the KEKs.
   */
  #build(): KeySetView {
    const now = this.#options.clock.now();
    const states = this.#rows.map(toKeyState);
    const published = new Set(publishedAt(states, now).map((key) => key.kid));
    const keys = this.#rows.filter((row) => published.has(row.kid)).map((row) => row.public_jwk);
    const scheduled = signingKeyAt(states, now);
    const scheduledRow = scheduled && this.#rows.find((row) => row.kid === scheduled.kid);
    let signer: KeySetView['signer'];
    let signingProblem: string | undefined;
    try {
      if (!scheduledRow) throw new Error('no key is scheduled to sign');
      signer = { kid: scheduledRow.kid, alg: scheduledRow.alg, privateJwk: this.#open(scheduledRow) };
    } catch (error) {
      // The previous signer may go on only while it is still published (neither revoked nor removed).
      const previous = this.#view?.signer;
      if (!previous) throw error;
      signer = previous;
      const reason = error instanceof Error ? error.message : String(error);
      if (!published.has(signer.kid)) signingProblem = `${reason}; the previous signing key is no longer valid`;
    }
    const fingerprint = `${signer.kid}|${signingProblem ?? ''}|${keys.map((key) => key.kid).join(',')}`;
    if (this.#view?.fingerprint === fingerprint) return this.#view;
    // Forget opened keys that left the set.
    for (const kid of this.#opened.keys()) if (!published.has(kid)) this.#opened.delete(kid);
    const publicJwks = { keys };
    const verification: VerificationKeys = {
      getKey: createLocalJWKSet(publicJwks),
      algorithms: [...new Set(keys.map((key) => String(key.alg)))],
      refresh: () => this.#refreshForUnknownKid(),
    };
    return { signer, signingProblem, publicJwks, published: publishKeys(publicJwks), verification, fingerprint };
  }

  /** The keys as last read, for the metrics (no database round trip per scrape). */
  states(): KeyState[] {
    return this.#rows.map(toKeyState);
  }
}
