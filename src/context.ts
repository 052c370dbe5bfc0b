import type { DestinationStream } from 'pino';
import type Provider from 'oidc-provider';

import { AnomalyWatch } from './abuse/anomalies.ts';
import { RateLimits } from './abuse/rate-limits.ts';
import { startPurgeJob, type PurgeJob } from './adapter/purge.ts';
import { TokenStore } from './adapter/token-store.ts';
import type { AdminDeps } from './admin/admin.routes.ts';
import { bootstrapAdmin } from './admin/bootstrap.ts';
import { ClientAccessCache } from './clients/client-access-cache.ts';
import { systemClock, type Clock } from './clock.ts';
import type { Config } from './config/config.ts';
import { keepPrivate } from './config/private-folders.ts';
import { loadSecrets, type Secrets } from './config/secrets.ts';
import { connectDatabase, isDataFolder, type DatabaseHandle, type Db } from './db/connect.ts';
import { createMigrator, migrateToLatest } from './db/migrator.ts';
import { toKek } from './keys/envelope.ts';
import { KeyRing } from './keys/key-ring.ts';
import { createAudit, type Audit } from './observability/audit.ts';
import { checkReadiness, type Readiness } from './observability/health.ts';
import { createLogger, type Logger } from './observability/logger.ts';
import { createMetrics, type Metrics } from './observability/metrics.ts';
import { buildProvider } from './oidc/provider.ts';

export interface AppContext {
  config: Config;
  secrets: Secrets;
  log: Logger;
  audit: Audit;
  clock: Clock;
  db: Db;
  /** Shared token state (one-time values, stored tokens, revoked JWTs), batched. */
  tokens: TokenStore;
  /** The signing keys as this instance sees them; changes when keys rotate. */
  keys: KeyRing;
  /** Rebuilt when the signing key changes (the provider's keystore is fixed per instance). */
  provider: Provider;
  /** What the admin API's operations run with. */
  admin: AdminDeps;
  metrics: Metrics;
  /** Rate limits and authentication-failure backoff of the protocol endpoints. */
  limits: RateLimits;
  /** What this instance last read about each client (shared by the providers it builds). */
  clients: ClientAccessCache;
  /** This instance's per-client anomaly detection. */
  anomalies: AnomalyWatch;
  /** Whether this instance can serve (/readyz). */
  readiness(): Promise<Readiness>;
  /** Set when shutdown begins: readiness turns false so load balancers stop sending requests. */
  draining: boolean;
  /** Stops jobs and closes the database; the one shutdown path. */
  close(): Promise<void>;
}

export interface ContextOverrides {
  clock?: Clock;
  logDestination?: DestinationStream;
  /** An already connected database (tests); the context does not close what it did not open. */
  database?: DatabaseHandle;
  /** Start the scheduled jobs: purge of expired rows, key schedule checks (default true). */
  jobs?: boolean;
}

/** The one composition root: everything the server uses is built here, in dependency order. */
export async function createAppContext(
  config: Config,
  overrides: ContextOverrides = {},
): Promise<AppContext> {
  const log = createLogger(config.logLevel, overrides.logDestination, config.logFormat);
  const metrics = createMetrics();
  const clock = overrides.clock ?? systemClock;
  for (const folder of [
    config.keysDir,
    ...(config.database.kind === 'pglite' && isDataFolder(config.database.dataDir)
      ? [config.database.dataDir]
      : []),
  ]) {
    const changed = await keepPrivate(folder);
    if (changed) {
      log.warn(
        { folder, entries: changed },
        'this folder was open to other users of this machine: it is now private to this one (0700, files 0600)',
      );
    }
  }
  const secrets = await loadSecrets(config);
  const database = overrides.database ?? (await connectDatabase(config.database));
  const ownsDatabase = overrides.database === undefined;
  let purgeJob: PurgeJob | undefined;
  let keys: KeyRing | undefined;
  try {
    const migrations = await migrateToLatest(database.db);
    for (const result of migrations.results ?? [])
      log.info({ migration: result.migrationName }, 'applied migration');
    const shippedMigrations = (await createMigrator(database.db).getMigrations()).map((m) => m.name);
    const audit = createAudit(log);
    keys = await KeyRing.open({
      db: database.db,
      clock,
      audit,
      settings: config.keys,
      keks: [toKek(secrets.kek), ...secrets.previousKeks.map(toKek)],
      log: log.child({ component: 'keys' }),
      checkInterval: config.keys.checkInterval,
    });
    const admin: AdminDeps = {
      db: database.db,
      clock,
      audit,
      tokens: config.tokens,
      secretOverlapSeconds: config.admin.secretOverlapSeconds,
      keys,
      keks: [toKek(secrets.kek), ...secrets.previousKeks.map(toKek)],
      issuer: config.issuer,
    };
    await bootstrapAdmin({ ...admin, config, log: log.child({ component: 'bootstrap' }) });
    const clients = new ClientAccessCache(database.db, database.statements);
    const tokens = new TokenStore(database.statements);
    const build = () =>
      buildProvider({
        config,
        secrets,
        signer: ring.current.signer,
        db: database.db,
        tokens,
        clock,
        log,
        clients,
      });
    const ring = keys;
    const provider = build();
    if (overrides.jobs !== false) {
      keys.start();
      purgeJob = startPurgeJob(
        database.db,
        clock,
        config.purgeIntervalSeconds,
        log.child({ component: 'purge' }),
        (outcome, rows) => {
          metrics.purge(outcome, rows);
        },
      );
    }
    const context: AppContext = {
      config,
      secrets,
      log,
      audit,
      clock,
      db: database.db,
      tokens,
      keys,
      provider,
      admin,
      metrics,
      limits: new RateLimits(database.db, config.rateLimits, config.authFailures),
      clients,
      anomalies: new AnomalyWatch({
        db: database.db,
        clock,
        audit,
        metrics,
        log: log.child({ component: 'anomalies' }),
        clients,
        settings: config.anomalies,
      }),
      draining: false,
      readiness: () =>
        checkReadiness({
          db: database.db,
          migrations: shippedMigrations,
          signing: () => ring.current,
          draining: () => context.draining,
        }),
      async close() {
        await ring.stop();
        await purgeJob?.stop();
        if (ownsDatabase) await database.close();
      },
    };
    metrics.watch({ database, keys: () => ring.states() });
    // Requests in flight finish on the provider they started with; new ones reach the rebuilt one.
    keys.onChange((view, previous) => {
      if (view.signer.kid !== previous.signer.kid) context.provider = build();
    });
    return context;
  } catch (error) {
    await keys?.stop();
    await purgeJob?.stop();
    if (ownsDatabase) await database.close();
    throw error;
  }
}
