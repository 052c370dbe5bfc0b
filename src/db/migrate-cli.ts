import { ConfigError, loadConfig } from '../config/config.ts';
import { connectDatabase } from './connect.ts';
import { migrateToLatest } from './migrator.ts';

/** `npm run db:migrate`: applies pending migrations to the configured database and exits. */
try {
  const config = loadConfig();
  const database = await connectDatabase(config.database);
  try {
    const result = await migrateToLatest(database.db);
    const applied = result.results ?? [];
    process.stdout.write(
      applied.length
        ? applied.map((r) => `applied ${r.migrationName}\n`).join('')
        : 'database schema is up to date\n',
    );
  } finally {
    await database.close();
  }
} catch (error) {
  process.stderr.write(
    `mayfly: ${error instanceof ConfigError ? error.message : `migration failed: ${error instanceof Error ? error.message : String(error)}`}\n`,
  );
  process.exitCode = 1;
}
