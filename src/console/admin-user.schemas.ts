import { z } from 'zod';

import { PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH } from './password.ts';

export const AdminUserName = z
  .string({ error: 'expected a user name' })
  .regex(
    /^[a-z0-9][a-z0-9._-]{0,63}$/,
    'a user name is 1 to 64 lowercase letters, digits, dots, dashes or underscores, starting with a letter or digit',
  );

const Password = z
  .string({ error: 'expected a password' })
  .min(PASSWORD_MIN_LENGTH, `a password is at least ${PASSWORD_MIN_LENGTH} characters`)
  .max(PASSWORD_MAX_LENGTH, `a password is at most ${PASSWORD_MAX_LENGTH} characters`);

const Role = z
  .enum(['read', 'write'], { error: 'expected read or write' })
  .meta({ description: 'read: sees everything, changes nothing; write: may also make changes.' });

export const AdminUserInput = z
  .strictObject({
    name: AdminUserName,
    password: Password,
    role: Role.default('read'),
    totp: z
      .boolean({ error: 'expected true or false' })
      .default(false)
      .meta({ description: 'Enrol a TOTP second factor; its secret is answered this once.' }),
  })
  .refine((input) => input.password.toLowerCase() !== input.name, {
    path: ['password'],
    error: 'the password must not be the user name',
  })
  .meta({ id: 'AdminUserInput' });
export type AdminUserInput = z.input<typeof AdminUserInput>;

export const AdminUserUpdate = z
  .strictObject({
    password: Password.optional(),
    role: Role.optional(),
    status: z.enum(['enabled', 'disabled'], { error: 'expected enabled or disabled' }).optional(),
    totp: z.enum(['enroll', 'remove'], { error: 'expected enroll or remove' }).optional().meta({
      description: 'enroll: a new TOTP secret (answered this once) replaces any other; remove: none.',
    }),
  })
  .refine((update) => Object.keys(update).length > 0, 'nothing to update: password, role, status or totp')
  .meta({ id: 'AdminUserUpdate' });
export type AdminUserUpdate = z.input<typeof AdminUserUpdate>;

export const AdminUser = z
  .object({
    name: z.string(),
    role: Role,
    totp: z.boolean().meta({ description: 'Whether sign-in needs a TOTP code.' }),
    status: z.enum(['enabled', 'disabled']),
    disabled_at: z.iso.datetime().nullable(),
    created_at: z.iso.datetime(),
    updated_at: z.iso.datetime(),
  })
  .meta({ id: 'AdminUser' });
export type AdminUser = z.output<typeof AdminUser>;

export const TotpEnrolment = z
  .object({
    secret: z.string().meta({ description: 'Base32, for manual entry in an authenticator app.' }),
    otpauth_uri: z.string().meta({ description: 'The otpauth:// URI an authenticator app imports.' }),
  })
  .meta({ id: 'TotpEnrolment' });

export const AdminUserWithTotp = AdminUser.extend({ totp_enrolment: TotpEnrolment.optional() }).meta({
  id: 'AdminUserWithTotp',
});
export type AdminUserWithTotp = z.output<typeof AdminUserWithTotp>;
