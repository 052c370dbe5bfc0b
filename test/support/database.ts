import { randomBytes } from 'node:crypto';

import pg from 'pg';

import { connectDatabase, type DatabaseHandle } from '../../src/db/connect.ts';
import type { DatabaseConfig } from '../../src/config/config.ts';

export interface TestDatabase {
  config: DatabaseConfig;
  /** A connected handle; tests that restart the server open their own from `config`. */
  handle: DatabaseHandle;
  /** The KEK its signing keys are sealed under: every server started on this database uses it. */
  kek: string;
  drop(): Promise<void>;
}

/**
 * A fresh, empty database per test file: PGlite in memory by default, or a new database on the Postgres server
 * named by DATABASE_URL, dropped afterwards. Nothing depends on what a previous run left.
 */
export async function createTestDatabase(options: { pgliteDir?: string } = {}): Promise<TestDatabase> {
  const serverUrl = process.env.DATABASE_URL;
  const kek = randomBytes(32).toString('base64url');
  if (!serverUrl) {
    const config: DatabaseConfig = { kind: 'pglite', dataDir: options.pgliteDir };
    const handle = await connectDatabase(config);
    return { config, handle, kek, drop: () => handle.close() };
  }
  const name = `mayfly_test_${randomBytes(6).toString('hex')}`;
  await withAdmin(serverUrl, (admin) => admin.query(`create database ${name}`));
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  const config: DatabaseConfig = { kind: 'postgres', url: url.href, poolMax: 10, prepare: true };
  const handle = await connectDatabase(config);
  return {
    config,
    handle,
    kek,
    async drop() {
      await handle.close();
      await withAdmin(serverUrl, (admin) => admin.query(`drop database if exists ${name} with (force)`));
    },
  };
}

async function withAdmin<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}
