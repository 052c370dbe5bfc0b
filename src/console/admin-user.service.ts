import { commitChange, type Actor, type ChangeDeps } from '../audit/audit-trail.ts';
import type { Db } from '../db/connect.ts';
import type { AdminUserRow } from '../db/tables/admin-user.table.ts';
import { MayflyError, parseInput } from '../errors.ts';
import { seal, sealedWith, unseal, UnsealError, type Kek } from '../keys/envelope.ts';
import {
  AdminUserInput,
  AdminUserUpdate,
  type AdminUser,
  type AdminUserWithTotp,
} from './admin-user.schemas.ts';
import { hashPassword } from './password.ts';
import { generateTotpSecret, base32, otpauthUri } from './totp.ts';

export interface AdminUserDeps extends ChangeDeps {
  /** The KEK seals TOTP seeds (first: the current one; the others open older seals). */
  keks: readonly Kek[];
  /** Named in authenticator apps next to the account. */
  issuer: string;
}

export function toAdminUser(row: AdminUserRow): AdminUser {
  return {
    name: row.name,
    role: row.role,
    totp: row.totp_secret !== null,
    status: row.disabled_at ? 'disabled' : 'enabled',
    disabled_at: row.disabled_at?.toISOString() ?? null,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  };
}

/** The seal binds the seed to its user: a sealed seed copied onto another row does not open. */
const sealKid = (name: string) => `admin-user-totp:${name}`;

function sealTotp(deps: { keks: readonly Kek[] }, name: string, secret: Buffer): string {
  const kek = deps.keks[0];
  if (!kek) throw new Error('no key-encryption key');
  return seal(kek, sealKid(name), { kty: 'oct', kid: sealKid(name), k: secret.toString('base64url') });
}

export function openTotpSecret(keks: readonly Kek[], name: string, sealed: string): Buffer {
  const jwk = unseal(keks, sealKid(name), sealed);
  return Buffer.from(String(jwk.k), 'base64url');
}

function enrolment(deps: AdminUserDeps, name: string, secret: Buffer) {
  const issuerName = `Mayfly ${URL.parse(deps.issuer)?.host ?? deps.issuer}`;
  return { secret: base32(secret), otpauth_uri: otpauthUri(issuerName, name, secret) };
}

const notFound = (name: string) => new MayflyError('admin_user_not_found', `no admin user named ${name}`);

export async function findAdminUser(db: Db, name: string): Promise<AdminUserRow | undefined> {
  return db.selectFrom('admin_user').selectAll().where('name', '=', name).executeTakeFirst();
}

export async function listAdminUsers(db: Db): Promise<AdminUser[]> {
  const rows = await db.selectFrom('admin_user').selectAll().orderBy('name').execute();
  return rows.map(toAdminUser);
}

export async function getAdminUser(db: Db, name: string): Promise<AdminUser> {
  const row = await findAdminUser(db, name);
  if (!row) throw notFound(name);
  return toAdminUser(row);
}

export async function createAdminUser(
  deps: AdminUserDeps,
  actor: Actor,
  raw: AdminUserInput,
): Promise<AdminUserWithTotp> {
  const input = parseInput(AdminUserInput, raw);
  const passwordHash = await hashPassword(input.password);
  const secret = input.totp ? generateTotpSecret() : undefined;
  return commitChange(deps, actor, async (trx, now) => {
    const row = await trx
      .insertInto('admin_user')
      .values({
        name: input.name,
        password_hash: passwordHash,
        role: input.role,
        totp_secret: secret ? sealTotp(deps, input.name, secret) : null,
        totp_last_step: null,
        disabled_at: null,
        created_at: now,
        updated_at: now,
      })
      .onConflict((oc) => oc.column('name').doNothing())
      .returningAll()
      .executeTakeFirst();
    if (!row) throw new MayflyError('admin_user_exists', `an admin user named ${input.name} already exists`);
    const user = toAdminUser(row);
    return {
      result: secret ? { ...user, totp_enrolment: enrolment(deps, input.name, secret) } : user,
      change: {
        action: 'admin_user.create',
        targetType: 'admin_user',
        targetId: row.name,
        before: null,
        after: user,
      },
    };
  });
}

/**
 * Changes a user's password, role, status or second factor. A new password or a disabled user ends every session
 * of that user at once; so does a change of second factor.
 */
export async function updateAdminUser(
  deps: AdminUserDeps,
  actor: Actor,
  name: string,
  raw: AdminUserUpdate,
): Promise<AdminUserWithTotp> {
  const update = parseInput(AdminUserUpdate, raw);
  const passwordHash = update.password === undefined ? undefined : await hashPassword(update.password);
  const secret = update.totp === 'enroll' ? generateTotpSecret() : undefined;
  return commitChange(deps, actor, async (trx, now) => {
    const current = await trx
      .selectFrom('admin_user')
      .selectAll()
      .where('name', '=', name)
      .forUpdate()
      .executeTakeFirst();
    if (!current) throw notFound(name);
    const disabledAt =
      update.status === undefined
        ? current.disabled_at
        : update.status === 'disabled'
          ? (current.disabled_at ?? now)
          : null;
    const totpSecret =
      update.totp === 'remove' ? null : secret ? sealTotp(deps, name, secret) : current.totp_secret;
    const credentialsChanged =
      passwordHash !== undefined ||
      update.totp !== undefined ||
      (disabledAt !== null && !current.disabled_at);
    const row = await trx
      .updateTable('admin_user')
      .set({
        ...(passwordHash === undefined ? {} : { password_hash: passwordHash }),
        role: update.role ?? current.role,
        disabled_at: disabledAt,
        totp_secret: totpSecret,
        ...(update.totp === undefined ? {} : { totp_last_step: null, totp_failures: 0 }),
        ...(credentialsChanged ? { credentials_version: current.credentials_version + 1 } : {}),
        updated_at: now,
      })
      .where('name', '=', name)
      .returningAll()
      .executeTakeFirstOrThrow();
    if (credentialsChanged)
      await trx.deleteFrom('console_session').where('user_id', '=', current.id).execute();
    const before = toAdminUser(current);
    const after = toAdminUser(row);
    const changedFields = passwordHash === undefined ? after : { ...after, password: '[changed]' };
    const user = secret ? { ...after, totp_enrolment: enrolment(deps, name, secret) } : after;
    const unchanged =
      passwordHash === undefined &&
      update.totp === undefined &&
      before.role === after.role &&
      before.status === after.status;
    return {
      result: user,
      change: unchanged
        ? null
        : {
            action: 'admin_user.update',
            targetType: 'admin_user',
            targetId: name,
            before,
            after: changedFields,
          },
    };
  });
}

export async function deleteAdminUser(deps: AdminUserDeps, actor: Actor, name: string): Promise<void> {
  await commitChange(deps, actor, async (trx) => {
    const row = await trx.deleteFrom('admin_user').where('name', '=', name).returningAll().executeTakeFirst();
    if (!row) throw notFound(name);
    return {
      result: undefined,
      change: {
        action: 'admin_user.delete',
        targetType: 'admin_user',
        targetId: name,
        before: toAdminUser(row),
        after: null,
      },
    };
  });
}

/** Wrong TOTP codes after the right password, in a row, after which the second factor locks. */
export const TOTP_LOCK_AFTER = 10;

/**
 * The user a sign-in read, by name and id: the TOTP state below is changed only while that user exists, never for
 * another created under the same name while its code was being checked.
 */
export type SignInUser = Pick<AdminUserRow, 'id' | 'name'>;

/** Counts one wrong code given after the right password; answers the count so far. */
export async function recordTotpFailure(db: Db, user: SignInUser): Promise<number> {
  const row = await db
    .updateTable('admin_user')
    .set((eb) => ({ totp_failures: eb('totp_failures', '+', 1) }))
    .where('name', '=', user.name)
    .where('id', '=', user.id)
    .returning('totp_failures')
    .executeTakeFirst();
  return row?.totp_failures ?? 0;
}

export async function resetTotpFailures(db: Db, user: SignInUser): Promise<void> {
  await db
    .updateTable('admin_user')
    .set({ totp_failures: 0 })
    .where('name', '=', user.name)
    .where('id', '=', user.id)
    .where('totp_failures', '>', 0)
    .execute();
}

/**
 * Records `step` as the last TOTP step used by `user`, if it is newer than the one recorded: false when another
 * sign-in used this code (or a later one) first. One statement, so two instances cannot both accept a code.
 */
export async function claimTotpStep(db: Db, user: SignInUser, step: number): Promise<boolean> {
  const result = await db
    .updateTable('admin_user')
    .set({ totp_last_step: step })
    .where('name', '=', user.name)
    .where('id', '=', user.id)
    // Not once the second factor is locked, whatever requests were in flight when it locked.
    .where('totp_failures', '<', TOTP_LOCK_AFTER)
    .where((eb) => eb.or([eb('totp_last_step', 'is', null), eb('totp_last_step', '<', step)]))
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/**
 * Seals every console user's TOTP seed under the current KEK (the first of `keks`), opening each with any of them:
 * `mayfly key rewrap` runs it after the signing keys. Refuses, naming the user, when a seed opens with none.
 */
export async function rewrapTotpSecrets(
  db: Db,
  keks: readonly Kek[],
): Promise<{ rewrapped: number; unchanged: number }> {
  const [kek] = keks;
  if (!kek) throw new Error('no key-encryption key');
  return db.transaction().execute(async (trx) => {
    const rows = await trx
      .selectFrom('admin_user')
      .select(['name', 'totp_secret'])
      .where('totp_secret', 'is not', null)
      .orderBy('name')
      .forUpdate()
      .execute();
    const result = { rewrapped: 0, unchanged: 0 };
    for (const row of rows) {
      if (row.totp_secret === null) continue;
      if (sealedWith(row.totp_secret) === kek.id) {
        result.unchanged += 1;
        continue;
      }
      let secret: Buffer;
      try {
        secret = openTotpSecret(keks, row.name, row.totp_secret);
      } catch (error) {
        if (!(error instanceof UnsealError)) throw error;
        throw new Error(
          `the second factor of console user ${row.name} is sealed with KEK ${sealedWith(row.totp_secret) ?? '?'}, ` +
            'which is neither MAYFLY_KEK nor one of MAYFLY_KEK_PREVIOUS; set MAYFLY_KEK_PREVIOUS to the KEK it was ' +
            `sealed with, or enrol a new one (mayfly admin-user update ${row.name} --totp)`,
        );
      }
      await trx
        .updateTable('admin_user')
        .set({ totp_secret: sealTotp({ keks }, row.name, secret) })
        .where('name', '=', row.name)
        .execute();
      result.rewrapped += 1;
    }
    return result;
  });
}
