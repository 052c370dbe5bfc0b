import { execFile, execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { chown, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import pg from 'pg';

import { findFreePort } from '../cli/helpers.ts';

/**
 * A throw-away PostgreSQL cluster of the test's own (initdb, pg_ctl), for tests that stop and start the database
 * server itself: the shared server of DATABASE_URL must never be taken down. It listens on 127.0.0.1 only, on a
 * free port, with trust authentication, and lives in one temporary folder removed by `destroy`.
 */

const REQUIRED = ['initdb', 'pg_ctl', 'postgres'] as const;

/**
 * The folder holding initdb, pg_ctl and postgres: MAYFLY_TEST_PG_BIN, else the newest
 * /usr/lib/postgresql/<version>/bin (Debian, Ubuntu). Undefined when there is none: the caller skips.
 */
export function findPostgresBin(): string | undefined {
  const complete = (dir: string) => REQUIRED.every((name) => existsSync(join(dir, name)));
  const named = process.env.MAYFLY_TEST_PG_BIN;
  if (named) return complete(named) ? named : undefined;
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((entry) => /^\d+$/.test(entry))
    .sort((a, b) => Number(b) - Number(a));
  return versions.map((version) => join(root, version, 'bin')).find(complete);
}

/** initdb refuses to run as root: as root every server binary runs as the `postgres` user. */
const AS_ROOT = process.getuid?.() === 0;

function run(file: string, args: readonly string[], timeoutMs = 60_000): Promise<string> {
  const [command, commandArgs] = AS_ROOT
    ? ['runuser', ['-u', 'postgres', '--', file, ...args]]
    : [file, args];
  return new Promise((resolve, reject) => {
    execFile(command, commandArgs, { timeout: timeoutMs, encoding: 'utf8' }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${file} ${args.join(' ')} failed: ${error.message}\n${stdout}${stderr}`));
      else resolve(stdout);
    });
  });
}

async function postgresOwner(): Promise<{ uid: number; gid: number }> {
  const id = (flag: string) =>
    new Promise<number>((resolve, reject) => {
      execFile('id', [flag, 'postgres'], { encoding: 'utf8' }, (error, stdout) => {
        if (error) reject(new Error(`id ${flag} postgres failed: ${error.message}`));
        else resolve(Number(stdout.trim()));
      });
    });
  return { uid: await id('-u'), gid: await id('-g') };
}

export class PostgresCluster {
  readonly bin: string;
  readonly port: number;
  /** Everything of the cluster: data folder, socket, server log. */
  readonly dir: string;
  #running = false;
  readonly #stopAtExit = () => {
    // Last resort should the test process end without `destroy`: no postmaster outlives it.
    if (!this.#running) return;
    try {
      const args = ['stop', '-D', this.#dataDir, '-m', 'immediate'];
      if (AS_ROOT) execFileSync('runuser', ['-u', 'postgres', '--', join(this.bin, 'pg_ctl'), ...args]);
      else execFileSync(join(this.bin, 'pg_ctl'), args);
    } catch {
      // Nothing more can be done at exit.
    }
  };

  private constructor(bin: string, port: number, dir: string) {
    this.bin = bin;
    this.port = port;
    this.dir = dir;
  }

  get #dataDir(): string {
    return join(this.dir, 'data');
  }

  get logFile(): string {
    return join(this.dir, 'postgres.log');
  }

  /** initdb into a new temporary folder and start the server. */
  static async create(bin: string): Promise<PostgresCluster> {
    const dir = await mkdtemp(join(tmpdir(), 'mayfly-pg-'));
    const cluster = new PostgresCluster(bin, await findFreePort(), dir);
    try {
      // The postgres user creates the data folder, the socket and the log in it.
      if (AS_ROOT) {
        const { uid, gid } = await postgresOwner();
        await chown(dir, uid, gid);
      }
      await run(join(bin, 'initdb'), [
        '-D',
        cluster.#dataDir,
        '-U',
        'postgres',
        '-A',
        'trust',
        '--no-sync',
        '--no-instructions',
      ]);
      process.on('exit', cluster.#stopAtExit);
      await cluster.start();
      return cluster;
    } catch (error) {
      await cluster.destroy().catch(() => undefined);
      throw error;
    }
  }

  /** A connection string for one database of this cluster. */
  url(database: string, password?: string): string {
    const credentials = password === undefined ? 'postgres' : `postgres:${encodeURIComponent(password)}`;
    return `postgres://${credentials}@127.0.0.1:${this.port}/${database}`;
  }

  /** Starts the server and waits until it accepts connections. */
  async start(): Promise<void> {
    // -l: the postmaster must not inherit pg_ctl's output, or pg_ctl's caller would wait for it to end.
    await run(join(this.bin, 'pg_ctl'), [
      'start',
      '-w',
      '-t',
      '30',
      '-D',
      this.#dataDir,
      '-l',
      this.logFile,
      '-o',
      `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1 -c fsync=off`,
    ]);
    this.#running = true;
  }

  /** `pg_ctl stop -m fast`: sessions are terminated at once, as when a database server goes down. */
  async stop(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    await run(join(this.bin, 'pg_ctl'), ['stop', '-w', '-t', '30', '-D', this.#dataDir, '-m', mode]);
    this.#running = false;
  }

  async createDatabase(name: string): Promise<void> {
    const client = new pg.Client({ connectionString: this.url('postgres') });
    await client.connect();
    try {
      await client.query(`create database ${name}`);
    } finally {
      await client.end();
    }
  }

  /** The server's own log, for failure messages. */
  async serverLog(): Promise<string> {
    return readFile(this.logFile, 'utf8').catch(() => '');
  }

  /** Stops the server if it runs and removes the folder; safe to call after a failed start. */
  async destroy(): Promise<void> {
    if (this.#running) await this.stop('immediate').catch(() => undefined);
    process.off('exit', this.#stopAtExit);
    await rm(this.dir, { recursive: true, force: true });
  }
}
