import { calculateJwkThumbprint, exportJWK, generateKeyPair } from 'jose';
import { sql } from 'kysely';
import { z } from 'zod';

import { commitChange, type Actor, type Change, type ChangeDeps } from '../audit/audit-trail.ts';
import { lockForTransaction, tryLockForTransaction } from '../db/advisory-lock.ts';
import type { Db } from '../db/connect.ts';
import type { Jwk, SigningKeyRow } from '../db/tables/signing-key.table.ts';
import { MayflyError } from '../errors.ts';
import { seal, sealedWith, unseal, type Kek } from './envelope.ts';
import { toPublicJwk } from './jwk.ts';
import {
  nextTransitionOf,
  phaseAt,
  plan,
  planRevocation,
  planRotation,
  signingKeyAt,
  successorOf,
  type KeyAction,
  type KeyPhase,
  type KeyState,
  type LifecycleSettings,
} from './lifecycle.ts';
import {
  deleteSigningKey,
  findSigningKeys,
  insertSigningKey,
  lockSigningKeys,
  updateSigningKey,
} from './signing-key.repository.ts';

export interface KeyDeps extends ChangeDeps {
  settings: LifecycleSettings;
  /** The current KEK first (it seals), then former ones (they only open). */
  keks: readonly Kek[];
}

/** Changes Mayfly makes to its keys by itself, on schedule. */
export const KEY_SCHEDULER: Actor = { id: 'system:key-rotation' };

/** Every change to the key table runs under this transaction-scoped lock, so instances take turns. */
const KEY_LOCK = 0x6d66_7002;

const Timestamp = z.iso.datetime();

export const SigningKeyInfo = z
  .object({
    kid: z.string(),
    alg: z.string(),
    phase: z.enum(['published', 'active', 'retired', 'revoked']),
    published_at: Timestamp,
    activates_at: Timestamp,
    retires_at: Timestamp.nullable(),
    removes_at: Timestamp.nullable(),
    revoked_at: Timestamp.nullable(),
    next_transition: z
      .object({
        phase: z.enum(['active', 'retired', 'removed']),
        at: Timestamp,
        planned: z
          .boolean()
          .meta({ description: 'true: an estimate from the schedule, not yet fixed by a published successor' }),
      })
      .nullable(),
  })
  .meta({ id: 'SigningKey' });
export type SigningKeyInfo = z.output<typeof SigningKeyInfo>;

export function toKeyState(row: SigningKeyRow): KeyState {
  return {
    kid: row.kid,
    alg: row.alg,
    publishedAt: row.published_at,
    activatesAt: row.activates_at,
    retiresAt: row.retires_at,
    removesAt: row.removes_at,
    revokedAt: row.revoked_at,
    recordedPhase: row.recorded_phase as KeyPhase,
  };
}

export function toKeyInfo(
  keys: readonly KeyState[],
  key: KeyState,
  now: Date,
  settings: LifecycleSettings,
): SigningKeyInfo {
  const next = nextTransitionOf(keys, key, now, settings);
  return {
    kid: key.kid,
    alg: key.alg,
    phase: phaseAt(keys, key, now),
    published_at: key.publishedAt.toISOString(),
    activates_at: key.activatesAt.toISOString(),
    retires_at: key.retiresAt?.toISOString() ?? null,
    removes_at: key.removesAt?.toISOString() ?? null,
    revoked_at: key.revokedAt?.toISOString() ?? null,
    next_transition: next && {
      phase: next.phase as 'active' | 'retired' | 'removed',
      at: next.at.toISOString(),
      planned: next.planned,
    },
  };
}

/**
 * A new key pair of `alg`, its private half sealed under the KEK. The kid is the key's RFC 7638 thumbprint; one
 * starting with `-` or `_` is drawn again, so that a kid typed on a command line is never read as an option.
 */
async function generateSigningKey(alg: string, kek: Kek) {
  let jwk: Awaited<ReturnType<typeof exportJWK>>;
  let kid: string;
  do {
    const { privateKey } = await generateKeyPair(alg, {
      extractable: true,
      ...(alg === 'EdDSA' ? { crv: 'Ed25519' } : {}),
      ...(alg.startsWith('PS') || alg.startsWith('RS') ? { modulusLength: 2048 } : {}),
    });
    jwk = await exportJWK(privateKey);
    kid = await calculateJwkThumbprint(jwk);
  } while (/^[-_]/.test(kid));
  // alg and use keep the provider's key selection working (keys without them are skipped for signing).
  const privateJwk = { ...jwk, kid, alg, use: 'sig' } as Jwk;
  return { kid, alg, publicJwk: toPublicJwk(privateJwk), sealed: seal(kek, kid, privateJwk) };
}

const RECORDED_ACTIONS: Record<KeyPhase, string> = {
  published: 'signing_key.publish',
  active: 'signing_key.activate',
  retired: 'signing_key.retire',
  revoked: 'signing_key.revoke',
};

/** How a key appears in the audit trail: its schedule, never key material. */
function describe(row: SigningKeyRow, extra: object = {}): object {
  return {
    kid: row.kid,
    alg: row.alg,
    phase: row.recorded_phase,
    published_at: row.published_at.toISOString(),
    activates_at: row.activates_at.toISOString(),
    retires_at: row.retires_at?.toISOString() ?? null,
    removes_at: row.removes_at?.toISOString() ?? null,
    revoked_at: row.revoked_at?.toISOString() ?? null,
    ...extra,
  };
}

function keyChange(action: string, kid: string, before: object | null, after: object | null): Change {
  return { action, targetType: 'signing_key', targetId: kid, before, after };
}

/** Applies planner actions to the table, inside the caller's locked transaction; returns what to audit. */
async function applyKeyActions(
  trx: Db,
  rows: readonly SigningKeyRow[],
  actions: readonly KeyAction[],
  now: Date,
  kek: Kek,
): Promise<{ changes: Change[]; created: string[] }> {
  const byKid = new Map(rows.map((row) => [row.kid, row]));
  const changes: Change[] = [];
  const created: string[] = [];
  const update = async (kid: string, action: string, set: Parameters<typeof updateSigningKey>[2], extra = {}) => {
    const before = byKid.get(kid);
    if (!before) return;
    const after = await updateSigningKey(trx, kid, set);
    byKid.set(kid, after);
    changes.push(keyChange(action, kid, describe(before), describe(after, extra)));
  };
  for (const action of actions) {
    switch (action.type) {
      case 'create': {
        const key = await generateSigningKey(action.alg, kek);
        const row = await insertSigningKey(trx, {
          kid: key.kid,
          alg: key.alg,
          public_jwk: JSON.stringify(key.publicJwk),
          sealed_private_jwk: key.sealed,
          published_at: now,
          activates_at: action.activatesAt,
          recorded_phase: action.activatesAt > now ? 'published' : 'active',
        });
        byKid.set(row.kid, row);
        created.push(row.kid);
        changes.push(keyChange('signing_key.publish', row.kid, null, describe(row, { reason: action.reason })));
        break;
      }
      case 'schedule':
        await update(action.kid, 'signing_key.schedule', {
          retires_at: action.retiresAt,
          removes_at: action.removesAt,
        });
        break;
      case 'activate':
        await update(
          action.kid,
          'signing_key.activate',
          { activates_at: action.at, ...(action.at <= now ? { recorded_phase: 'active' } : {}) },
          { reason: 'promoted' },
        );
        break;
      case 'revoke':
        await update(action.kid, 'signing_key.revoke', {
          revoked_at: action.at,
          removes_at: action.removesAt,
          recorded_phase: 'revoked',
        });
        break;
      case 'remove': {
        const before = byKid.get(action.kid);
        if (!before) break;
        await deleteSigningKey(trx, action.kid);
        byKid.delete(action.kid);
        changes.push(keyChange('signing_key.remove', action.kid, describe(before), { reason: action.reason }));
        break;
      }
      case 'record':
        await update(action.kid, RECORDED_ACTIONS[action.to], { recorded_phase: action.to });
        break;
    }
  }
  return { changes, created };
}

interface KeyChangeResult {
  actions: KeyAction[];
  /** Kids of the keys the change generated. */
  created: string[];
  states: KeyState[];
}

/**
 * One change to the keys: decided on the rows as they are once the lock is held (another instance may have
 * changed them meanwhile), applied and audited in the same transaction.
 */
async function changeKeys(
  deps: KeyDeps,
  actor: Actor,
  decide: (keys: KeyState[], now: Date) => KeyAction[],
  options: { skipIfBusy?: boolean } = {},
): Promise<KeyChangeResult> {
  const [kek] = deps.keks;
  if (!kek) throw new Error('no key-encryption key');
  return commitChange(deps, actor, async (trx) => {
    // A lock held by a stuck session fails this change after 5 s rather than hanging it (and every refresh).
    await sql`set local lock_timeout = '5s'`.execute(trx);
    if (options.skipIfBusy && !(await tryLockForTransaction(trx, KEY_LOCK))) {
      // Another instance is applying the schedule right now; this one reads the outcome at its next refresh.
      const states = (await findSigningKeys(trx)).map(toKeyState);
      return { result: { actions: [], created: [], states }, change: null };
    }
    await lockForTransaction(trx, KEY_LOCK);
    // The time is read once the lock is held: a key created after a wait is still published a full propagation.
    const now = deps.clock.now();
    const rows = await lockSigningKeys(trx);
    const actions = decide(rows.map(toKeyState), now);
    const { changes, created } = await applyKeyActions(trx, rows, actions, now, kek);
    const states = (await findSigningKeys(trx)).map(toKeyState);
    return { result: { actions, created, states }, change: changes.length ? changes : null };
  });
}

/** Brings the keys to the schedule: the first key of a new installation, a due successor, removals. */
export async function runKeyPlanner(deps: KeyDeps, options: { skipIfBusy?: boolean } = {}): Promise<KeyChangeResult> {
  return changeKeys(deps, KEY_SCHEDULER, (keys, now) => plan(keys, now, deps.settings), options);
}

export async function listKeys(deps: KeyDeps): Promise<SigningKeyInfo[]> {
  const now = deps.clock.now();
  const keys = (await findSigningKeys(deps.db)).map(toKeyState);
  return keys.map((key) => toKeyInfo(keys, key, now, deps.settings));
}

export interface RotationResult {
  /** The key that signs next (or now, with `immediate`). */
  key: SigningKeyInfo;
  /** false when a successor was already published and is kept. */
  created: boolean;
}

export async function rotateKeys(deps: KeyDeps, actor: Actor, immediate: boolean): Promise<RotationResult> {
  const result = await changeKeys(deps, actor, (keys, now) => planRotation(keys, now, deps.settings, immediate));
  const now = deps.clock.now();
  const successor = immediate
    ? signingKeyAt(result.states, now)
    : successorOf(result.states, now, deps.settings.alg);
  if (!successor) throw new Error('rotation left no successor key');
  return { key: toKeyInfo(result.states, successor, now, deps.settings), created: result.created.length > 0 };
}

export interface RevocationResult {
  key: SigningKeyInfo;
  /** The key signing after the revocation. */
  signing_kid: string;
}

export async function revokeKey(deps: KeyDeps, actor: Actor, kid: string): Promise<RevocationResult> {
  const result = await changeKeys(deps, actor, (keys, now) => {
    if (!keys.some((key) => key.kid === kid)) {
      throw new MayflyError('key_not_found', `no signing key with kid ${kid}`);
    }
    return planRevocation(keys, kid, now, deps.settings);
  });
  const now = deps.clock.now();
  const key = result.states.find((state) => state.kid === kid);
  const signer = signingKeyAt(result.states, now);
  if (!key || !signer) throw new Error('revocation left no signing key');
  return { key: toKeyInfo(result.states, key, now, deps.settings), signing_kid: signer.kid };
}

export interface RewrapResult {
  /** Keys stored in clear before envelope encryption, now sealed. */
  sealed: number;
  /** Keys sealed under a former KEK, now sealed under the current one. */
  rewrapped: number;
  /** Keys already sealed under the current KEK. */
  unchanged: number;
}

/**
 * Seals every key under the current KEK: clear keys from before envelope encryption, and keys sealed under a
 * former KEK (KEK rotation). Refuses, naming the key, when a key opens with none of the KEKs.
 */
export async function rewrapKeys(deps: KeyDeps, actor: Actor): Promise<RewrapResult> {
  const [kek] = deps.keks;
  if (!kek) throw new Error('no key-encryption key');
  return commitChange(deps, actor, async (trx) => {
    await lockForTransaction(trx, KEY_LOCK);
    const rows = await lockSigningKeys(trx);
    const result: RewrapResult = { sealed: 0, rewrapped: 0, unchanged: 0 };
    const changes: Change[] = [];
    for (const row of rows) {
      if (row.sealed_private_jwk === null) {
        if (!row.private_jwk) throw new Error(`signing key ${row.kid} has no private half`);
        await updateSigningKey(trx, row.kid, {
          sealed_private_jwk: seal(kek, row.kid, row.private_jwk),
          private_jwk: null,
        });
        result.sealed += 1;
        changes.push(keyChange('signing_key.seal', row.kid, null, { kid: row.kid, kek: kek.id }));
        continue;
      }
      const formerKek = sealedWith(row.sealed_private_jwk);
      if (formerKek === kek.id) {
        result.unchanged += 1;
        continue;
      }
      const privateJwk = unseal(deps.keks, row.kid, row.sealed_private_jwk);
      await updateSigningKey(trx, row.kid, { sealed_private_jwk: seal(kek, row.kid, privateJwk) });
      result.rewrapped += 1;
      changes.push(keyChange('signing_key.rewrap', row.kid, { kek: formerKek }, { kek: kek.id }));
    }
    return { result, change: changes.length ? changes : null };
  });
}

/** Opens a stored key's private half with the KEKs. */
export function openPrivateJwk(row: SigningKeyRow, keks: readonly Kek[]): Jwk {
  if (row.sealed_private_jwk === null) {
    throw new Error(`signing key ${row.kid} is not sealed yet`);
  }
  return unseal(keks, row.kid, row.sealed_private_jwk);
}
