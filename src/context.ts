import type { DestinationStream } from 'pino';
import type Provider from 'oidc-provider';

import { startPurgeJob, type PurgeJob } from './adapter/purge.ts';
import type { AdminDeps } from './admin/admin.routes.ts';
import { bootstrapAdmin } from './admin/bootstrap.ts';
import { systemClock, type Clock } from './clock.ts';
import type { Config } from './config/config.ts';
import { loadSecrets, type Secrets } from './config/secrets.ts';
import { connectDatabase, type DatabaseHandle, type Db } from './db/connect.ts';
import { migrateToLatest } from './db/migrator.ts';
import { loadSigningKeys, type SigningKeySet } from './keys/signing-keys.ts';
import { createAudit, type Audit } from './observability/audit.ts';
import { createLogger, type Logger } from './observability/logger.ts';
import { buildProvider } from './oidc/provider.ts';
import { publishKeys, type PublishedKeys } from './oidc/protocol-routes.ts';

export interface AppContext {
  config: Config;
  secrets: Secrets;
  log: Logger;
  audit: Audit;
  clock: Clock;
  db: Db;
  keys: SigningKeySet;
  publishedKeys: PublishedKeys;
  provider: Provider;
  /** What the admin API's operations run with. */
  admin: AdminDeps;
  /** Stops jobs and closes the database; the one shutdown path. */
  close(): Promise<void>;
}

export interface ContextOverrides {
  clock?: Clock;
  logDestination?: DestinationStream;
  /** An already connected database (tests); the context does not close what it did not open. */
  database?: DatabaseHandle;
  /** Start the scheduled purge of expired rows (default true). */
  jobs?: boolean;
}

/** The one composition root: everything the server uses is built here, in dependency order. */
export async function createAppContext(
  config: Config,
  overrides: ContextOverrides = {},
): Promise<AppContext> {
  const log = createLogger(config.logLevel, overrides.logDestination);
  const clock = overrides.clock ?? systemClock;
  const secrets = await loadSecrets(config);
  const database = overrides.database ?? (await connectDatabase(config.database));
  const ownsDatabase = overrides.database === undefined;
  let purgeJob: PurgeJob | undefined;
  try {
    const migrations = await migrateToLatest(database.db);
    for (const result of migrations.results ?? [])
      log.info({ migration: result.migrationName }, 'applied migration');
    const keys = await loadSigningKeys(database.db);
    const audit = createAudit(log);
    const admin: AdminDeps = {
      db: database.db,
      clock,
      audit,
      tokens: config.tokens,
      secretOverlapSeconds: config.admin.secretOverlapSeconds,
    };
    await bootstrapAdmin({ ...admin, config, log: log.child({ component: 'bootstrap' }) });
    const provider = buildProvider({ config, secrets, keys, db: database.db, clock, log });
    if (overrides.jobs !== false) {
      purgeJob = startPurgeJob(
        database.db,
        clock,
        config.purgeIntervalSeconds,
        log.child({ component: 'purge' }),
      );
    }
    return {
      config,
      secrets,
      log,
      audit,
      clock,
      db: database.db,
      keys,
      publishedKeys: publishKeys(keys.publicJwks),
      provider,
      admin,
      async close() {
        await purgeJob?.stop();
        if (ownsDatabase) await database.close();
      },
    };
  } catch (error) {
    await purgeJob?.stop();
    if (ownsDatabase) await database.close();
    throw error;
  }
}
