import { realpathSync } from 'node:fs';

import { ConfigError, loadConfig } from '../config/config.ts';
import { connectDatabase } from './connect.ts';
import { migrateToLatest } from './migrator.ts';

/** Applies pending migrations to the configured database: `npm run db:migrate` and `mayfly migrate`. */
export async function migrate(out: { result(text: string): void }): Promise<void> {
  const config = loadConfig();
  const database = await connectDatabase(config.database);
  try {
    const applied = (await migrateToLatest(database.db)).results ?? [];
    out.result(
      applied.length
        ? applied.map((r) => `applied ${r.migrationName}\n`).join('')
        : 'database schema is up to date\n',
    );
  } finally {
    await database.close();
  }
}

export function describeMigrationFailure(error: unknown): string {
  if (error instanceof ConfigError) return error.message;
  return `migration failed: ${error instanceof Error ? error.message : String(error)}`;
}

// Run directly (npm run db:migrate) rather than imported by `mayfly migrate`.
if (process.argv[1] !== undefined && realpathSync(process.argv[1]) === import.meta.filename) {
  try {
    await migrate({ result: (text) => process.stdout.write(text) });
  } catch (error) {
    process.stderr.write(`mayfly: ${describeMigrationFailure(error)}\n`);
    process.exitCode = 1;
  }
}
