/**
 * The signing-key lifecycle, as pure functions of (keys, clock, settings): no I/O, so weeks of simulated time run
 * in a unit test.
 *
 *   published (in the JWKS, not signing) → active (signing) → retired (in the JWKS, not signing) → removed
 *
 * - A successor is published one propagation time before it signs, so a resource server that honours the
 *   JWKS cache headers already holds it when its first token arrives (propagation ≥ max-age + margin).
 * - The signing key is the latest-activated key that is not revoked: a key keeps signing until its successor
 *   takes over, whatever happens to the schedule (an instance down for a week resumes with the old key and
 *   publishes a successor; it never signs with an unpublished one).
 * - A retired key stays published for the retention time (≥ the longest token lifetime plus clock skew), so
 *   every unexpired token's key is in the JWKS.
 * - The exceptions are explicit: the very first key of an installation, `rotate --now`, and the successor
 *   promoted by an emergency revocation sign at once.
 */
import type { SigningAlg } from '../config/config.ts';

export type KeyPhase = 'published' | 'active' | 'retired' | 'revoked';

export interface KeyState {
  kid: string;
  alg: string;
  publishedAt: Date;
  activatesAt: Date;
  /** When its successor takes over; null while no successor is scheduled. */
  retiresAt: Date | null;
  /** When it leaves the JWKS for good; set once it has a successor, or when it is revoked. */
  removesAt: Date | null;
  revokedAt: Date | null;
  /** The phase last recorded in the audit trail: a difference with the derived phase is a transition. */
  recordedPhase: KeyPhase;
}

/** Durations in seconds. */
export interface LifecycleSettings {
  alg: SigningAlg;
  rotationInterval: number;
  propagation: number;
  retention: number;
}

export type CreateReason = 'first' | 'scheduled' | 'algorithm' | 'manual' | 'manual-now' | 'revocation';

export type KeyAction =
  /** Generate and store a new key of `alg`, published now. */
  | { type: 'create'; alg: string; activatesAt: Date; reason: CreateReason }
  /** Set when a key retires and leaves the JWKS. */
  | { type: 'schedule'; kid: string; retiresAt: Date | null; removesAt: Date | null }
  /** Bring a published key's activation forward to `at` (a manual or emergency promotion). */
  | { type: 'activate'; kid: string; at: Date }
  | { type: 'revoke'; kid: string; at: Date; removesAt: Date }
  | { type: 'remove'; kid: string; reason: 'expired' | 'withdrawn' }
  | { type: 'record'; kid: string; from: KeyPhase; to: KeyPhase };

const seconds = (n: number) => n * 1000;
const later = (at: Date, s: number) => new Date(at.getTime() + seconds(s));

/**
 * The key that signs at `now`: the latest activated key that is not revoked (on a tie, the latest published,
 * then the greatest kid, so every instance picks the same one).
 */
export function signingKeyAt(keys: readonly KeyState[], now: Date): KeyState | undefined {
  let signer: KeyState | undefined;
  for (const key of keys) {
    if (key.revokedAt || key.activatesAt > now) continue;
    if (!signer || compareRecency(key, signer) > 0) signer = key;
  }
  return signer;
}

function compareRecency(a: KeyState, b: KeyState): number {
  return (
    a.activatesAt.getTime() - b.activatesAt.getTime() ||
    a.publishedAt.getTime() - b.publishedAt.getTime() ||
    (a.kid > b.kid ? 1 : a.kid < b.kid ? -1 : 0)
  );
}

export function phaseAt(keys: readonly KeyState[], key: KeyState, now: Date): KeyPhase {
  if (key.revokedAt) return 'revoked';
  if (key.activatesAt > now) return 'published';
  return signingKeyAt(keys, now)?.kid === key.kid ? 'active' : 'retired';
}

/** Whether a key's row is due to be deleted: retired or revoked, and past its removal time. */
function isExpired(keys: readonly KeyState[], key: KeyState, now: Date): boolean {
  const phase = phaseAt(keys, key, now);
  return (phase === 'retired' || phase === 'revoked') && key.removesAt !== null && key.removesAt <= now;
}

/** The keys a resource server may meet: published, active and retired ones, newest first. */
export function publishedAt(keys: readonly KeyState[], now: Date): KeyState[] {
  return keys
    .filter((key) => !key.revokedAt && !isExpired(keys, key, now))
    .sort((a, b) => b.activatesAt.getTime() - a.activatesAt.getTime() || (a.kid < b.kid ? -1 : 1));
}

/** The published key due to sign next after the current signer, if one is scheduled. */
export function successorOf(keys: readonly KeyState[], now: Date, alg: string): KeyState | undefined {
  return keys
    .filter((key) => !key.revokedAt && key.activatesAt > now && key.alg === alg)
    .sort((a, b) => a.activatesAt.getTime() - b.activatesAt.getTime())[0];
}

/**
 * What has to happen at `now` for the keys to follow the schedule. Applying the actions and planning again at the
 * same instant yields only `record` actions already applied, i.e. nothing: the planner is idempotent.
 */
export function plan(keys: readonly KeyState[], now: Date, settings: LifecycleSettings): KeyAction[] {
  const actions: KeyAction[] = [];
  const removed = new Set<string>();
  for (const key of keys) {
    if (isExpired(keys, key, now)) {
      actions.push({ type: 'remove', kid: key.kid, reason: 'expired' });
      removed.add(key.kid);
    } else if (!key.revokedAt && key.activatesAt > now && key.alg !== settings.alg) {
      // Published for an algorithm no longer configured and never used: withdrawn, a new one follows.
      actions.push({ type: 'remove', kid: key.kid, reason: 'withdrawn' });
      removed.add(key.kid);
    }
  }
  const remaining = keys.filter((key) => !removed.has(key.kid));
  const signer = signingKeyAt(remaining, now);

  if (!signer) {
    // A new installation, or every key revoked: nothing can wait for propagation.
    const waiting = successorOf(remaining, now, settings.alg);
    if (waiting) actions.push({ type: 'activate', kid: waiting.kid, at: now });
    else actions.push({ type: 'create', alg: settings.alg, activatesAt: now, reason: 'first' });
  } else {
    let successor = successorOf(remaining, now, settings.alg);
    if (!successor) {
      const algorithmChanged = signer.alg !== settings.alg;
      const due = algorithmChanged
        ? now
        : later(signer.activatesAt, settings.rotationInterval - settings.propagation);
      if (now >= due) {
        const activatesAt = later(now, settings.propagation);
        actions.push({
          type: 'create',
          alg: settings.alg,
          activatesAt,
          reason: algorithmChanged ? 'algorithm' : 'scheduled',
        });
        successor = { activatesAt } as KeyState;
      }
    }
    const retiresAt = successor?.activatesAt ?? null;
    if (signer.retiresAt?.getTime() !== retiresAt?.getTime()) {
      actions.push({
        type: 'schedule',
        kid: signer.kid,
        retiresAt,
        removesAt: retiresAt && later(retiresAt, settings.retention),
      });
    }
  }

  for (const key of remaining) {
    const phase = phaseAt(remaining, key, now);
    if (phase === 'retired' && key.removesAt === null) {
      // Retired without a recorded schedule (e.g. a key from before rotation existed): its tokens may be live.
      const retiredAt = key.retiresAt ?? now;
      actions.push({ type: 'schedule', kid: key.kid, retiresAt: retiredAt, removesAt: later(now, settings.retention) });
    }
    if (phase !== key.recordedPhase) actions.push({ type: 'record', kid: key.kid, from: key.recordedPhase, to: phase });
  }
  return actions;
}

/**
 * `mayfly key rotate`: publish a successor now (it signs after the propagation time), or with `immediate`, sign
 * with a new key at once — resource servers holding a cached JWKS meet an unknown kid until they refetch.
 */
export function planRotation(
  keys: readonly KeyState[],
  now: Date,
  settings: LifecycleSettings,
  immediate: boolean,
): KeyAction[] {
  const signer = signingKeyAt(keys, now);
  const successor = successorOf(keys, now, settings.alg);
  if (!immediate) {
    if (successor) return [];
    const activatesAt = later(now, settings.propagation);
    return [
      { type: 'create', alg: settings.alg, activatesAt, reason: 'manual' },
      ...(signer ? [retire(signer, activatesAt, settings)] : []),
    ];
  }
  return [
    successor
      ? { type: 'activate', kid: successor.kid, at: now }
      : { type: 'create', alg: settings.alg, activatesAt: now, reason: 'manual-now' },
    ...(signer ? [retire(signer, now, settings)] : []),
  ];
}

/**
 * Emergency revocation: the key leaves the JWKS at once and, when it was signing, a successor signs at once (the
 * published one if any, else a new key).
 */
export function planRevocation(
  keys: readonly KeyState[],
  kid: string,
  now: Date,
  settings: LifecycleSettings,
): KeyAction[] {
  const key = keys.find((candidate) => candidate.kid === kid);
  if (!key || key.revokedAt) return [];
  const actions: KeyAction[] = [
    { type: 'revoke', kid, at: now, removesAt: later(now, settings.retention) },
  ];
  const signer = signingKeyAt(keys, now);
  if (signer?.kid === kid) {
    const successor = successorOf(keys, now, settings.alg);
    actions.push(
      successor
        ? { type: 'activate', kid: successor.kid, at: now }
        : { type: 'create', alg: settings.alg, activatesAt: now, reason: 'revocation' },
    );
  } else if (signer && signer.retiresAt?.getTime() === key.activatesAt.getTime() && key.activatesAt > now) {
    // The revoked key was the scheduled successor: the signer keeps signing until the planner publishes another.
    actions.push({ type: 'schedule', kid: signer.kid, retiresAt: null, removesAt: null });
  }
  return actions;
}

function retire(signer: KeyState, at: Date, settings: LifecycleSettings): KeyAction {
  return { type: 'schedule', kid: signer.kid, retiresAt: at, removesAt: later(at, settings.retention) };
}

/** The next instant at which the derived state changes on its own (a key activates, leaves, or a rotation is due). */
export function nextChangeAt(keys: readonly KeyState[], now: Date, settings: LifecycleSettings): Date | undefined {
  const candidates: Date[] = [];
  for (const key of keys) {
    if (!key.revokedAt && key.activatesAt > now) candidates.push(key.activatesAt);
    if (key.removesAt && key.removesAt > now) candidates.push(key.removesAt);
  }
  const signer = signingKeyAt(keys, now);
  if (signer && !successorOf(keys, now, settings.alg)) {
    candidates.push(later(signer.activatesAt, settings.rotationInterval - settings.propagation));
  }
  const future = candidates.filter((at) => at > now).sort((a, b) => a.getTime() - b.getTime());
  return future[0];
}

/** A key's coming transition, for `mayfly key list`: planned (not yet scheduled) ones are estimates. */
export interface NextTransition {
  phase: KeyPhase | 'removed';
  at: Date;
  planned: boolean;
}

export function nextTransitionOf(
  keys: readonly KeyState[],
  key: KeyState,
  now: Date,
  settings: LifecycleSettings,
): NextTransition | null {
  switch (phaseAt(keys, key, now)) {
    case 'published':
      return { phase: 'active', at: key.activatesAt, planned: false };
    case 'active': {
      if (key.retiresAt) return { phase: 'retired', at: key.retiresAt, planned: false };
      const due = later(key.activatesAt, settings.rotationInterval);
      const earliest = later(now, settings.propagation);
      return { phase: 'retired', at: due > earliest ? due : earliest, planned: true };
    }
    case 'retired':
    case 'revoked':
      return key.removesAt && { phase: 'removed', at: key.removesAt, planned: false };
  }
}

/**
 * Applies actions to an in-memory key list, exactly as the repository applies them to the table; used by the
 * simulation tests. `newKid` names the keys that `create` actions generate.
 */
export function applyActions(
  keys: readonly KeyState[],
  actions: readonly KeyAction[],
  now: Date,
  newKid: () => string,
): KeyState[] {
  let next = keys.map((key) => ({ ...key }));
  const find = (kid: string) => next.find((key) => key.kid === kid);
  for (const action of actions) {
    switch (action.type) {
      case 'create':
        next.push({
          kid: newKid(),
          alg: action.alg,
          publishedAt: now,
          activatesAt: action.activatesAt,
          retiresAt: null,
          removesAt: null,
          revokedAt: null,
          recordedPhase: action.activatesAt > now ? 'published' : 'active',
        });
        break;
      case 'schedule': {
        const key = find(action.kid);
        if (key) Object.assign(key, { retiresAt: action.retiresAt, removesAt: action.removesAt });
        break;
      }
      case 'activate': {
        const key = find(action.kid);
        if (key) {
          key.activatesAt = action.at;
          if (action.at <= now) key.recordedPhase = 'active';
        }
        break;
      }
      case 'revoke': {
        const key = find(action.kid);
        if (key) Object.assign(key, { revokedAt: action.at, removesAt: action.removesAt, recordedPhase: 'revoked' });
        break;
      }
      case 'remove':
        next = next.filter((key) => key.kid !== action.kid);
        break;
      case 'record': {
        const key = find(action.kid);
        if (key) key.recordedPhase = action.to;
        break;
      }
    }
  }
  return next;
}
