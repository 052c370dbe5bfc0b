/**
 * Initialises a new embedded database folder (initdb) and applies the migrations, in a process of its own (see
 * openPglite in connect.ts). Run as `pglite-setup <data folder>`; exits 0 when done.
 */
import { PGlite } from '@electric-sql/pglite';
import { Kysely, PGliteDialect } from 'kysely';

import type { Database } from './database.ts';
import { migrateToLatest } from './migrator.ts';
import { PGLITE_SETTINGS } from './pglite-settings.ts';

const dataDir = process.argv[2];
if (!dataDir) throw new Error('usage: pglite-setup <data folder>');
const pglite = await PGlite.create(dataDir, { postgresqlconf: PGLITE_SETTINGS });
const db = new Kysely<Database>({ dialect: new PGliteDialect({ pglite }) });
try {
  await migrateToLatest(db);
} finally {
  await db.destroy();
}
