import { createHash } from 'node:crypto';

import { CompiledQuery } from 'kysely';
import {
  RateLimiterMemory,
  RateLimiterPostgres,
  RateLimiterRes,
  type RateLimiterAbstract,
} from 'rate-limiter-flexible';

import type { Db } from '../db/connect.ts';

/** Every limit counts requests per minute. */
export const LIMIT_WINDOW_SECONDS = 60;

export interface RateLimitSettings {
  /** Token (and revocation) requests per minute per client, unless the client has its own limit. */
  tokenPerClient: number;
  /** Token and revocation requests per minute per source address, whatever client they claim. */
  tokenPerAddress: number;
  /** Introspection requests per minute per resource server, unless the client has its own limit. */
  introspectionPerClient: number;
  /** Introspection requests per minute per source address. */
  introspectionPerAddress: number;
  /** Dynamic registration requests (RFC 7591 and 7592) per minute per source address. */
  registrationPerAddress: number;
  /** Registrations per minute with one initial access token, whatever address they come from. */
  registrationPerToken: number;
}

export interface AuthFailureSettings {
  /** Failed authentications of one client id from one address after which each further failure is slowed. */
  slowAfter: number;
  /** Failed authentications after which that client id is refused from that address for `blockSeconds`. */
  blockAfter: number;
  /** Seconds over which failures are counted. */
  windowSeconds: number;
  blockSeconds: number;
}

export type LimitName =
  | 'token-client'
  | 'token-address'
  | 'introspection-client'
  | 'introspection-address'
  | 'registration-address'
  | 'registration-token'
  | 'console-sign-in-user'
  | 'console-sign-in-address';

/** A request refused by a limit: which one, and when to try again. */
export interface Refusal {
  limit: LimitName | 'auth-failures';
  /** The limit that applied (requests per window), for the audit line. */
  allowed: number;
  retryAfterSeconds: number;
}

/** What one failed authentication changed. */
export interface FailureOutcome {
  /** Failures of this client id from this address within the window, this one included. */
  failures: number;
  /** Delay before answering this failure (0 until `slowAfter` failures). */
  delayMs: number;
  /** The pair is blocked (this failure reached the threshold, or came while blocked). */
  blocked: boolean;
  /** This failure started the block. */
  crossed: boolean;
  /** Seconds until the block ends, when blocked. */
  blockedForSeconds: number;
}

interface Lease {
  /** Requests claimed and not handed out yet. */
  remaining: number;
  /** End of the counter's window (epoch ms): what is left is then lost. */
  endsAt: number;
  /** A claim in flight: concurrent requests wait for it rather than claim their own. */
  pending?: Promise<Refusal | undefined> | undefined;
}

/** Leases held at most (distinct counters); beyond it the least recently used are forgotten. */
const MAX_LEASES = 100_000;

/** How long a pair's stored failure count is trusted to show no block, in ms. */
const STORED_BLOCK_CHECK_MS = 5_000;
/** Entries kept at most in each per-pair map; the oldest are dropped beyond it. */
const MAX_PAIRS = 100_000;

/** Sets `key` as the most recent entry of a bounded map. */
function remember(map: Map<string, number>, key: string, value: number): void {
  map.delete(key);
  map.set(key, value);
  while (map.size > MAX_PAIRS) {
    const oldest = map.keys().next();
    if (oldest.done) break;
    map.delete(oldest.value);
  }
}

function leaseId(limit: LimitName, subject: string, allowed: number): string {
  return `${limit}/${allowed}/${keyOf(subject)}`;
}

function leaseSize(allowed: number): number {
  return Math.max(1, Math.min(100, Math.floor(allowed / 20)));
}

/** The first slowed failure waits this long; each further one twice as long, up to MAX_DELAY_MS. */
const FIRST_DELAY_MS = 250;
const MAX_DELAY_MS = 4_000;

/**
 * Counters shared by every instance through Postgres (rate-limiter-flexible's Postgres store over Mayfly's own
 * connection), one fixed window per key. A key that went over its limit is then refused from memory until its
 * window ends, so a client hammering a limit costs no query per refused request. Should the database fail, each
 * instance counts in memory instead of letting everything through.
 */
export class RateLimits {
  readonly settings: RateLimitSettings;
  readonly failureSettings: AuthFailureSettings;
  readonly #store: { query(query: { text: string; values?: unknown[] }): Promise<{ rows: unknown[] }> };
  /** One limiter per (limit, allowed requests): a client with its own limit gets a limiter of that size. */
  readonly #limiters = new Map<string, RateLimiterAbstract>();
  readonly #failures: RateLimiterPostgres;
  /** Requests this instance claimed from the shared counters and has not handed out yet, least recent first. */
  readonly #leases = new Map<string, Lease>();
  /** Failure pairs whose stored count this instance read, and when; blocks it found there, and until when. */
  readonly #checkedPairs = new Map<string, number>();
  readonly #seenBlocks = new Map<string, number>();
  /** Pairs this instance recorded a failure for, and until when that counts as recent. */
  readonly #recentFailures = new Map<string, number>();

  constructor(db: Db, settings: RateLimitSettings, failureSettings: AuthFailureSettings) {
    this.settings = settings;
    this.failureSettings = failureSettings;
    // Through Kysely, so the limits run on PGlite as on Postgres and share the pool and its error handling.
    this.#store = {
      query: async ({ text, values }) => {
        const result = await db.executeQuery(CompiledQuery.raw(text, values ?? []));
        return { rows: result.rows };
      },
    };
    const failuresBeforeBlock = failureSettings.blockAfter - 1;
    this.#failures = new RateLimiterPostgres({
      ...this.#storeOptions('auth-failures'),
      points: failuresBeforeBlock,
      duration: failureSettings.windowSeconds,
      // The failure that reaches blockAfter stores a block every instance sees at its next failure here.
      blockDuration: failureSettings.blockSeconds,
      inMemoryBlockOnConsumed: failureSettings.blockAfter,
      inMemoryBlockDuration: failureSettings.blockSeconds,
      insuranceLimiter: new RateLimiterMemory({
        points: failuresBeforeBlock,
        duration: failureSettings.windowSeconds,
        blockDuration: failureSettings.blockSeconds,
      }),
    });
  }

  /**
   * Counts one request against a limit. Resolves undefined when allowed, or the refusal. A store failure falls
   * back to memory (see the class comment).
   *
   * Requests are taken from a lease: this instance claims a few of the window's requests at once in the shared
   * counter (at most 1/20 of the limit, at most 100, one when the limit is 20 or less) and hands them out from
   * memory. A client hammering one counter then costs one write per lease instead of one per request, and no
   * single row is updated by every request. The price is precision: requests leased by one instance and not
   * used in the window are lost to the others, at most 5% of the limit per instance.
   */
  async consume(
    limit: LimitName,
    subject: string,
    allowed: number,
    options: { exact?: boolean } = {},
  ): Promise<Refusal | undefined> {
    const id = leaseId(limit, subject, allowed);
    for (;;) {
      const now = Date.now();
      const lease = this.#leases.get(id);
      if (lease && now < lease.endsAt) {
        if (lease.remaining > 0) {
          lease.remaining--;
          return undefined;
        }
        if (lease.pending) {
          const refusal = await lease.pending;
          if (refusal) return refusal;
          continue;
        }
      }
      const next: Lease = lease && now < lease.endsAt ? lease : { remaining: 0, endsAt: now + 1_000 };
      next.pending = this.#claim(limit, subject, allowed, next, options.exact ? 1 : leaseSize(allowed));
      this.#remember(id, next);
      let refusal: Refusal | undefined;
      try {
        refusal = await next.pending;
      } finally {
        next.pending = undefined;
      }
      if (refusal) return refusal;
    }
  }

  /** Claims a lease of requests from the shared counter into `lease`; the refusal when none is left. */
  async #claim(
    limit: LimitName,
    subject: string,
    allowed: number,
    lease: Lease,
    size: number,
  ): Promise<Refusal | undefined> {
    try {
      const granted = await this.#limiter(limit, allowed).consume(keyOf(subject), size);
      lease.remaining += size;
      lease.endsAt = Date.now() + Math.max(granted.msBeforeNext, 1);
      return undefined;
    } catch (outcome) {
      if (!(outcome instanceof RateLimiterRes)) throw outcome;
      // Part of the lease may still fit under the limit (the store answered the count; memory answers 0).
      const left = outcome.consumedPoints > 0 ? allowed - (outcome.consumedPoints - size) : 0;
      if (left > 0) {
        lease.remaining += Math.min(left, size);
        lease.endsAt = Date.now() + Math.max(outcome.msBeforeNext, 1);
        return undefined;
      }
      lease.endsAt = Date.now() + Math.max(outcome.msBeforeNext, 1);
      return { limit, allowed, retryAfterSeconds: retryAfter(outcome.msBeforeNext) };
    }
  }

  #remember(id: string, lease: Lease): void {
    this.#leases.delete(id);
    this.#leases.set(id, lease);
    if (this.#leases.size <= MAX_LEASES) return;
    const now = Date.now();
    for (const [key, held] of this.#leases) {
      if (this.#leases.size <= MAX_LEASES) break;
      if (held.endsAt <= now || !held.pending) this.#leases.delete(key);
    }
  }

  /**
   * Whether a client id is blocked from an address after failed authentications. From memory when this instance
   * recorded or saw the block; otherwise from the stored count, read for every request of a pair that failed here
   * recently and at most every 5 s for any other pair, so a block recorded by another instance holds here too
   * (within 5 s), for what remains of it.
   */
  async blockedAfterFailures(clientId: string, address: string): Promise<Refusal | undefined> {
    const subject = keyOf(failureSubject(clientId, address));
    const key = this.#failures.getKey(subject);
    const now = Date.now();
    // Part of the store limiters' API, missing from the library's type declarations.
    const memory = this.#failures as unknown as { getInMemoryBlockMsBeforeExpire(key: string): number };
    const ms = Math.max(memory.getInMemoryBlockMsBeforeExpire(key), (this.#seenBlocks.get(key) ?? 0) - now);
    if (ms > 0) return this.#blockRefusal(ms);
    // A pair that failed here recently is read every time; any other at most every few seconds.
    const checkedAt = this.#checkedPairs.get(key);
    const recent = (this.#recentFailures.get(key) ?? 0) > now;
    if (!recent && checkedAt !== undefined && now - checkedAt < STORED_BLOCK_CHECK_MS) return undefined;
    remember(this.#checkedPairs, key, now);
    this.#seenBlocks.delete(key);
    let stored: RateLimiterRes | null;
    try {
      stored = await this.#failures.get(subject);
    } catch {
      return undefined;
    }
    if (!stored || stored.consumedPoints < this.failureSettings.blockAfter || stored.msBeforeNext <= 0) {
      return undefined;
    }
    remember(this.#seenBlocks, key, now + stored.msBeforeNext);
    return this.#blockRefusal(stored.msBeforeNext);
  }

  /** Whether this instance recorded a failure of this pair recently: its requests are then taken one at a time. */
  hasRecentFailures(clientId: string, address: string): boolean {
    const key = this.#failures.getKey(keyOf(failureSubject(clientId, address)));
    const until = this.#recentFailures.get(key);
    return until !== undefined && until > Date.now();
  }

  #blockRefusal(ms: number): Refusal {
    return {
      limit: 'auth-failures',
      allowed: this.failureSettings.blockAfter,
      retryAfterSeconds: retryAfter(ms),
    };
  }

  /** Records a failed client authentication of `clientId` from `address`. */
  async recordFailure(clientId: string, address: string): Promise<FailureOutcome> {
    const { slowAfter, blockAfter } = this.failureSettings;
    let failures: number;
    let blockedForMs = 0;
    let crossed = false;
    const subject = keyOf(failureSubject(clientId, address));
    const recentUntil = Date.now() + this.failureSettings.windowSeconds * 1000;
    remember(this.#recentFailures, this.#failures.getKey(subject), recentUntil);
    try {
      failures = (await this.#failures.consume(subject)).consumedPoints;
    } catch (outcome) {
      if (!(outcome instanceof RateLimiterRes)) throw outcome;
      // Over the limit. The store answers the count; memory (already blocked, a race) answers 0.
      failures = Math.max(outcome.consumedPoints, blockAfter);
      crossed = outcome.consumedPoints === blockAfter;
      blockedForMs = outcome.msBeforeNext;
    }
    const slowed = failures >= slowAfter ? failures - slowAfter : -1;
    return {
      failures,
      delayMs: slowed < 0 ? 0 : Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** Math.min(slowed, 16)),
      blocked: failures >= blockAfter,
      crossed,
      blockedForSeconds: blockedForMs > 0 ? retryAfter(blockedForMs) : 0,
    };
  }

  #limiter(limit: LimitName, allowed: number): RateLimiterAbstract {
    const id = `${limit}/${allowed}`;
    let limiter = this.#limiters.get(id);
    if (!limiter) {
      limiter = new RateLimiterPostgres({
        ...this.#storeOptions(limit),
        points: allowed,
        duration: LIMIT_WINDOW_SECONDS,
        // Over its limit, a key is refused from memory until its window ends: no query per refused request.
        inMemoryBlockOnConsumed: allowed + 1,
        insuranceLimiter: new RateLimiterMemory({ points: allowed, duration: LIMIT_WINDOW_SECONDS }),
      });
      this.#limiters.set(id, limiter);
    }
    return limiter;
  }

  #storeOptions(prefix: string) {
    return {
      storeClient: this.#store,
      storeType: 'pool',
      tableName: 'rate_limit',
      // The table comes with Mayfly's migrations; expired rows go with the purge job.
      tableCreated: true,
      clearExpiredByTimeout: false,
      keyPrefix: prefix,
    };
  }
}

function failureSubject(clientId: string, address: string): string {
  return `${clientId}\n${address}`;
}

/** Hashed keys of recent subjects: a pair (client id, address) is looked up several times per request. */
const hashedKeys = new Map<string, string>();
const HASHED_KEYS = 10_000;

/** Keys fit the table's 255 characters whatever a request claims: long or odd subjects are hashed. */
function keyOf(subject: string): string {
  if (/^[\x21-\x7E]{1,200}$/.test(subject)) return subject;
  let key = hashedKeys.get(subject);
  if (key === undefined) {
    key = `#${createHash('sha256').update(subject, 'utf8').digest('base64url')}`;
    if (hashedKeys.size >= HASHED_KEYS) hashedKeys.clear();
    hashedKeys.set(subject, key);
  }
  return key;
}

function retryAfter(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}
