import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, request as httpRequest, type OutgoingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';

import { CLI, findFreePort } from '../cli/helpers.ts';
import { createTestDatabase, type TestDatabase } from './database.ts';
import type { TestServer } from './server.ts';

/**
 * Several real `mayfly serve` processes on one Postgres database behind one public address, for the tests that
 * check what the instances of a deployment must agree on. Postgres only: the embedded PGlite default is
 * single-process by design (one process owns its data folder), so there is no second instance to agree with.
 */

export interface Instance<N extends string = string> {
  name: N;
  port: number;
  child: ChildProcessByStdio<null, Readable, Readable>;
  /** Everything the process wrote (JSON log lines on stdout, anything else on stderr), for failure messages. */
  logs: string;
}

/**
 * A minimal reverse proxy on 127.0.0.1: forwards each request as is (method, path, headers including Host, body)
 * to the instance `target` names, so issuer, `htu` and token audiences all name its one address. `alternate`
 * takes turns, in the order the instances were given. The answer says which instance served it
 * (`x-mayfly-instance`), so a test can check the routing.
 */
export class Balancer<N extends string> {
  target: N | 'alternate';
  readonly #ports: Record<N, number>;
  readonly #names: readonly N[];
  readonly #first: N;
  readonly #server: Server;
  #turn = -1;

  private constructor(ports: Record<N, number>) {
    this.#ports = ports;
    this.#names = Object.keys(ports) as N[];
    const first = this.#names[0];
    if (first === undefined) throw new Error('a balancer needs at least one instance');
    this.#first = first;
    this.target = first;
    this.#server = createServer((req, res) => {
      const instance = this.#pick();
      const headers: OutgoingHttpHeaders = { ...req.headers };
      const upstream = httpRequest(
        { host: '127.0.0.1', port: this.#ports[instance], method: req.method, path: req.url, headers },
        (answer) => {
          const { connection: _c, 'keep-alive': _k, 'transfer-encoding': _t, ...kept } = answer.headers;
          res.writeHead(answer.statusCode ?? 502, { ...kept, 'x-mayfly-instance': instance });
          answer.pipe(res);
        },
      );
      // A connection error upstream is what a real balancer turns into a 502: the tests count it as a failure.
      upstream.on('error', (error) => {
        if (!res.headersSent)
          res.writeHead(502, { 'content-type': 'text/plain', 'x-mayfly-instance': instance });
        res.end(`balancer: ${error.message}`);
      });
      req.pipe(upstream);
    });
  }

  static async start<M extends string>(ports: Record<M, number>): Promise<Balancer<M>> {
    const balancer = new Balancer(ports);
    balancer.#server.listen(0, '127.0.0.1');
    await once(balancer.#server, 'listening');
    return balancer;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  #pick(): N {
    const named = this.#names.find((name) => name === this.target);
    if (named !== undefined) return named;
    this.#turn = (this.#turn + 1) % this.#names.length;
    return this.#names[this.#turn] ?? this.#first;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => {
      this.#server.close(() => {
        resolve();
      });
    });
  }
}

export function startInstance<N extends string>(
  name: N,
  port: number,
  env: Record<string, string>,
  cwd: string,
): Instance<N> {
  const child = spawn(process.execPath, [CLI, 'serve'], {
    cwd,
    env: { ...env, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const instance: Instance<N> = { name, port, child, logs: '' };
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (instance.logs += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (instance.logs += chunk));
  return instance;
}

/** Resolves on the "mayfly listening" log line; rejects when the process exits first or takes too long. */
export async function listening(instance: Instance, timeoutMs = 60_000): Promise<void> {
  const { child } = instance;
  await new Promise<void>((resolve, reject) => {
    const done = (error?: Error) => {
      clearTimeout(timer);
      child.stdout.off('data', check);
      child.off('exit', exited);
      if (error) reject(error);
      else resolve();
    };
    const check = () => {
      if (instance.logs.includes('"msg":"mayfly listening"')) done();
    };
    const exited = () => {
      done(new Error(`instance ${instance.name} exited before listening:\n${instance.logs}`));
    };
    const timer = setTimeout(() => {
      done(new Error(`instance ${instance.name} not listening after ${timeoutMs} ms:\n${instance.logs}`));
    }, timeoutMs);
    child.stdout.on('data', check);
    child.on('exit', exited);
    check();
  });
}

/** SIGTERM, then SIGKILL if it has not exited after a grace period: no process outlives the file. */
export async function stopInstance(instance: Instance): Promise<void> {
  const { child } = instance;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}

export interface ClusterOptions<N extends string> {
  /** One instance per name, all behind the balancer; the first is its initial target. */
  names: readonly N[];
  /** Added to the environment every instance shares. */
  env?: Record<string, string>;
  /** What sets one instance apart from the others, e.g. a misconfiguration. */
  envOf?: Partial<Record<N, Record<string, string>>>;
}

export interface Cluster<N extends string> {
  /** A fresh Postgres database (from DATABASE_URL), dropped by `close`. */
  database: TestDatabase;
  databaseUrl: string;
  /** The working folder of the processes, removed by `close`. */
  dir: string;
  /** The keys folder every instance shares: the admin bootstrap writes admin.json here. */
  keysDir: string;
  balancer: Balancer<N>;
  instances: Record<N, Instance<N>>;
  /** What `admin.ts` reads from a TestServer, the URL (the issuer: the balancer) and the keys folder. */
  publicAddress(): TestServer;
  /** Everything each process wrote, for failure messages. */
  logs(): string;
  /** Stops every process (SIGTERM, then SIGKILL), the balancer, drops the database and removes the folder. */
  close(): Promise<void>;
}

/**
 * Starts one `mayfly serve` per name at the same moment on a new, empty database, so migrations, the first
 * signing key and the admin bootstrap race as in a real roll-out. They share everything (database, KEK, nonce
 * secret, keys folder, issuer: the balancer's URL) but PORT and `envOf`. Should the start fail half way, what
 * was started is stopped before the error is thrown: the caller has nothing to clean up.
 */
export async function startCluster<N extends string>(options: ClusterOptions<N>): Promise<Cluster<N>> {
  const started: Instance<N>[] = [];
  const undo: (() => Promise<void>)[] = [];
  // Safety net: should the test process end without afterAll (a crash), the servers end with it.
  const killAll = () => {
    for (const { child } of started) if (child.exitCode === null) child.kill('SIGKILL');
  };
  process.on('exit', killAll);
  const close = async () => {
    await Promise.all(started.map(stopInstance));
    process.off('exit', killAll);
    // Newest first, each step whatever happened to the previous one.
    const failures: unknown[] = [];
    for (const step of undo.reverse()) {
      try {
        await step();
      } catch (error) {
        failures.push(error);
      }
    }
    undo.length = 0;
    if (failures.length > 0) throw new AggregateError(failures, 'cleaning up the instances failed');
  };

  try {
    const database = await createTestDatabase();
    undo.push(() => database.drop());
    if (database.config.kind !== 'postgres')
      throw new Error('several instances need DATABASE_URL (Postgres)');
    const databaseUrl = database.config.url;
    const dir = await mkdtemp(join(tmpdir(), 'mayfly-instances-'));
    undo.push(() => rm(dir, { recursive: true, force: true }));
    const keysDir = join(dir, 'keys');
    const ports: Partial<Record<N, number>> = {};
    for (const name of options.names) ports[name] = await findFreePort();
    const balancer = await Balancer.start(ports as Record<N, number>);
    undo.push(() => balancer.close());
    const env = {
      PATH: process.env.PATH ?? '',
      DATABASE_URL: databaseUrl,
      MAYFLY_KEK: database.kek,
      MAYFLY_DPOP_NONCE_SECRET: randomBytes(32).toString('base64url'),
      MAYFLY_KEYS_DIR: keysDir,
      HOST: '127.0.0.1',
      LOG_LEVEL: 'info',
      MAYFLY_ISSUER: balancer.url,
      ...options.env,
    };
    const instances: Partial<Record<N, Instance<N>>> = {};
    for (const name of options.names) {
      const instance = startInstance(name, ports[name] ?? 0, { ...env, ...options.envOf?.[name] }, dir);
      started.push(instance);
      instances[name] = instance;
    }
    await Promise.all(started.map((instance) => listening(instance)));
    return {
      database,
      databaseUrl,
      dir,
      keysDir,
      balancer,
      instances: instances as Record<N, Instance<N>>,
      // admin.ts needs no more of a TestServer than these two members.
      publicAddress: () => ({ url: balancer.url, keysDir }) as TestServer,
      logs: () => started.map((instance) => `--- ${instance.name}\n${instance.logs}`).join('\n'),
      close,
    };
  } catch (error) {
    // The start failure is the error worth reporting; a cleanup failure on top of it would hide it.
    await close().catch(() => undefined);
    throw error;
  }
}
