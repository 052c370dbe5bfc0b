import type { Actor, ChangeDeps } from '../audit/audit-trail.ts';
import { toAuditEvent } from '../audit/audit-trail.ts';
import { insertAuditEvent } from '../audit/audit-event.repository.ts';
import type { Db } from '../db/connect.ts';
import type { RegistrationTokenRow } from '../db/tables/registration.table.ts';
import { MayflyError, parseInput } from '../errors.ts';
import { findResourcesByIdentifiers } from '../clients/resource.repository.ts';
import {
  deleteRegistrationToken,
  insertRegistrationToken,
  listRegistrationTokens as listRegistrationTokenRows,
} from './registration.repository.ts';
import {
  AUTH_METHODS,
  RegistrationTokenInput,
  type RegistrationToken,
  type RegistrationTokenWithValue,
} from './registration.schemas.ts';
import { generateInitialAccessToken, hashRegistrationToken } from './registration-token.ts';

export function toRegistrationToken(row: RegistrationTokenRow, now: Date): RegistrationToken {
  return {
    id: row.id,
    resources: row.resources,
    auth_methods: row.auth_methods,
    max_token_ttl: row.max_token_ttl,
    uses: row.uses,
    uses_left: row.uses_left,
    status: row.uses_left === 0 ? 'used' : row.expires_at <= now ? 'expired' : 'active',
    created_by: row.created_by,
    created_at: row.created_at.toISOString(),
    expires_at: row.expires_at.toISOString(),
  };
}

/**
 * The caps must name resources that exist with the scopes they define; the admin API's own resource is never
 * offered to self-registered clients, whatever the admin asks.
 */
async function checkResourceCaps(
  db: Db,
  caps: readonly { resource: string; scopes: readonly string[] }[],
): Promise<void> {
  const found = new Map(
    (
      await findResourcesByIdentifiers(
        db,
        caps.map((c) => c.resource),
      )
    ).map((r) => [r.identifier, r]),
  );
  for (const [i, cap] of caps.entries()) {
    const resource = found.get(cap.resource);
    if (!resource) throw new MayflyError('resource_not_found', `no resource with identifier ${cap.resource}`);
    if (resource.reserved) {
      throw new MayflyError(
        'invalid_input',
        `resources.${i}.resource: the admin API cannot be granted through registration`,
        [
          {
            path: `resources.${i}.resource`,
            message: 'the admin API cannot be granted through registration',
          },
        ],
      );
    }
    const undefinedScopes = cap.scopes.filter((scope) => !resource.scopes.includes(scope));
    if (undefinedScopes.length) {
      throw new MayflyError(
        'scope_not_defined',
        `${cap.resource} does not define ${undefinedScopes.join(', ')}; it defines ${resource.scopes.join(' ')}`,
      );
    }
  }
}

/** Audited like any admin change, so that who minted which capability is on record (never the token itself). */
async function recordChange(
  deps: ChangeDeps,
  trx: Db,
  actor: Actor,
  change: { action: string; targetId: string; before: object | null; after: object | null; now: Date },
) {
  const row = await insertAuditEvent(trx, {
    occurred_at: change.now,
    actor: actor.id,
    action: change.action,
    target_type: 'registration_token',
    target_id: change.targetId,
    before: change.before && JSON.stringify(change.before),
    after: change.after && JSON.stringify(change.after),
  });
  return toAuditEvent(row);
}

export async function createRegistrationToken(
  deps: ChangeDeps,
  actor: Actor,
  input: RegistrationTokenInput,
): Promise<RegistrationTokenWithValue> {
  const parsed = parseInput(RegistrationTokenInput, input);
  const now = deps.clock.now();
  const token = generateInitialAccessToken();
  const { result, event } = await deps.db.transaction().execute(async (trx) => {
    await checkResourceCaps(trx, parsed.resources);
    const row = await insertRegistrationToken(trx, {
      token_hash: hashRegistrationToken(token),
      resources: JSON.stringify(parsed.resources),
      auth_methods: parsed.auth_methods ?? [...AUTH_METHODS],
      max_token_ttl: parsed.max_token_ttl ?? null,
      uses: parsed.uses,
      uses_left: parsed.uses,
      created_by: actor.id,
      expires_at: new Date(now.getTime() + parsed.expires_in * 1000),
    });
    const result = toRegistrationToken(row, now);
    const event = await recordChange(deps, trx, actor, {
      action: 'registration_token.create',
      targetId: row.id,
      before: null,
      after: result,
      now,
    });
    return { result, event };
  });
  deps.audit.adminChange(event);
  return { ...result, token };
}

export async function listRegistrationTokens(deps: ChangeDeps): Promise<RegistrationToken[]> {
  const now = deps.clock.now();
  return (await listRegistrationTokenRows(deps.db)).map((row) => toRegistrationToken(row, now));
}

/** Revoking deletes the token: clients it already registered keep working, each with its own caps. */
export async function revokeRegistrationToken(deps: ChangeDeps, actor: Actor, id: string): Promise<void> {
  const now = deps.clock.now();
  const event = await deps.db.transaction().execute(async (trx) => {
    const row = /^[0-9a-f-]{36}$/i.test(id) ? await deleteRegistrationToken(trx, id) : undefined;
    if (!row) throw new MayflyError('not_found', `no registration token ${id}`);
    return recordChange(deps, trx, actor, {
      action: 'registration_token.revoke',
      targetId: row.id,
      before: toRegistrationToken(row, now),
      after: null,
      now,
    });
  });
  deps.audit.adminChange(event);
}
