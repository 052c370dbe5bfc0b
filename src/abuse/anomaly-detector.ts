/**
 * Per-client anomaly detection over the token endpoint's traffic: pure and in memory, fed one observation per
 * answered token request. What it raises goes to the audit log, the metrics, `mayfly anomalies` and the admin API;
 * the detector itself does no I/O, so hours of synthetic traffic run in a unit test on a fake clock.
 *
 * Five kinds, each judged over a rolling window of `windowSeconds`:
 *
 * - `denial_ratio`: denied / (issued + denied) reaches `denialRatio`, once the window holds at least
 *   `minRequestsForRatio` requests (a handful of typos never alarms).
 * - `issuance_spike`: tokens issued in the window reach `issuanceSpikeFactor` × the client's own baseline and at
 *   least `minIssuedForSpike`. Judged only once the baseline has learnt from `baselineWindows` windows.
 * - `many_addresses` / `many_dpop_keys`: more than `maxAddresses` distinct source addresses, or more than
 *   `maxDpopKeys` distinct DPoP key thumbprints, in the window.
 * - `inactive_client`: a disabled or deleted client made `inactiveAttempts` requests in the window.
 *
 * Each (client, kind) raises at most one event per `cooldownSeconds`; still anomalous after that, it is raised
 * again by the next observation.
 *
 * Design, for the token path (~2,000 observations/s, O(1) work and bounded memory per observation):
 *
 * - Windows are bucketed, 12 buckets per window, so an observation counts for between 11/12 of a window and a
 *   whole one. A ring of counters per client with running totals: advancing clears at most 12 buckets.
 * - Time is monotonic per client: an observation stamped earlier than the client's latest one (clock skew
 *   between instances) counts as of the latest one. Nothing is subtracted that was not added, so counts never go
 *   negative, and a step back never reopens an old bucket.
 * - The baseline is the client's typical issuance per window, learnt over whole windows aligned to the epoch
 *   (a mean of the first `baselineWindows`, then an exponentially weighted one with weight 1/`baselineWindows`).
 *   Only windows in which the client obtained tokens at all are learnt from: idle nights and outages do not drag
 *   the baseline to zero, so a batch resuming at its usual rate raises nothing. It is never poisoned by the spike
 *   it is compared with: the window just closed is held back until the next one closes (the rolling window still
 *   overlaps it), and a window that was itself a spike is not learnt from; only after `baselineWindows`
 *   consecutive spiking windows is the new level accepted as the client's normal.
 * - Distinct addresses and DPoP keys are kept as 30-bit hashes (keyed with a per-detector random seed, so
 *   nobody can aim collisions) mapped to the bucket each was last seen in, oldest first, capped at the limit + 1:
 *   the count is then "at least", which is all a threshold needs. Whatever the length of an attacker-chosen
 *   string, an entry costs the same, and no address or key is retained.
 * - Clients whose state is `unknown` (no such client) are not tracked at all. Their ids are chosen by whoever
 *   sends the request, so tracking them would let a scanner churn the least-recently-seen eviction and flush a
 *   real client's learnt baseline (after which its spike would go unjudged). Denials for ids that never existed
 *   are mostly noise; guessing is met by the authentication-failure backoff and the rate limits. Tracked ids
 *   (active, disabled, deleted) are bounded by what was ever registered, and `maxClients` bounds them anyway.
 */
import { randomInt } from 'node:crypto';

export type ObservedClientState = 'active' | 'disabled' | 'deleted' | 'unknown';

/** One answered token request, as the token endpoint saw it. */
export interface AccessObservation {
  /** When the request was answered. */
  at: Date;
  /** The client the request claimed, authenticated or not. */
  clientId: string;
  outcome: 'issued' | 'denied';
  /** Source address. */
  address?: string | undefined;
  /** RFC 7638 thumbprint of the DPoP proof key, when known. */
  dpopJkt?: string | undefined;
  /** `deleted`: its registration was revoked; `unknown`: there is no such client. */
  clientState: ObservedClientState;
}

export const ANOMALY_KINDS = [
  'denial_ratio',
  'issuance_spike',
  'many_addresses',
  'many_dpop_keys',
  'inactive_client',
] as const;

export type AnomalyKind = (typeof ANOMALY_KINDS)[number];

export interface Anomaly {
  kind: AnomalyKind;
  clientId: string;
  /** The time of the observation that raised it (never earlier than the client's previous observations). */
  detectedAt: Date;
  windowSeconds: number;
  /**
   * The denial ratio, tokens issued in the window, distinct addresses or DPoP keys (a lower bound: counting stops
   * just past the limit), or attempts by an inactive client.
   */
  observed: number;
  /**
   * What `observed` was held against: reached for `denial_ratio`, `issuance_spike` (the greater of factor ×
   * baseline and `minIssuedForSpike`) and `inactive_client`; exceeded for `many_addresses` and `many_dpop_keys`.
   */
  threshold: number;
  /** `issuance_spike` only: the client's usual tokens per window. */
  baseline?: number;
  /** One sentence for people: client id, counts and ratios only, never an address, key or secret. */
  description: string;
}

export interface AnomalySettings {
  /** The rolling window, in seconds. */
  windowSeconds: number;
  /** Denied / all requests in the window that raises `denial_ratio`, in (0, 1]. */
  denialRatio: number;
  /** Fewer requests than this in the window never raise `denial_ratio`. */
  minRequestsForRatio: number;
  /** Tokens in the window, as a multiple of the client's baseline, that raise `issuance_spike` (> 1). */
  issuanceSpikeFactor: number;
  /** Fewer tokens than this in the window never raise `issuance_spike`. */
  minIssuedForSpike: number;
  /** Windows the baseline averages over, and windows of history a client needs before spikes are judged. */
  baselineWindows: number;
  /** Distinct source addresses allowed in the window. */
  maxAddresses: number;
  /** Distinct DPoP keys allowed in the window. */
  maxDpopKeys: number;
  /** Requests by a disabled or deleted client in the window that raise `inactive_client`. */
  inactiveAttempts: number;
  /** Seconds during which a (client, kind) raises no further event. */
  cooldownSeconds: number;
  /** Clients tracked at most; the least recently seen are forgotten beyond it. */
  maxClients: number;
}

/**
 * Defaults for machine clients, which cache their tokens (a token lives up to 15 minutes): a healthy client obtains
 * a few tokens a minute from a few addresses, one DPoP key per instance.
 *
 * - One-minute windows: enough requests for a ratio to mean something, short enough to report an attack within
 *   the minute, and the unit of the per-client rate limit.
 * - Half the requests denied, over at least 20, is a broken or stolen-and-guessed credential, not a typo.
 * - 10× the usual issuance and at least 100 tokens a minute: the per-client rate limit (600 a minute) leaves
 *   room for a 10× jump below it for clients up to 60 a minute; above that the limit itself answers.
 * - The baseline spans 30 windows (half an hour), so a client's daily rhythm is followed and a new client is
 *   judged after half an hour of use.
 * - 20 addresses and 50 DPoP keys a minute: more than a fleet behind a few gateways, or a fleet's instances
 *   restarting; credentials copied across a botnet or keys minted per request look like this.
 * - 3 attempts by a disabled or deleted client: a retry or two is a deployment lagging behind; more is
 *   something still running with revoked credentials.
 * - 5 minutes of cooldown: an attack in progress stays visible without flooding the audit log.
 * - 10,000 clients: ~1 KB each when quiet, ~6.5 KB with full address and key sets (about 65 MB at worst, which
 *   takes every client being sprayed from dozens of addresses and keys at once).
 */
export const DEFAULT_ANOMALY_SETTINGS: AnomalySettings = Object.freeze({
  windowSeconds: 60,
  denialRatio: 0.5,
  minRequestsForRatio: 20,
  issuanceSpikeFactor: 10,
  minIssuedForSpike: 100,
  baselineWindows: 30,
  maxAddresses: 20,
  maxDpopKeys: 50,
  inactiveAttempts: 3,
  cooldownSeconds: 300,
  maxClients: 10_000,
});

/** What the detector currently holds about a client, as of its latest observation (for the admin API). */
export interface ClientActivity {
  clientId: string;
  lastSeenAt: Date;
  issued: number;
  denied: number;
  inactiveAttempts: number;
  /** Lower bounds, like `Anomaly.observed`. */
  distinctAddresses: number;
  distinctDpopKeys: number;
  /** Usual tokens per window; undefined until learnt from `baselineWindows` windows. */
  baseline: number | undefined;
  /** Windows learnt from so far. */
  baselineSamples: number;
}

export class AnomalySettingsError extends Error {
  readonly field: keyof AnomalySettings;

  constructor(field: keyof AnomalySettings, expected: string, got: unknown) {
    super(`Invalid anomaly settings: ${field} must be ${expected} (got ${String(got)})`);
    this.name = 'AnomalySettingsError';
    this.field = field;
  }
}

type Rule = [expected: string, valid: (value: number) => boolean];

const positive: Rule = ['a positive number', (value) => Number.isFinite(value) && value > 0];
const count: Rule = ['a positive integer', (value) => Number.isSafeInteger(value) && value > 0];
const RULES: { [field in keyof AnomalySettings]: Rule } = {
  windowSeconds: positive,
  denialRatio: ['a ratio in (0, 1]', (value) => Number.isFinite(value) && value > 0 && value <= 1],
  minRequestsForRatio: count,
  // A factor of 1 or less would call every ordinary window a spike.
  issuanceSpikeFactor: ['a number greater than 1', (value) => Number.isFinite(value) && value > 1],
  minIssuedForSpike: count,
  baselineWindows: count,
  maxAddresses: count,
  maxDpopKeys: count,
  inactiveAttempts: count,
  cooldownSeconds: positive,
  maxClients: count,
};

/** Checks every field, so a bad configuration stops the server at start-up rather than on the token path. */
export function validateAnomalySettings(settings: AnomalySettings): AnomalySettings {
  for (const field of Object.keys(RULES) as (keyof AnomalySettings)[]) {
    const [expected, valid] = RULES[field];
    const value: unknown = settings[field];
    if (typeof value !== 'number' || !valid(value)) throw new AnomalySettingsError(field, expected, value);
  }
  return settings;
}

/** Buckets per window: the window's granularity (1/12 of a window) against 12 counters per client and kind. */
const BUCKETS = 12;

const KIND_INDEX: { [kind in AnomalyKind]: number } = {
  denial_ratio: 0,
  issuance_spike: 1,
  many_addresses: 2,
  many_dpop_keys: 3,
  inactive_client: 4,
};

const slotOf = (bucket: number) => ((bucket % BUCKETS) + BUCKETS) % BUCKETS;

/**
 * FNV-1a over UTF-16 code units from a seeded basis, then murmur3's finaliser: cheap, well spread, and 30 bits so
 * V8 keeps it unboxed. Among the few dozen values of one client's window a collision (which only undercounts) is
 * a one-in-a-million event.
 */
function hashOf(value: string, seed: number): number {
  let hash = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < value.length; i++) {
    hash ^= value.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return hash & 0x3fffffff;
}

/**
 * Distinct values in the window: hash → the bucket (relative to the client's first) it was last seen in. A value
 * seen again moves to the end, so the map runs oldest first and expiry stops at the first live entry.
 */
type Distinct = Map<number, number>;

function expire(seen: Distinct | undefined, firstLiveBucket: number): void {
  if (!seen) return;
  for (const [hash, bucket] of seen) {
    if (bucket >= firstLiveBucket) return;
    seen.delete(hash);
  }
}

function note(seen: Distinct, hash: number, bucket: number, cap: number): void {
  seen.delete(hash);
  seen.set(hash, bucket);
  if (seen.size > cap) {
    const oldest = seen.keys().next();
    if (!oldest.done) seen.delete(oldest.value);
  }
}

/** Everything known about one client: a few numbers, a ring of counters, and two small capped maps. */
class ClientWindow {
  /** The bucket of the first observation; distinct-value maps store buckets relative to it, small integers. */
  readonly origin: number;
  /** The bucket of the latest observation. */
  head: number;
  latestMs: number;
  /** Issued, denied and inactive-client counts per bucket: three rings of BUCKETS. */
  readonly counts = new Uint32Array(3 * BUCKETS);
  /** Running totals over the ring. */
  issued = 0;
  denied = 0;
  inactive = 0;
  /** The aligned window being counted for the baseline, and tokens issued in it. */
  epoch: number;
  epochIssued = 0;
  /** The last closed window with tokens, held back from the baseline while the rolling window overlaps it. */
  pendingEpoch = 0;
  pendingIssued = 0;
  baseline = 0;
  samples = 0;
  /** Consecutive closed windows that were spikes (not learnt from). */
  spikingWindows = 0;
  addresses: Distinct | undefined;
  dpopKeys: Distinct | undefined;
  /** When each kind was last raised; allocated with the first event. */
  raisedAt: Float64Array | undefined;

  constructor(bucket: number, atMs: number) {
    this.origin = bucket;
    this.head = bucket;
    this.latestMs = atMs;
    this.epoch = Math.floor(bucket / BUCKETS);
  }
}

const round = (value: number) => Math.round(value * 100) / 100;

export class AnomalyDetector {
  readonly settings: AnomalySettings;
  readonly #bucketMs: number;
  readonly #cooldownMs: number;
  readonly #hashSeed: number;
  /** In least-recently-seen order: a client seen again is moved to the end. */
  readonly #clients = new Map<string, ClientWindow>();

  /** `hashSeed` makes the distinct-value hashing reproducible (tests); by default it is random per detector. */
  constructor(settings: AnomalySettings, options: { hashSeed?: number } = {}) {
    this.settings = Object.freeze({ ...validateAnomalySettings(settings) });
    this.#bucketMs = (settings.windowSeconds * 1000) / BUCKETS;
    this.#cooldownMs = settings.cooldownSeconds * 1000;
    this.#hashSeed = options.hashSeed ?? randomInt(0x1_0000_0000);
  }

  /** The anomalies this observation newly raised (most observations: none). */
  observe(observation: AccessObservation): Anomaly[] {
    const { clientId, clientState } = observation;
    if (clientState === 'unknown') return [];
    const atMs = observation.at.getTime();
    if (!Number.isFinite(atMs)) return [];

    let client = this.#clients.get(clientId);
    let nowMs = atMs;
    if (client) {
      this.#clients.delete(clientId);
      nowMs = Math.max(atMs, client.latestMs);
      client.latestMs = nowMs;
      this.#advance(client, Math.floor(nowMs / this.#bucketMs));
    } else {
      client = new ClientWindow(Math.floor(atMs / this.#bucketMs), atMs);
    }
    this.#clients.set(clientId, client);
    if (this.#clients.size > this.settings.maxClients) {
      for (const [oldest] of this.#clients) {
        this.#clients.delete(oldest);
        if (this.#clients.size <= this.settings.maxClients) break;
      }
    }

    const slot = slotOf(client.head);
    const inactive = clientState !== 'active';
    if (inactive) {
      client.counts[2 * BUCKETS + slot] = (client.counts[2 * BUCKETS + slot] ?? 0) + 1;
      client.inactive += 1;
    } else if (observation.outcome === 'issued') {
      client.counts[slot] = (client.counts[slot] ?? 0) + 1;
      client.issued += 1;
      client.epochIssued += 1;
    } else {
      client.counts[BUCKETS + slot] = (client.counts[BUCKETS + slot] ?? 0) + 1;
      client.denied += 1;
    }

    const bucket = client.head - client.origin;
    expire(client.addresses, bucket - BUCKETS + 1);
    expire(client.dpopKeys, bucket - BUCKETS + 1);
    const { address, dpopJkt } = observation;
    if (address !== undefined) {
      client.addresses ??= new Map();
      note(client.addresses, hashOf(address, this.#hashSeed), bucket, this.settings.maxAddresses + 1);
    }
    if (dpopJkt !== undefined) {
      client.dpopKeys ??= new Map();
      note(client.dpopKeys, hashOf(dpopJkt, this.#hashSeed), bucket, this.settings.maxDpopKeys + 1);
    }

    return this.#judge(clientId, client, nowMs, inactive ? clientState : undefined);
  }

  /** Clients currently tracked (never more than `maxClients`). */
  trackedClients(): number {
    return this.#clients.size;
  }

  /** What is held about a client, as of its latest observation; undefined when it is not tracked. */
  activityOf(clientId: string): ClientActivity | undefined {
    const client = this.#clients.get(clientId);
    if (!client) return undefined;
    const learnt = client.samples >= this.settings.baselineWindows;
    return {
      clientId,
      lastSeenAt: new Date(client.latestMs),
      issued: client.issued,
      denied: client.denied,
      inactiveAttempts: client.inactive,
      distinctAddresses: client.addresses?.size ?? 0,
      distinctDpopKeys: client.dpopKeys?.size ?? 0,
      baseline: learnt ? client.baseline : undefined,
      baselineSamples: client.samples,
    };
  }

  /** Moves the ring forward to `bucket`, clearing the buckets that leave the window, and rolls the baseline. */
  #advance(client: ClientWindow, bucket: number): void {
    const steps = Math.min(bucket - client.head, BUCKETS);
    if (steps <= 0) return;
    const { counts } = client;
    for (let step = 1; step <= steps; step++) {
      const slot = slotOf(client.head + step);
      client.issued -= counts[slot] ?? 0;
      client.denied -= counts[BUCKETS + slot] ?? 0;
      client.inactive -= counts[2 * BUCKETS + slot] ?? 0;
      counts[slot] = counts[BUCKETS + slot] = counts[2 * BUCKETS + slot] = 0;
    }
    client.head = bucket;
    const epoch = Math.floor(bucket / BUCKETS);
    if (epoch > client.epoch) this.#closeWindows(client, epoch);
  }

  /**
   * The aligned window being counted has closed. It is held back while the rolling window can still overlap it
   * (until the next one closes); the one held back before it is learnt from now.
   */
  #closeWindows(client: ClientWindow, epoch: number): void {
    if (client.epochIssued > 0) {
      if (client.pendingIssued > 0) this.#learn(client, client.pendingIssued);
      client.pendingEpoch = client.epoch;
      client.pendingIssued = client.epochIssued;
    }
    if (client.pendingIssued > 0 && client.pendingEpoch < epoch - 1) {
      this.#learn(client, client.pendingIssued);
      client.pendingIssued = 0;
    }
    client.epoch = epoch;
    client.epochIssued = 0;
  }

  /** Folds one window's issuance into the baseline, unless that window was itself a spike. */
  #learn(client: ClientWindow, issued: number): void {
    const { baselineWindows, issuanceSpikeFactor, minIssuedForSpike } = this.settings;
    const judged = client.samples >= baselineWindows;
    if (judged && issued >= minIssuedForSpike && issued >= issuanceSpikeFactor * client.baseline) {
      client.spikingWindows += 1;
      if (client.spikingWindows < baselineWindows) return;
      // Spiking for as long as the baseline spans: this is the client's traffic now.
      client.baseline = issued;
      client.spikingWindows = 0;
      return;
    }
    client.spikingWindows = 0;
    client.samples += 1;
    client.baseline += (issued - client.baseline) / Math.min(client.samples, baselineWindows);
  }

  #judge(
    clientId: string,
    client: ClientWindow,
    nowMs: number,
    inactiveState: 'disabled' | 'deleted' | undefined,
  ): Anomaly[] {
    const s = this.settings;
    const raised: Anomaly[] = [];
    const raise = (kind: AnomalyKind, observed: number, threshold: number, description: string) => {
      const index = KIND_INDEX[kind];
      client.raisedAt ??= new Float64Array(ANOMALY_KINDS.length).fill(-Infinity);
      if (nowMs - (client.raisedAt[index] ?? -Infinity) < this.#cooldownMs) return;
      client.raisedAt[index] = nowMs;
      raised.push({
        kind,
        clientId,
        detectedAt: new Date(nowMs),
        windowSeconds: s.windowSeconds,
        observed,
        threshold,
        ...(kind === 'issuance_spike' ? { baseline: client.baseline } : {}),
        description,
      });
    };
    const window = `in the last ${s.windowSeconds} s`;

    const requests = client.issued + client.denied;
    if (requests >= s.minRequestsForRatio && client.denied / requests >= s.denialRatio) {
      const ratio = client.denied / requests;
      raise(
        'denial_ratio',
        ratio,
        s.denialRatio,
        `Client ${clientId}: ${client.denied} of ${requests} token requests denied ${window} ` +
          `(ratio ${round(ratio)}, threshold ${s.denialRatio}).`,
      );
    }

    if (client.samples >= s.baselineWindows) {
      const threshold = Math.max(s.issuanceSpikeFactor * client.baseline, s.minIssuedForSpike);
      if (client.issued >= threshold) {
        const factor = client.baseline > 0 ? `${round(client.issued / client.baseline)}× ` : '';
        raise(
          'issuance_spike',
          client.issued,
          threshold,
          `Client ${clientId}: ${client.issued} tokens issued ${window}, ${factor}its usual ` +
            `${round(client.baseline)} per ${s.windowSeconds} s (threshold ${round(threshold)}).`,
        );
      }
    }

    const addresses = client.addresses?.size ?? 0;
    if (addresses > s.maxAddresses) {
      raise(
        'many_addresses',
        addresses,
        s.maxAddresses,
        `Client ${clientId}: requests from at least ${addresses} distinct addresses ${window} ` +
          `(limit ${s.maxAddresses}).`,
      );
    }
    const keys = client.dpopKeys?.size ?? 0;
    if (keys > s.maxDpopKeys) {
      raise(
        'many_dpop_keys',
        keys,
        s.maxDpopKeys,
        `Client ${clientId}: requests with at least ${keys} distinct DPoP keys ${window} ` +
          `(limit ${s.maxDpopKeys}).`,
      );
    }

    // Judged on the inactive client's own attempts only: once re-enabled, its earlier attempts raise nothing.
    if (inactiveState && client.inactive >= s.inactiveAttempts) {
      raise(
        'inactive_client',
        client.inactive,
        s.inactiveAttempts,
        `Client ${clientId} is ${inactiveState} but made ${client.inactive} token requests ${window} ` +
          `(threshold ${s.inactiveAttempts}).`,
      );
    }
    return raised;
  }
}
