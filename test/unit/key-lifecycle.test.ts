/**
 * The signing-key lifecycle planner (src/keys/lifecycle.ts): targeted cases for each rule, then weeks of simulated
 * time with a fake clock, irregular planner runs, outages, manual rotations and revocations, tokens and caching
 * resource servers, checking the safety invariants at every planner run and at instants in between.
 */
import { describe, expect, it } from 'vitest';

import {
  CLOCK_SKEW_SECONDS,
  ConfigError,
  JWKS_REFRESH_MARGIN_SECONDS,
  loadConfig,
  type SigningAlg,
} from '../../src/config/config.ts';
import {
  applyActions,
  nextChangeAt,
  nextTransitionOf,
  phaseAt,
  plan,
  planRevocation,
  planRotation,
  publishedAt,
  signingKeyAt,
  type KeyAction,
  type KeyState,
  type LifecycleSettings,
} from '../../src/keys/lifecycle.ts';

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const WEEK = 7 * DAY;
const START = Date.UTC(2026, 0, 5);
const SKEW = CLOCK_SKEW_SECONDS * SECOND;

/** The default schedule: rotation 24 h, propagation 1 h, retention 1 h (max token lifetime 900 s). */
const S: LifecycleSettings = { alg: 'ES256', rotationInterval: 86_400, propagation: 3_600, retention: 3_600 };
const R = S.rotationInterval * SECOND;
const P = S.propagation * SECOND;
const RET = S.retention * SECOND;
const at = (offset: number) => new Date(START + offset);

/** An in-memory key table: kids k1, k2… in creation order. */
class Store {
  keys: KeyState[] = [];
  readonly settings: LifecycleSettings;
  #count = 0;

  constructor(settings: LifecycleSettings = S) {
    this.settings = settings;
  }

  apply(actions: readonly KeyAction[], now: Date): readonly KeyAction[] {
    this.keys = applyActions(this.keys, actions, now, () => `k${++this.#count}`);
    return actions;
  }

  plan(now: Date, settings: LifecycleSettings = this.settings): readonly KeyAction[] {
    return this.apply(plan(this.keys, now, settings), now);
  }

  key(kid: string): KeyState {
    const key = this.keys.find((candidate) => candidate.kid === kid);
    if (!key) throw new Error(`no key ${kid}`);
    return key;
  }

  signer(now: Date): string | undefined {
    return signingKeyAt(this.keys, now)?.kid;
  }

  published(now: Date): string[] {
    return publishedAt(this.keys, now).map((key) => key.kid);
  }
}

/** An installation whose first key (k1) was created at START. */
function installed(settings: LifecycleSettings = S): Store {
  const store = new Store(settings);
  store.plan(at(0));
  return store;
}

/** Same actions, in any order (the order within one plan carries no meaning). */
function expectActions(actual: readonly KeyAction[], expected: readonly KeyAction[]): void {
  expect(actual).toHaveLength(expected.length);
  for (const action of expected) expect(actual).toContainEqual(action);
}

describe('the scheduled lifecycle', () => {
  it('creates one key that signs at once on a new installation, and nothing more', () => {
    expect(signingKeyAt([], at(0))).toBeUndefined();
    const store = new Store();
    expect(store.plan(at(0))).toEqual([
      { type: 'create', alg: 'ES256', activatesAt: at(0), reason: 'first' },
    ]);
    expect(store.keys).toHaveLength(1);
    expect(store.key('k1')).toMatchObject({
      publishedAt: at(0),
      activatesAt: at(0),
      recordedPhase: 'active',
    });
    expect(store.signer(at(0))).toBe('k1');
    expect(store.published(at(0))).toEqual(['k1']);
    expect(phaseAt(store.keys, store.key('k1'), at(0))).toBe('active');
    expect(plan(store.keys, at(0), S)).toEqual([]);
  });

  it('publishes the successor one propagation time before the rotation interval ends, then retires and removes the predecessor', () => {
    const store = installed();
    const due = R - P;
    expect(nextChangeAt(store.keys, at(0), S)).toEqual(at(due));
    expect(plan(store.keys, at(due - 1), S)).toEqual([]);

    expectActions(store.plan(at(due)), [
      { type: 'create', alg: 'ES256', activatesAt: at(R), reason: 'scheduled' },
      { type: 'schedule', kid: 'k1', retiresAt: at(R), removesAt: at(R + RET) },
    ]);
    expect(store.key('k2')).toMatchObject({
      publishedAt: at(due),
      activatesAt: at(R),
      recordedPhase: 'published',
    });
    expect(store.published(at(due))).toEqual(['k2', 'k1']);
    expect(phaseAt(store.keys, store.key('k2'), at(due))).toBe('published');
    expect(store.signer(at(R - 1))).toBe('k1');
    expect(store.signer(at(R))).toBe('k2');

    // The transition itself needs no planner: only the audit trail catches up.
    expectActions(store.plan(at(R)), [
      { type: 'record', kid: 'k1', from: 'active', to: 'retired' },
      { type: 'record', kid: 'k2', from: 'published', to: 'active' },
    ]);
    expect(phaseAt(store.keys, store.key('k1'), at(R))).toBe('retired');
    expect(store.published(at(R + RET - 1))).toEqual(['k2', 'k1']);
    expect(store.published(at(R + RET))).toEqual(['k2']);
    expect(plan(store.keys, at(R + RET - 1), S)).toEqual([]);
    expect(store.plan(at(R + RET))).toEqual([{ type: 'remove', kid: 'k1', reason: 'expired' }]);
    expect(store.keys.map((key) => key.kid)).toEqual(['k2']);
    // The successor's own rotation counts from its activation.
    expect(nextChangeAt(store.keys, at(R + RET), S)).toEqual(at(R + R - P));
  });

  it('times a successor from the planner run that creates it, never sooner, when the run is late', () => {
    const store = installed();
    const late = R - P + 37 * MINUTE;
    store.plan(at(late));
    const successor = store.key('k2');
    expect(successor.publishedAt).toEqual(at(late));
    expect(successor.activatesAt).toEqual(at(late + P));
    expect(store.key('k1')).toMatchObject({ retiresAt: at(late + P), removesAt: at(late + P + RET) });
    expect(store.signer(at(late + P - 1))).toBe('k1');
    expect(store.signer(at(late + P))).toBe('k2');
  });

  it('tells when the state changes next and what each key does next', () => {
    const store = installed();
    const k1 = () => store.key('k1');
    expect(nextTransitionOf(store.keys, k1(), at(0), S)).toEqual({
      phase: 'retired',
      at: at(R),
      planned: true,
    });
    // Overdue (no planner run yet): the estimate is never sooner than a successor could take over.
    expect(nextTransitionOf(store.keys, k1(), at(R - P / 2), S)).toEqual({
      phase: 'retired',
      at: at(R + P / 2),
      planned: true,
    });

    store.plan(at(R - P));
    expect(nextTransitionOf(store.keys, store.key('k2'), at(R - P), S)).toEqual({
      phase: 'active',
      at: at(R),
      planned: false,
    });
    expect(nextTransitionOf(store.keys, k1(), at(R - P), S)).toEqual({
      phase: 'retired',
      at: at(R),
      planned: false,
    });
    expect(nextChangeAt(store.keys, at(R - P), S)).toEqual(at(R));

    expect(nextTransitionOf(store.keys, k1(), at(R), S)).toEqual({
      phase: 'removed',
      at: at(R + RET),
      planned: false,
    });
    // Retention (1 h) ends before the new key's rotation is due (23 h).
    expect(nextChangeAt(store.keys, at(R), S)).toEqual(at(R + RET));

    store.apply(planRevocation(store.keys, 'k1', at(R + 1), S), at(R + 1));
    expect(nextTransitionOf(store.keys, k1(), at(R + 1), S)).toEqual({
      phase: 'removed',
      at: at(R + 1 + RET),
      planned: false,
    });
    expect(nextChangeAt(store.keys, at(R + 1), S)).toEqual(at(R + 1 + RET));
  });

  it('schedules the removal of a key retired without a schedule, so it leaves once its tokens are expired', () => {
    // Two keys from before rotation existed: no retirement or removal recorded.
    const legacy = (kid: string, activated: number): KeyState => ({
      kid,
      alg: 'ES256',
      publishedAt: at(activated),
      activatesAt: at(activated),
      retiresAt: null,
      removesAt: null,
      revokedAt: null,
      recordedPhase: 'active',
    });
    const store = new Store();
    store.keys = [legacy('old', -2 * DAY), legacy('new', -2 * HOUR)];
    expect(store.signer(at(0))).toBe('new');
    expect(store.published(at(0))).toEqual(['new', 'old']);
    expectActions(store.plan(at(0)), [
      { type: 'schedule', kid: 'old', retiresAt: at(0), removesAt: at(RET) },
      { type: 'record', kid: 'old', from: 'active', to: 'retired' },
    ]);
    expect(store.published(at(RET - 1))).toEqual(['new', 'old']);
    expect(store.published(at(RET))).toEqual(['new']);
    expect(store.plan(at(RET))).toEqual([{ type: 'remove', kid: 'old', reason: 'expired' }]);
  });

  it('activates at once a key published before any key signs, and planning again yields nothing', () => {
    // `mayfly key rotate` on an empty table publishes a key with no signer; the planner then has nothing to wait for.
    const store = new Store();
    store.apply(planRotation([], at(0), S, false), at(0));
    expect(store.key('k1').activatesAt).toEqual(at(P));
    expect(store.plan(at(0))).toEqual([{ type: 'activate', kid: 'k1', at: at(0) }]);
    expect(store.signer(at(0))).toBe('k1');
    // The repository records an activation at `now` as the active phase (key.service.ts applyKeyActions); the
    // in-memory applyActions, documented as applying actions "exactly as the repository", must too.
    expect.soft(store.key('k1').recordedPhase).toBe('active');
    expect.soft(plan(store.keys, at(0), S)).toEqual([]);
  });
});

describe('manual rotation', () => {
  it('publishes a successor that signs one propagation time later, and does nothing while one is pending', () => {
    const store = installed();
    const now = 2 * HOUR;
    expectActions(store.apply(planRotation(store.keys, at(now), S, false), at(now)), [
      { type: 'create', alg: 'ES256', activatesAt: at(now + P), reason: 'manual' },
      { type: 'schedule', kid: 'k1', retiresAt: at(now + P), removesAt: at(now + P + RET) },
    ]);
    expect(store.key('k2').publishedAt).toEqual(at(now));
    expect(store.signer(at(now + P - 1))).toBe('k1');
    expect(store.signer(at(now + P))).toBe('k2');
    expect(planRotation(store.keys, at(now + MINUTE), S, false)).toEqual([]);
    // The planner agrees with the schedule the rotation set.
    expect(plan(store.keys, at(now + MINUTE), S)).toEqual([]);
  });

  it('with immediate, promotes the pending successor and retires the signer now', () => {
    const store = installed();
    store.plan(at(R - P));
    const now = R - P + 10 * MINUTE;
    expectActions(store.apply(planRotation(store.keys, at(now), S, true), at(now)), [
      { type: 'activate', kid: 'k2', at: at(now) },
      { type: 'schedule', kid: 'k1', retiresAt: at(now), removesAt: at(now + RET) },
    ]);
    expect(store.keys).toHaveLength(2);
    expect(store.signer(at(now))).toBe('k2');
    expect(store.published(at(now + RET - 1))).toEqual(['k2', 'k1']);
    expect(store.published(at(now + RET))).toEqual(['k2']);
  });

  it('with immediate and no successor, creates a key that signs now', () => {
    const store = installed();
    const now = 5 * HOUR;
    expectActions(store.apply(planRotation(store.keys, at(now), S, true), at(now)), [
      { type: 'create', alg: 'ES256', activatesAt: at(now), reason: 'manual-now' },
      { type: 'schedule', kid: 'k1', retiresAt: at(now), removesAt: at(now + RET) },
    ]);
    expect(store.signer(at(now))).toBe('k2');
    expect(store.key('k2').recordedPhase).toBe('active');
    expect(store.published(at(now))).toEqual(['k2', 'k1']);
    expect(store.plan(at(now))).toEqual([{ type: 'record', kid: 'k1', from: 'active', to: 'retired' }]);
    expect(plan(store.keys, at(now), S)).toEqual([]);
  });
});

describe('revocation', () => {
  it('of the signer promotes the pending successor at once; the revoked key leaves the JWKS now and its row after retention', () => {
    const store = installed();
    store.plan(at(R - P));
    const now = R - P + 5 * MINUTE;
    expectActions(store.apply(planRevocation(store.keys, 'k1', at(now), S), at(now)), [
      { type: 'revoke', kid: 'k1', at: at(now), removesAt: at(now + RET) },
      { type: 'activate', kid: 'k2', at: at(now) },
    ]);
    expect(store.signer(at(now))).toBe('k2');
    expect(store.published(at(now))).toEqual(['k2']);
    expect(phaseAt(store.keys, store.key('k1'), at(now))).toBe('revoked');
    store.plan(at(now));
    expect(plan(store.keys, at(now + RET - 1), S)).toEqual([]);
    expect(store.plan(at(now + RET))).toEqual([{ type: 'remove', kid: 'k1', reason: 'expired' }]);
    expect(store.keys.map((key) => key.kid)).toEqual(['k2']);
  });

  it('of the signer with no successor creates a key that signs at once', () => {
    const store = installed();
    const now = 3 * HOUR;
    expectActions(store.apply(planRevocation(store.keys, 'k1', at(now), S), at(now)), [
      { type: 'revoke', kid: 'k1', at: at(now), removesAt: at(now + RET) },
      { type: 'create', alg: 'ES256', activatesAt: at(now), reason: 'revocation' },
    ]);
    expect(store.signer(at(now))).toBe('k2');
    expect(store.published(at(now))).toEqual(['k2']);
    expect(store.plan(at(now))).toEqual([]);
  });

  it('of the pending successor clears the signer’s retirement; the planner then publishes another', () => {
    const store = installed();
    store.plan(at(R - P));
    const now = R - P + 20 * MINUTE;
    expectActions(store.apply(planRevocation(store.keys, 'k2', at(now), S), at(now)), [
      { type: 'revoke', kid: 'k2', at: at(now), removesAt: at(now + RET) },
      { type: 'schedule', kid: 'k1', retiresAt: null, removesAt: null },
    ]);
    expect(store.key('k1')).toMatchObject({ retiresAt: null, removesAt: null });
    // Without a planner run, k1 keeps signing past k2's former activation, and stays published.
    expect(store.signer(at(R))).toBe('k1');
    expect(store.published(at(R + RET + HOUR))).toEqual(['k1']);
    expectActions(store.plan(at(now)), [
      { type: 'create', alg: 'ES256', activatesAt: at(now + P), reason: 'scheduled' },
      { type: 'schedule', kid: 'k1', retiresAt: at(now + P), removesAt: at(now + P + RET) },
    ]);
    expect(store.signer(at(now + P - 1))).toBe('k1');
    expect(store.signer(at(now + P))).toBe('k3');
  });

  it('of a retired key only revokes it; an unknown or already revoked kid changes nothing', () => {
    const store = installed();
    store.plan(at(R - P));
    store.plan(at(R));
    const now = R + 10 * MINUTE;
    expect(store.apply(planRevocation(store.keys, 'k1', at(now), S), at(now))).toEqual([
      { type: 'revoke', kid: 'k1', at: at(now), removesAt: at(now + RET) },
    ]);
    expect(store.signer(at(now))).toBe('k2');
    expect(store.published(at(now))).toEqual(['k2']);
    expect(store.key('k2')).toMatchObject({ retiresAt: null, removesAt: null });
    expect(planRevocation(store.keys, 'k1', at(now + 1), S)).toEqual([]);
    expect(planRevocation(store.keys, 'nope', at(now + 1), S)).toEqual([]);
    expect(plan(store.keys, at(now), S)).toEqual([]);
  });
});

describe('an instance down for a week', () => {
  it('resumes signing with the old key until a successor has been published for the propagation time', () => {
    const store = installed();
    const resume = WEEK;
    expect(store.signer(at(resume))).toBe('k1');
    expect(nextTransitionOf(store.keys, store.key('k1'), at(resume), S)).toEqual({
      phase: 'retired',
      at: at(resume + P),
      planned: true,
    });
    expectActions(store.plan(at(resume)), [
      { type: 'create', alg: 'ES256', activatesAt: at(resume + P), reason: 'scheduled' },
      { type: 'schedule', kid: 'k1', retiresAt: at(resume + P), removesAt: at(resume + P + RET) },
    ]);
    expect(store.published(at(resume))).toEqual(['k2', 'k1']);
    expect(store.signer(at(resume + P - 1))).toBe('k1');
    expect(store.signer(at(resume + P))).toBe('k2');
  });

  it('lets a successor published before the outage take over on time, and removes the predecessor on resuming', () => {
    const store = installed();
    store.plan(at(R - P));
    // No planner runs: the derived state follows the recorded schedule.
    expect(store.signer(at(R))).toBe('k2');
    expect(store.published(at(R + RET - 1))).toEqual(['k2', 'k1']);
    expect(store.published(at(R + RET))).toEqual(['k2']);
    const resume = R + WEEK;
    expect(store.signer(at(resume))).toBe('k2');
    expectActions(store.plan(at(resume)), [
      { type: 'remove', kid: 'k1', reason: 'expired' },
      { type: 'create', alg: 'ES256', activatesAt: at(resume + P), reason: 'scheduled' },
      { type: 'schedule', kid: 'k2', retiresAt: at(resume + P), removesAt: at(resume + P + RET) },
      { type: 'record', kid: 'k2', from: 'published', to: 'active' },
    ]);
    expect(store.signer(at(resume + P - 1))).toBe('k2');
    expect(store.signer(at(resume + P))).toBe('k3');
  });
});

describe('an algorithm change', () => {
  const EDDSA: LifecycleSettings = { ...S, alg: 'EdDSA' };

  it('withdraws a published key of the old algorithm that never signed, and publishes the new one for the propagation time', () => {
    const store = installed();
    store.plan(at(R - P));
    const now = R - P + 20 * MINUTE;
    expectActions(store.plan(at(now), EDDSA), [
      { type: 'remove', kid: 'k2', reason: 'withdrawn' },
      { type: 'create', alg: 'EdDSA', activatesAt: at(now + P), reason: 'algorithm' },
      { type: 'schedule', kid: 'k1', retiresAt: at(now + P), removesAt: at(now + P + RET) },
    ]);
    expect(store.published(at(now))).toEqual(['k3', 'k1']);
    expect(store.key('k3')).toMatchObject({ alg: 'EdDSA', publishedAt: at(now) });
    // The old key signs past the withdrawn key's activation time, up to the new key's.
    expect(store.signer(at(R))).toBe('k1');
    expect(store.signer(at(now + P - 1))).toBe('k1');
    expect(store.signer(at(now + P))).toBe('k3');
    expect(plan(store.keys, at(now), EDDSA)).toEqual([]);
  });

  it('publishes a key of the new algorithm at once, though the rotation is not due', () => {
    const store = installed();
    const now = HOUR;
    expectActions(store.plan(at(now), EDDSA), [
      { type: 'create', alg: 'EdDSA', activatesAt: at(now + P), reason: 'algorithm' },
      { type: 'schedule', kid: 'k1', retiresAt: at(now + P), removesAt: at(now + P + RET) },
    ]);
    expect(store.signer(at(now + P - 1))).toBe('k1');
    expect(store.signer(at(now + P))).toBe('k2');
    // The new key's rotation then counts from its activation.
    store.plan(at(now + P), EDDSA);
    expect(nextChangeAt(store.keys, at(now + P), EDDSA)).toEqual(at(now + P + RET));
    expect(nextChangeAt(store.keys, at(now + P + RET), EDDSA)).toEqual(at(now + P + R - P));
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Simulation
// ---------------------------------------------------------------------------------------------------------------

/** mulberry32: a tiny seeded PRNG, so a failing run replays exactly. */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

interface Profile {
  settings: LifecycleSettings;
  /** Seconds. */
  maxTtl: number;
  /** Seconds. */
  jwksMaxAge: number;
}

/** Settings as the configuration loader accepts them, so the simulation covers exactly what may run. */
function profileFrom(env: Record<string, string>): Profile {
  const config = loadConfig(env);
  const { alg, rotationInterval, propagation, retention, jwksMaxAge } = config.keys;
  return {
    settings: { alg, rotationInterval, propagation, retention },
    maxTtl: config.tokens.maxTtl,
    jwksMaxAge,
  };
}

// Each profile uses the longest JWKS max-age its propagation allows: the worst case for a caching resource server.
// (The propagation also covers one check interval, 5 s by default, for other instances to see a new key.)
const CHECK_INTERVAL = 5;
const DEFAULT_ENV = { MAYFLY_JWKS_MAX_AGE: String(3_600 - JWKS_REFRESH_MARGIN_SECONDS - CHECK_INTERVAL) };
const TIGHT_ENV = {
  MAYFLY_KEY_ROTATION_INTERVAL: '7200',
  MAYFLY_KEY_PROPAGATION: '360',
  MAYFLY_KEY_RETENTION: '960',
  MAYFLY_MAX_TOKEN_TTL: '900',
  MAYFLY_JWKS_MAX_AGE: String(360 - JWKS_REFRESH_MARGIN_SECONDS - CHECK_INTERVAL),
};
const DEFAULTS = profileFrom(DEFAULT_ENV);
const TIGHT = profileFrom(TIGHT_ENV);

type Operation = 'rotate' | 'rotate-now' | 'revoke-signer' | 'revoke-successor' | 'revoke-retired';
const OPERATIONS: readonly Operation[] = [
  'rotate',
  'rotate-now',
  'revoke-signer',
  'revoke-successor',
  'revoke-retired',
];
type Origin = 'plan' | 'rotate' | 'rotate-now' | 'revoke';

interface Scenario {
  name: string;
  seed: number;
  profile: Profile;
  weeks: number;
  /** Manual rotations and revocations now and then. */
  operations: boolean;
  /** The configured algorithm changes to this one half-way through. */
  switchAlgTo?: SigningAlg;
}

interface Token {
  kid: string;
  iat: number;
  /** exp plus the clock skew a resource server tolerates. */
  liveUntil: number;
}

interface ResourceServer {
  /** Chance of receiving each new token, and of a client presenting an older one again. */
  readonly chance: number;
  cache: { fetchedAt: number; kids: ReadonlySet<string> } | undefined;
}

interface Report {
  violations: string[];
  violationCount: number;
  plannerRuns: number;
  inspections: number;
  tokens: number;
  cacheChecks: number;
  fetches: number;
  outages: number;
  longestOutage: number;
  downtime: number;
  signers: number;
  removed: number;
  exceptions: number;
  maxPublished: number;
  operations: Record<Operation, number>;
  algSwitch?: {
    at: number;
    withdrawn: string | undefined;
    withdrawnSigned: boolean;
    firstNewSigner: { kid: string; waited: number; exception: boolean } | undefined;
    oldSignedAfterNew: boolean;
    oldLeft: boolean;
  };
}

/** Bounds with these settings: signer, successor, and at most two retired keys (scheduled and manual). */
const MAX_PUBLISHED = 4;
/** Plus revoked rows waiting for their retention to end. */
const MAX_ROWS = 6;

function simulate(scenario: Scenario): Report {
  const random = mulberry32(scenario.seed);
  const uniform = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));
  let settings: LifecycleSettings = { ...scenario.profile.settings };
  const propagation = settings.propagation * SECOND;
  const rotation = settings.rotationInterval * SECOND;
  const retention = settings.retention * SECOND;
  const maxTtl = scenario.profile.maxTtl * SECOND;
  const maxAge = scenario.profile.jwksMaxAge * SECOND;
  const end = START + scenario.weeks * WEEK;
  const forcedOutageAt = START + Math.floor((end - START) * 0.4);
  const switchFrom = START + Math.floor((end - START) / 2);
  // Manual operations spaced so their retired keys do not pile up beyond MAX_PUBLISHED.
  const spacing = 2 * (propagation + retention);

  let keys: KeyState[] = [];
  let counter = 0;
  /** Keys allowed to sign before being published for the propagation time (first, rotate --now, revocation). */
  const exceptions = new Set<string>();
  const revokedAt = new Map<string, number>();
  const publishedOf = new Map<string, number>();
  const algOf = new Map<string, string>();
  const firstSigned = new Map<string, number>();
  const lastSigned = new Map<string, number>();
  const removed = new Set<string>();
  const withdrawn = new Set<string>();
  let tokens: Token[] = [];
  const servers: ResourceServer[] = [
    { chance: 1, cache: undefined },
    { chance: 0.2, cache: undefined },
    { chance: 0.02, cache: undefined },
  ];
  const report: Report = {
    violations: [],
    violationCount: 0,
    plannerRuns: 0,
    inspections: 0,
    tokens: 0,
    cacheChecks: 0,
    fetches: 0,
    outages: 0,
    longestOutage: 0,
    downtime: 0,
    signers: 0,
    removed: 0,
    exceptions: 0,
    maxPublished: 0,
    operations: {
      rotate: 0,
      'rotate-now': 0,
      'revoke-signer': 0,
      'revoke-successor': 0,
      'revoke-retired': 0,
    },
  };

  const iso = (ms: number | undefined) => (ms === undefined ? '?' : new Date(ms).toISOString());
  const fail = (now: number, message: string) => {
    report.violationCount += 1;
    if (report.violations.length < 12) {
      report.violations.push(`${scenario.name}, seed ${scenario.seed}, at ${iso(now)}: ${message}`);
    }
  };
  const isRevoked = (kid: string, now: number) => (revokedAt.get(kid) ?? Infinity) <= now;
  const kidsOf = (list: readonly KeyState[]) => list.map((key) => key.kid).join(',');
  const fingerprint = (now: number) =>
    `${signingKeyAt(keys, new Date(now))?.kid}|${kidsOf(publishedAt(keys, new Date(now)))}`;
  const pendingAt = (now: Date) => keys.filter((key) => !key.revokedAt && key.activatesAt > now);

  /** Applies actions as the repository would, tracking which new signers are allowed exceptions. */
  function apply(actions: readonly KeyAction[], now: number, origin: Origin): void {
    const created: string[] = [];
    const firstEver = counter === 0;
    keys = applyActions(keys, actions, new Date(now), () => {
      // Zero-padded, so the tie-break on kid follows creation order.
      const kid = `k${String(++counter).padStart(4, '0')}`;
      created.push(kid);
      return kid;
    });
    const immediate = origin === 'rotate-now' || origin === 'revoke';
    let next = 0;
    for (const action of actions) {
      if (action.type === 'create') {
        const kid = created[next++];
        if (!kid) throw new Error('create without a new kid');
        publishedOf.set(kid, now);
        algOf.set(kid, action.alg);
        if (action.activatesAt.getTime() <= now && (immediate || (origin === 'plan' && firstEver))) {
          exceptions.add(kid);
        }
      } else if (action.type === 'activate') {
        if (action.at.getTime() <= now && immediate) exceptions.add(action.kid);
      } else if (action.type === 'revoke') {
        revokedAt.set(action.kid, action.at.getTime());
      } else if (action.type === 'remove') {
        removed.add(action.kid);
        if (action.reason === 'withdrawn') withdrawn.add(action.kid);
      }
    }
  }

  /** A resource server honouring max-age: it refetches only a JWKS older than max-age, on receiving a token. */
  function present(server: ResourceServer, index: number, token: Token, now: number): void {
    let cache = server.cache;
    if (!cache || now - cache.fetchedAt > maxAge) {
      cache = { fetchedAt: now, kids: new Set(publishedAt(keys, new Date(now)).map((key) => key.kid)) };
      server.cache = cache;
      report.fetches += 1;
    }
    // An exception key is unknown to caches until one max-age after its publication; a revoked key is meant to fail.
    const published = publishedOf.get(token.kid) ?? -Infinity;
    if ((exceptions.has(token.kid) && now < published + maxAge) || isRevoked(token.kid, now)) return;
    report.cacheChecks += 1;
    if (!cache.kids.has(token.kid)) {
      fail(
        now,
        `(c) resource server ${index} (JWKS fetched at ${iso(cache.fetchedAt)}: ${[...cache.kids].join(',')}) ` +
          `gets a token signed at ${iso(token.iat)} by ${token.kid}, published at ${iso(published)}`,
      );
    }
  }

  /** The derived state at `now`, with the keys as the last planner run left them; optionally issues tokens. */
  function inspect(now: number, serving: boolean): void {
    report.inspections += 1;
    const date = new Date(now);
    tokens = tokens.filter((token) => token.liveUntil > now);
    const signer = signingKeyAt(keys, date);
    if (!signer) {
      fail(now, '(d) no signing key');
      return;
    }
    const active = keys.filter((key) => phaseAt(keys, key, date) === 'active');
    if (active.length !== 1) fail(now, `(d) ${active.length} keys in the active phase: ${kidsOf(active)}`);
    const jwks = publishedAt(keys, date);
    const kids = new Set(jwks.map((key) => key.kid));
    report.maxPublished = Math.max(report.maxPublished, jwks.length);
    const age = now - signer.publishedAt.getTime();
    if (age < propagation && !exceptions.has(signer.kid)) {
      fail(now, `(a) ${signer.kid} signs ${age / SECOND} s after its publication`);
    }
    if (!kids.has(signer.kid))
      fail(now, `(b) the signer ${signer.kid} is not in the JWKS [${[...kids].join(',')}]`);
    if (signer.removesAt && signer.removesAt.getTime() <= now) {
      fail(now, `the signer ${signer.kid} is past its removal time ${iso(signer.removesAt.getTime())}`);
    }
    if (jwks.length > MAX_PUBLISHED) fail(now, `(e) ${jwks.length} keys published: ${kidsOf(jwks)}`);
    for (const key of jwks) {
      if (key.revokedAt) fail(now, `revoked ${key.kid} is published`);
      if (key.removesAt && key.removesAt.getTime() <= now && key.kid !== signer.kid) {
        fail(now, `(e) ${key.kid} is published past its removal time ${iso(key.removesAt.getTime())}`);
      }
    }
    for (const token of tokens) {
      if (!isRevoked(token.kid, now) && !kids.has(token.kid)) {
        fail(
          now,
          `(b) ${token.kid} signed a token live until ${iso(token.liveUntil)}, not in the JWKS [${[...kids].join(',')}]`,
        );
      }
    }
    if (!serving) return;

    const ttl = random() < 0.3 ? maxTtl : uniform(SECOND, maxTtl);
    const token: Token = { kid: signer.kid, iat: now, liveUntil: now + ttl + SKEW };
    tokens.push(token);
    report.tokens += 1;
    if (!firstSigned.has(signer.kid)) firstSigned.set(signer.kid, now);
    lastSigned.set(signer.kid, now);
    servers.forEach((server, index) => {
      if (random() < server.chance) present(server, index, token, now);
      const again = tokens[Math.floor(random() * tokens.length)];
      if (again && random() < server.chance) present(server, index, again, now);
    });
    // The oldest live token is the one most likely signed by a retiring key.
    const oldest = tokens[0];
    const busiest = servers[0];
    if (oldest && busiest) present(busiest, 0, oldest, now);
  }

  /** Checks the table right after a planner run has been applied at `now`. */
  function checkPlanned(now: number): void {
    const date = new Date(now);
    const again = plan(keys, date, settings);
    if (again.length) fail(now, `(d) planning again at the same instant yields ${JSON.stringify(again)}`);
    const signer = signingKeyAt(keys, date);
    if (!signer) {
      fail(now, '(d) no signing key after the planner ran');
      return;
    }
    const pending = pendingAt(date);
    if (pending.length > 1) fail(now, `${pending.length} successors pending: ${kidsOf(pending)}`);
    const successor = pending[0];
    if (successor) {
      if (successor.alg !== settings.alg)
        fail(now, `${successor.kid} (${successor.alg}) pending for ${settings.alg}`);
      if (successor.activatesAt.getTime() - successor.publishedAt.getTime() < propagation) {
        fail(now, `(a) successor ${successor.kid} is published for less than the propagation time`);
      }
    }
    const due = signer.alg === settings.alg ? signer.activatesAt.getTime() + rotation - propagation : now;
    if (now >= due && !successor)
      fail(now, `rotation of ${signer.kid} due at ${iso(due)}, no successor published`);
    const retiresAt = successor ? successor.activatesAt.getTime() : null;
    if ((signer.retiresAt?.getTime() ?? null) !== retiresAt) {
      fail(
        now,
        `signer ${signer.kid} retires at ${iso(signer.retiresAt?.getTime())}, successor at ${iso(retiresAt ?? undefined)}`,
      );
    }
    if ((signer.removesAt?.getTime() ?? null) !== (retiresAt === null ? null : retiresAt + retention)) {
      fail(now, `signer ${signer.kid} is to be removed at ${iso(signer.removesAt?.getTime())}`);
    }
    for (const key of keys) {
      const phase = phaseAt(keys, key, date);
      if (key.recordedPhase !== phase) fail(now, `${key.kid} recorded ${key.recordedPhase}, is ${phase}`);
      const removesAt = key.removesAt?.getTime();
      if ((phase === 'retired' || phase === 'revoked') && !(removesAt !== undefined && removesAt > now)) {
        fail(now, `(e) ${phase} ${key.kid} stays (removal ${iso(removesAt)})`);
      }
      if (phase === 'retired' && key.retiresAt) {
        const retired = key.retiresAt.getTime();
        if (removesAt !== retired + retention)
          fail(now, `retired ${key.kid} removal is not its retirement + retention`);
        if ((lastSigned.get(key.kid) ?? -Infinity) >= retired)
          fail(now, `${key.kid} signed after its retirement`);
      }
      if (removed.has(key.kid)) fail(now, `(e) removed ${key.kid} is back`);
    }
    if (keys.length > MAX_ROWS) fail(now, `(e) ${keys.length} key rows: ${kidsOf(keys)}`);
  }

  /** Until nextChangeAt nothing changes, so an instance may sleep until then (it must not be late). */
  function checkQuiet(now: number): void {
    const next = nextChangeAt(keys, new Date(now), settings)?.getTime();
    if (next === undefined || next <= now) {
      fail(now, `nextChangeAt gives ${iso(next)}`);
      return;
    }
    const state = fingerprint(now);
    for (const probe of [next - 1, uniform(now + 1, next - 1)]) {
      if (probe <= now) continue;
      if (fingerprint(probe) !== state)
        fail(now, `the keys change at ${iso(probe)}, before nextChangeAt ${iso(next)}`);
      const work = plan(keys, new Date(probe), settings);
      if (work.length)
        fail(now, `the planner has work at ${iso(probe)}, before nextChangeAt: ${JSON.stringify(work)}`);
    }
  }

  /** A manual rotation or revocation, as `mayfly key rotate [--now]` / `mayfly key revoke` decide it. */
  function operate(now: number): boolean {
    const date = new Date(now);
    const op = OPERATIONS[Math.floor(random() * OPERATIONS.length)] ?? 'rotate';
    const signer = signingKeyAt(keys, date);
    if (!signer) return false;
    const successor = pendingAt(date)[0];
    switch (op) {
      case 'rotate': {
        const actions = planRotation(keys, date, settings, false);
        if (successor && actions.length)
          fail(now, `rotate with ${successor.kid} pending: ${JSON.stringify(actions)}`);
        apply(actions, now, 'rotate');
        const next = pendingAt(date)[0];
        if (!next || next.activatesAt.getTime() - next.publishedAt.getTime() < propagation) {
          fail(now, 'rotate left no successor published for the propagation time');
        }
        if (signingKeyAt(keys, date)?.kid !== signer.kid) fail(now, 'rotate changed the signer at once');
        break;
      }
      case 'rotate-now': {
        apply(planRotation(keys, date, settings, true), now, 'rotate-now');
        const next = signingKeyAt(keys, date)?.kid;
        if (next === signer.kid || (successor && next !== successor.kid))
          fail(now, `rotate --now: ${next} signs`);
        break;
      }
      case 'revoke-signer': {
        apply(planRevocation(keys, signer.kid, date, settings), now, 'revoke');
        const next = signingKeyAt(keys, date)?.kid;
        if (next === signer.kid || (successor && next !== successor.kid))
          fail(now, `revoke signer: ${next} signs`);
        if (publishedAt(keys, date).some((key) => key.kid === signer.kid))
          fail(now, 'revoked signer still published');
        break;
      }
      case 'revoke-successor': {
        if (!successor) return false;
        apply(planRevocation(keys, successor.kid, date, settings), now, 'revoke');
        const kept = signingKeyAt(keys, date);
        if (kept?.kid !== signer.kid || kept.retiresAt !== null)
          fail(now, 'revoking the successor changed the signer');
        break;
      }
      case 'revoke-retired': {
        const retired = keys.filter((key) => phaseAt(keys, key, date) === 'retired');
        const victim = retired[Math.floor(random() * retired.length)];
        if (!victim) return false;
        const actions = planRevocation(keys, victim.kid, date, settings);
        if (actions.length !== 1) fail(now, `revoking retired ${victim.kid}: ${JSON.stringify(actions)}`);
        apply(actions, now, 'revoke');
        if (signingKeyAt(keys, date)?.kid !== signer.kid)
          fail(now, 'revoking a retired key changed the signer');
        break;
      }
    }
    report.operations[op] += 1;
    return true;
  }

  let now = START;
  let lastOperation = -Infinity;
  let forcedOutage = false;
  let switchedAt: number | undefined;
  let withdrawnAtSwitch: string | undefined;
  let newAlgSigns = false;
  while (now < end) {
    const date = new Date(now);
    // A configuration change rolls out with a restart; waiting for a pending successor exercises its withdrawal.
    if (scenario.switchAlgTo && switchedAt === undefined && now >= switchFrom) {
      const pending = pendingAt(date)[0];
      if (pending || now >= switchFrom + WEEK) {
        settings = { ...settings, alg: scenario.switchAlgTo };
        switchedAt = now;
        withdrawnAtSwitch = pending?.kid;
      }
    }
    report.plannerRuns += 1;
    apply(plan(keys, date, settings), now, 'plan');
    checkPlanned(now);
    if (switchedAt !== undefined && !newAlgSigns)
      newAlgSigns = signingKeyAt(keys, date)?.alg === settings.alg;
    const quietSwitch = switchedAt === undefined || newAlgSigns;
    // Operations are likelier while a successor is pending or a retired key published, so every kind happens.
    const busy = keys.some((key) => phaseAt(keys, key, date) !== 'active');
    if (
      scenario.operations &&
      quietSwitch &&
      now - lastOperation >= spacing &&
      random() < (busy ? 0.1 : 0.01)
    ) {
      if (operate(now)) lastOperation = now;
      // Between the operation and the next planner run, the derived state must already be safe.
      inspect(now, true);
      apply(plan(keys, date, settings), now, 'plan');
      checkPlanned(now);
    }
    inspect(now, true);
    checkQuiet(now);

    let next: number;
    let outage = false;
    if (!forcedOutage && now >= forcedOutageAt) {
      forcedOutage = outage = true;
      next = now + 4 * DAY;
    } else if (random() < 0.0008) {
      outage = true;
      next = now + uniform(2 * HOUR, 2 * DAY);
    } else {
      next = now + uniform(SECOND, 20 * MINUTE);
    }
    if (outage) {
      report.outages += 1;
      report.longestOutage = Math.max(report.longestOutage, next - now);
      report.downtime += next - now;
    }

    // In between planner runs: just before and at every scheduled change, the last instant of each live token,
    // and two random instants. Tokens are issued only while instances are up.
    const instants = new Set<number>();
    const within = (instant: number) => {
      if (instant > now && instant < next) instants.add(instant);
    };
    for (const key of keys) {
      for (const change of [key.activatesAt, key.retiresAt, key.removesAt]) {
        if (change) for (const instant of [change.getTime() - 1, change.getTime()]) within(instant);
      }
    }
    for (const token of tokens) within(token.liveUntil - 1);
    if (next - now > 2) for (let i = 0; i < 2; i++) within(uniform(now + 1, next - 1));
    for (const instant of [...instants].sort((a, b) => a - b)) inspect(instant, !outage);
    now = next;
  }

  report.signers = firstSigned.size;
  report.removed = removed.size;
  report.exceptions = exceptions.size;
  if (scenario.switchAlgTo && switchedAt !== undefined) {
    const newAlg = scenario.switchAlgTo;
    const firstNew = [...firstSigned]
      .filter(([kid]) => algOf.get(kid) === newAlg)
      .sort((a, b) => a[1] - b[1])[0];
    const firstNewAt = firstNew?.[1] ?? Infinity;
    report.algSwitch = {
      at: switchedAt,
      withdrawn: withdrawnAtSwitch && withdrawn.has(withdrawnAtSwitch) ? withdrawnAtSwitch : undefined,
      withdrawnSigned: withdrawnAtSwitch !== undefined && firstSigned.has(withdrawnAtSwitch),
      firstNewSigner: firstNew && {
        kid: firstNew[0],
        waited: firstNew[1] - (publishedOf.get(firstNew[0]) ?? Infinity),
        exception: exceptions.has(firstNew[0]),
      },
      oldSignedAfterNew: [...lastSigned].some(
        ([kid, last]) => algOf.get(kid) !== newAlg && last >= firstNewAt,
      ),
      oldLeft: keys.every((key) => key.alg === newAlg),
    };
  }
  return report;
}

describe('weeks of simulated time', () => {
  it('runs profiles at the limits the configuration accepts', () => {
    expect(DEFAULTS).toEqual({
      settings: { alg: 'ES256', rotationInterval: 86_400, propagation: 3_600, retention: 3_600 },
      maxTtl: 900,
      jwksMaxAge: 3_535,
    });
    expect(TIGHT.settings).toEqual({
      alg: 'ES256',
      rotationInterval: 7_200,
      propagation: 360,
      retention: 960,
    });
    expect(TIGHT.jwksMaxAge).toBe(295);
    // One step further and the configuration refuses to start: the simulation covers the worst accepted case.
    expect(() => loadConfig({ ...TIGHT_ENV, MAYFLY_JWKS_MAX_AGE: '296' })).toThrow(ConfigError);
    expect(() => loadConfig({ ...TIGHT_ENV, MAYFLY_KEY_RETENTION: '959' })).toThrow(ConfigError);
    expect(() => loadConfig({ ...DEFAULT_ENV, MAYFLY_JWKS_MAX_AGE: '3536' })).toThrow(ConfigError);
  });

  const scenarios: Scenario[] = [
    { name: 'defaults, no manual operations', seed: 1, profile: DEFAULTS, weeks: 6, operations: false },
    { name: 'defaults', seed: 20_260_105, profile: DEFAULTS, weeks: 6, operations: true },
    { name: 'tight, no manual operations', seed: 7, profile: TIGHT, weeks: 6, operations: false },
    { name: 'tight', seed: 424_242, profile: TIGHT, weeks: 6, operations: true },
    {
      name: 'defaults, ES256 → EdDSA',
      seed: 99,
      profile: DEFAULTS,
      weeks: 8,
      operations: true,
      switchAlgTo: 'EdDSA',
    },
    {
      name: 'tight, ES256 → EdDSA',
      seed: 5,
      profile: TIGHT,
      weeks: 6,
      operations: true,
      switchAlgTo: 'EdDSA',
    },
  ];

  it.each(scenarios)('$name (seed $seed): every invariant holds at every instant checked', (scenario) => {
    const report = simulate(scenario);
    const { rotationInterval, propagation } = scenario.profile.settings;
    expect(report.violations, `${report.violationCount} violations`).toEqual([]);

    // The run exercised what it claims to.
    expect(report.plannerRuns).toBeGreaterThan(3_000);
    expect(report.inspections).toBeGreaterThan(2 * report.plannerRuns);
    expect(report.tokens).toBeGreaterThan(10_000);
    expect(report.cacheChecks).toBeGreaterThan(10_000);
    expect(report.fetches).toBeGreaterThan(100);
    expect(report.outages).toBeGreaterThanOrEqual(2);
    expect(report.longestOutage).toBeGreaterThanOrEqual(4 * DAY);
    // Keys keep rotating while instances are up (each outage may delay one rotation), and retired keys leave.
    const uptime = scenario.weeks * WEEK - report.downtime;
    const minSigners = Math.floor(uptime / (rotationInterval * SECOND + 20 * MINUTE)) - report.outages;
    expect(report.signers).toBeGreaterThanOrEqual(minSigners);
    expect(report.removed).toBeGreaterThanOrEqual(report.signers - MAX_PUBLISHED);
    expect(report.maxPublished).toBeGreaterThanOrEqual(2);
    expect(report.maxPublished).toBeLessThanOrEqual(MAX_PUBLISHED);
    if (scenario.operations) {
      for (const op of OPERATIONS) expect(report.operations[op], op).toBeGreaterThan(0);
    } else {
      // Only the installation's first key ever signed without a full propagation time.
      expect(report.exceptions).toBe(1);
    }

    if (scenario.switchAlgTo) {
      const change = report.algSwitch;
      expect(change).toBeDefined();
      if (!change) return;
      // A published key of the old algorithm that never signed was withdrawn.
      expect(change.withdrawn).toBeDefined();
      expect(change.withdrawnSigned).toBe(false);
      // The new algorithm's first key waited the propagation time, like any scheduled key.
      expect(change.firstNewSigner).toBeDefined();
      expect(change.firstNewSigner?.exception).toBe(false);
      expect(change.firstNewSigner?.waited).toBeGreaterThanOrEqual(propagation * SECOND);
      expect(change.oldSignedAfterNew).toBe(false);
      expect(change.oldLeft).toBe(true);
    }
  });
});
