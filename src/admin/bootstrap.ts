import { mkdir, readFile, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';

import type { ChangeDeps } from '../audit/audit-trail.ts';
import { hasGrantOn } from '../clients/client.repository.ts';
import { Jwks, type ClientInput } from '../clients/client.schemas.ts';
import { createClient } from '../clients/client.service.ts';
import { findResourceByIdentifier } from '../clients/resource.repository.ts';
import { createResource, type TokenLimits } from '../clients/resource.service.ts';
import { ConfigError, type Config } from '../config/config.ts';
import { lockForTransaction } from '../db/advisory-lock.ts';
import type { Logger } from '../observability/logger.ts';
import { ADMIN_SCOPES } from '../clients/admin-rights.ts';

export const ADMIN_CREDENTIALS_FILE = 'admin.json';
const BOOTSTRAP_LOCK = 0x6d66_7003;
const ACTOR = { id: 'system:bootstrap' };

/** What the CLI reads to act as the admin client. */
export interface AdminCredentials {
  issuer: string;
  client_id: string;
  private_jwk: JWK;
}

export interface BootstrapDeps extends ChangeDeps {
  config: Config;
  tokens: TokenLimits;
  log: Logger;
}

/**
 * Makes sure the admin API can be reached without a default password: its resource exists and, when no client
 * holds admin rights yet, one admin client is created — from the operator's public JWKS (MAYFLY_ADMIN_JWKS_FILE),
 * or with a fresh key pair whose credentials are written once, mode 0600, to the keys folder. One instance does
 * this at a time, under an advisory lock.
 */
export async function bootstrapAdmin(deps: BootstrapDeps): Promise<void> {
  const { config, log } = deps;
  const operatorJwks = config.admin.bootstrapJwksFile
    ? await readOperatorJwks(config.admin.bootstrapJwksFile)
    : undefined;
  // One transaction under a transaction-scoped lock (safe behind a transaction-pooling pgbouncer): the admin
  // client is committed only once its credentials are written, and the file is removed if the commit fails.
  let written: string | undefined;
  try {
    await deps.db.transaction().execute(async (connection) => {
      await lockForTransaction(connection, BOOTSTRAP_LOCK);
      const scoped = { ...deps, db: connection };
      const audience = config.admin.audience;
      if (!(await findResourceByIdentifier(connection, audience))) {
        await createResource(
          scoped,
          ACTOR,
          {
            identifier: audience,
            name: 'Mayfly admin API',
            scopes: [ADMIN_SCOPES.read, ADMIN_SCOPES.write],
            token_ttl: Math.min(300, config.tokens.maxTtl),
            token_format: 'jwt',
          },
          { reserved: true },
        );
      }
      if (await hasGrantOn(connection, audience)) return;

      const input = (jwks: { keys: JWK[] }): ClientInput => ({
        name: 'Mayfly admin',
        auth_method: 'private_key_jwt',
        jwks: jwks as NonNullable<ClientInput['jwks']>,
        grants: [{ resource: audience, scopes: [ADMIN_SCOPES.read, ADMIN_SCOPES.write] }],
      });
      const clientOptions = config.admin.bootstrapClientId
        ? { clientId: config.admin.bootstrapClientId }
        : {};

      if (operatorJwks) {
        const client = await createClient(scoped, ACTOR, input(operatorJwks), clientOptions);
        log.info(
          { client_id: client.client_id, jwks_file: config.admin.bootstrapJwksFile },
          'created the admin client from MAYFLY_ADMIN_JWKS_FILE',
        );
        return;
      }

      const path = join(config.keysDir, ADMIN_CREDENTIALS_FILE);
      const { privateKey } = await generateKeyPair('ES256', { extractable: true });
      const privateJwk = await exportJWK(privateKey);
      const kid = await calculateJwkThumbprint(privateJwk);
      const { d: _private, ...publicJwk } = privateJwk;
      await mkdir(config.keysDir, { recursive: true, mode: 0o700 });
      if (await exists(path)) {
        log.warn(
          { credentials_file: path },
          `no client holds admin rights, but ${path} exists and is never overwritten: move it away and restart ` +
            'to have a new admin client created, or set MAYFLY_ADMIN_JWKS_FILE',
        );
        return;
      }
      // The client and its credentials file exist together or not at all: a failed write (even a file that
      // appeared meanwhile: 'wx' never overwrites) rolls the whole bootstrap back.
      const client = await createClient(
        scoped,
        ACTOR,
        input({ keys: [{ ...publicJwk, kid, alg: 'ES256', use: 'sig' }] }),
        clientOptions,
      );
      const credentials: AdminCredentials = {
        issuer: config.issuer,
        client_id: client.client_id,
        private_jwk: { ...privateJwk, kid, alg: 'ES256' },
      };
      await writeFile(path, `${JSON.stringify(credentials, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
      written = path;
      log.info(
        { client_id: client.client_id, credentials_file: path },
        `created the admin client; its credentials are in ${path} (mode 0600): keep that file secret`,
      );
    });
  } catch (error) {
    if (written) await unlink(written).catch(() => undefined);
    throw error;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

async function readOperatorJwks(file: string): Promise<{ keys: JWK[] }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new ConfigError([
      `MAYFLY_ADMIN_JWKS_FILE: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
    ]);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new ConfigError([
      `MAYFLY_ADMIN_JWKS_FILE: ${file} is not JSON; expected a JWKS: {"keys": [<public JWK>]}`,
    ]);
  }
  const parsed = Jwks.safeParse(json);
  if (!parsed.success) {
    throw new ConfigError([
      `MAYFLY_ADMIN_JWKS_FILE: ${file} is not a public JWKS: ${parsed.error.issues.map((i) => i.message).join('; ')}`,
    ]);
  }
  return parsed.data;
}
