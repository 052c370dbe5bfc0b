import { loadConfig } from '../config/config.ts';
import { loadSecrets } from '../config/secrets.ts';
import { connectDatabase } from '../db/connect.ts';
import { createMigrator } from '../db/migrator.ts';
import { createAudit } from '../observability/audit.ts';
import { createLogger } from '../observability/logger.ts';
import { systemClock } from '../clock.ts';
import { toKek } from './envelope.ts';
import { rewrapKeys, type RewrapResult } from './key.service.ts';
import { rewrapTotpSecrets } from '../console/admin-user.service.ts';

/** `mayfly key rewrap`: seals every stored key, and every console user's TOTP seed, under the configured KEK. */
export async function rewrap(): Promise<
  RewrapResult & { kek: string; secondFactors: { rewrapped: number; unchanged: number } }
> {
  const config = loadConfig();
  const secrets = await loadSecrets(config);
  const kek = toKek(secrets.kek);
  const database = await connectDatabase(config.database);
  try {
    const pending = (await createMigrator(database.db).getMigrations()).filter((m) => !m.executedAt);
    if (pending.length) {
      throw new Error(
        `the database schema is not current (${pending.length} pending migration(s)); run mayfly migrate first`,
      );
    }
    const keks = [kek, ...secrets.previousKeks.map(toKek)];
    const result = await rewrapKeys(
      {
        db: database.db,
        clock: systemClock,
        audit: createAudit(createLogger('silent')),
        settings: config.keys,
        keks,
      },
      { id: 'system:key-rewrap' },
    );
    const secondFactors = await rewrapTotpSecrets(database.db, keks);
    return { ...result, kek: kek.id, secondFactors };
  } finally {
    await database.close();
  }
}
