import { fork } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { PGlite } from '@electric-sql/pglite';
import {
  Kysely,
  PGliteDialect,
  PostgresDialect,
  type DatabaseConnection,
  type Dialect,
  type Driver,
  type LogEvent,
  type TransactionSettings,
} from 'kysely';
import pg from 'pg';

import type { DatabaseConfig } from '../config/config.ts';
import { keepPrivate } from '../config/private-folders.ts';
import type { Database } from './database.ts';
import { PGLITE_SETTINGS } from './pglite-settings.ts';
import { kyselyStatements, poolStatements, type Statements } from './statements.ts';

export type Db = Kysely<Database>;

export interface DatabaseHandle {
  db: Db;
  /** The token and introspection paths' statements (see statements.ts). */
  statements: Statements;
  kind: DatabaseConfig['kind'];
  /** Connections of the Postgres pool (undefined for PGlite, a single in-process connection). */
  poolStats(): { total: number; idle: number; waiting: number } | undefined;
  /** Told of every failed query; whoever counts them sets the listener. */
  readonly queryErrors: QueryErrorHook;
  close(): Promise<void>;
}

export interface QueryErrorHook {
  listener: ((error: unknown) => void) | undefined;
}

/** Kysely reports failed queries through its log hook; only errors are passed on. */
function reportErrors(hook: QueryErrorHook) {
  return (event: LogEvent) => {
    if (event.level === 'error') hook.listener?.(event.error);
  };
}

export async function connectDatabase(config: DatabaseConfig): Promise<DatabaseHandle> {
  if (config.kind === 'postgres') {
    const pool = new pg.Pool({
      connectionString: config.url,
      max: config.poolMax,
      // Fail fast rather than queue forever when Postgres is unreachable.
      connectionTimeoutMillis: 5_000,
      // A query on a half-open connection fails instead of hanging its request (and what waits behind it).
      query_timeout: 30_000,
      keepAlive: true,
      application_name: 'mayfly',
    });
    // A client losing its connection must not crash the process: idle ones are reported on the pool, checked-out
    // ones on the client itself (the query in progress fails, and the pool replaces the client).
    pool.on('error', () => undefined);
    pool.on('connect', (client) => {
      client.on('error', () => undefined);
    });
    const queryErrors: QueryErrorHook = { listener: undefined };
    const db = new Kysely<Database>({
      dialect: new PostgresDialect({ pool }),
      log: reportErrors(queryErrors),
    });
    return {
      db,
      statements: poolStatements(pool, config.prepare, (error) => queryErrors.listener?.(error)),
      kind: 'postgres',
      poolStats: () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount }),
      queryErrors,
      close: () => db.destroy(),
    };
  }

  const pglite = await openPglite(config.dataDir);
  const dataDir = config.dataDir;
  const queryErrors: QueryErrorHook = { listener: undefined };
  const db = new Kysely<Database>({
    dialect: new SerializedDialect(new PGliteDialect({ pglite })),
    log: reportErrors(queryErrors),
  });
  return {
    db,
    statements: kyselyStatements(db),
    kind: 'pglite',
    poolStats: () => undefined,
    queryErrors,
    async close() {
      await db.destroy();
      if (isDataFolder(dataDir)) await keepPrivate(dataDir);
    },
  };
}

/** Whether the embedded database lives in a folder; without one (`memory://`) it vanishes with the process. */
export function isDataFolder(dataDir: string | undefined): dataDir is string {
  return dataDir !== undefined && !dataDir.startsWith('memory://');
}

/**
 * Opens the embedded database. A new data folder is first initialised (initdb, migrations) by a short-lived
 * process of its own: initialisation runs far more of Postgres than serving does, and what it leaves behind in
 * WebAssembly memory and compiled code would otherwise stay with the server for its lifetime.
 */
async function openPglite(dataDir: string | undefined): Promise<PGlite> {
  if (!isDataFolder(dataDir)) return PGlite.create('memory://', { postgresqlconf: PGLITE_SETTINGS });
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  if (!existsSync(join(dataDir, 'PG_VERSION'))) await initialisePglite(dataDir);
  const pglite = await PGlite.create(dataDir, { postgresqlconf: PGLITE_SETTINGS });
  // PGlite writes its files open to everyone whatever the umask (a new folder's layout 0666, files it makes later
  // 0644): they are made private once it has opened, and again when it closes. The folder itself is 0700, so
  // other users cannot reach a file made in between.
  await keepPrivate(dataDir);
  return pglite;
}

async function initialisePglite(dataDir: string): Promise<void> {
  const script = fileURLToPath(new URL(`./pglite-setup${extname(import.meta.url)}`, import.meta.url));
  const child = fork(script, [dataDir], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
  });
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) {
    const reason = stderr.trim().split('\n').at(-1) ?? `exit code ${String(code)}`;
    throw new Error(`the embedded database in ${dataDir} could not be initialised: ${reason}`);
  }
}

/**
 * PGlite is one connection. Kysely's PGlite driver hands that connection to every caller, so a query issued
 * while another caller's transaction is open would silently run inside that transaction (and be rolled back
 * with it). Serializing connection use keeps transactions isolated; PGlite runs one query at a time anyway.
 */
class SerializedDialect implements Dialect {
  private readonly inner: Dialect;
  constructor(inner: Dialect) {
    this.inner = inner;
  }
  createAdapter = () => this.inner.createAdapter();
  createIntrospector = (db: Kysely<unknown>) => this.inner.createIntrospector(db);
  createQueryCompiler = () => this.inner.createQueryCompiler();
  createDriver = (): Driver => new SerializedDriver(this.inner.createDriver());
}

class SerializedDriver implements Driver {
  #queue: Promise<void> = Promise.resolve();
  #release: (() => void) | undefined;

  private readonly inner: Driver;
  constructor(inner: Driver) {
    this.inner = inner;
  }

  init = () => this.inner.init();
  destroy = () => this.inner.destroy();

  async acquireConnection(): Promise<DatabaseConnection> {
    const previous = this.#queue;
    let release!: () => void;
    this.#queue = new Promise((resolve) => (release = resolve));
    await previous;
    try {
      const connection = await this.inner.acquireConnection();
      this.#release = release;
      return connection;
    } catch (error) {
      release();
      throw error;
    }
  }

  async releaseConnection(connection: DatabaseConnection): Promise<void> {
    await this.inner.releaseConnection(connection);
    const release = this.#release;
    this.#release = undefined;
    release?.();
  }

  beginTransaction = (connection: DatabaseConnection, settings: TransactionSettings) =>
    this.inner.beginTransaction(connection, settings);
  commitTransaction = (connection: DatabaseConnection) => this.inner.commitTransaction(connection);
  rollbackTransaction = (connection: DatabaseConnection) => this.inner.rollbackTransaction(connection);
}
