import { readdir } from 'node:fs/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { join } from 'node:path';

import { Migrator, type Migration, type MigrationProvider, type MigrationResultSet } from 'kysely/migration';

import type { Db } from './connect.ts';

const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/', import.meta.url));
// Run from source (type stripping, vitest) the folder holds .ts files; from the build, .js files.
const EXTENSION = import.meta.url.endsWith('.ts') ? '.ts' : '.js';

class FolderMigrationProvider implements MigrationProvider {
  async getMigrations(): Promise<Record<string, Migration>> {
    const files = (await readdir(MIGRATIONS_DIR)).filter(
      (f) => f.endsWith(EXTENSION) && !f.endsWith('.d.ts'),
    );
    const migrations: Record<string, Migration> = {};
    for (const file of files.sort()) {
      const module = (await import(pathToFileURL(join(MIGRATIONS_DIR, file)).href)) as Migration;
      migrations[file.slice(0, -EXTENSION.length)] = module;
    }
    return migrations;
  }
}

export function createMigrator(db: Db): Migrator {
  return new Migrator({ db, provider: new FolderMigrationProvider() });
}

export class MigrationError extends Error {
  override name = 'MigrationError';
}

/** Applies every pending migration; Kysely's migration lock makes concurrent starts safe. */
export async function migrateToLatest(db: Db): Promise<MigrationResultSet> {
  const result = await createMigrator(db).migrateToLatest();
  if (result.error) {
    const failed = result.results?.find((r) => r.status === 'Error')?.migrationName;
    const reason = result.error instanceof Error ? result.error.message : JSON.stringify(result.error);
    const what = failed ? `migration ${failed} failed` : 'could not apply migrations';
    throw new MigrationError(`${what}: ${reason}`, { cause: result.error });
  }
  return result;
}
