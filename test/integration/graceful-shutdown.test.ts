import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { findFreePort } from '../cli/helpers.ts';
import { adminCall, obtainAdminToken } from '../support/admin.ts';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { createProof, generateDpopKey } from '../support/dpop.ts';
import { listening, startInstance, stopInstance, type Instance } from '../support/instances.ts';
import { basicAuth } from '../support/oauth.ts';
import type { TestServer } from '../support/server.ts';

/**
 * Acceptance criterion "Graceful shutdown": on SIGTERM a real `mayfly serve` stops accepting connections, lets
 * the requests in flight finish with their normal answer, closes idle connections, stops its jobs and its
 * database, and exits 0 — within MAYFLY_SHUTDOWN_TIMEOUT, after which what is left is cut.
 *
 * The requests are written by hand on raw sockets: only so can a request be held half sent while the signal
 * arrives, and the server's every byte be seen.
 */

const API = 'https://orders.example.com';

interface Backend {
  name: string;
  /** The environment of a server on a fresh, empty database; `cleanup` removes that database. */
  prepare(dir: string): Promise<{ env: Record<string, string>; cleanup: () => Promise<void> }>;
}

const BACKENDS: Backend[] = [
  {
    name: 'the embedded PGlite',
    prepare: (dir) =>
      Promise.resolve({ env: { MAYFLY_DATA_DIR: join(dir, 'data') }, cleanup: () => Promise.resolve() }),
  },
  ...(process.env.DATABASE_URL
    ? [
        {
          name: 'Postgres',
          async prepare() {
            const database: TestDatabase = await createTestDatabase();
            if (database.config.kind !== 'postgres') throw new Error('expected a Postgres database');
            return {
              env: {
                DATABASE_URL: database.config.url,
                MAYFLY_KEK: database.kek,
                MAYFLY_DPOP_NONCE_SECRET: randomBytes(32).toString('base64url'),
              },
              cleanup: () => database.drop(),
            };
          },
        },
      ]
    : []),
];

interface Server {
  instance: Instance;
  url: string;
  port: number;
  dir: string;
  stderr(): string;
}

/** Every server started, stopped after each test whatever happened (SIGTERM, then SIGKILL). */
const started: Instance[] = [];
const cleanups: (() => Promise<void>)[] = [];
let root: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'mayfly-shutdown-'));
});
afterEach(async () => {
  await Promise.all(started.splice(0).map((instance) => stopInstance(instance)));
  for (const cleanup of cleanups.splice(0)) await cleanup();
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function startServer(
  backend: Backend,
  name: string,
  extraEnv: Record<string, string> = {},
  reuse?: { dir: string; env: Record<string, string> },
): Promise<Server & { databaseEnv: Record<string, string> }> {
  let dir: string;
  let databaseEnv: Record<string, string>;
  if (reuse) {
    ({ dir } = reuse);
    databaseEnv = reuse.env;
  } else {
    dir = join(root, `${backend.name.replace(/\W+/g, '-')}-${name}`);
    const prepared = await backend.prepare(dir);
    cleanups.push(prepared.cleanup);
    databaseEnv = prepared.env;
  }
  const port = await findFreePort();
  const url = `http://127.0.0.1:${port}`;
  const env = {
    PATH: process.env.PATH ?? '',
    MAYFLY_KEYS_DIR: join(dir, 'keys'),
    HOST: '127.0.0.1',
    MAYFLY_ISSUER: url,
    LOG_LEVEL: 'info',
    ...databaseEnv,
    ...extraEnv,
  };
  await mkdir(dir, { recursive: true });
  const instance = startInstance(name, port, env, dir);
  started.push(instance);
  let stderr = '';
  instance.child.stderr.on('data', (chunk: string) => (stderr += chunk));
  await listening(instance);
  return { instance, url, port, dir, stderr: () => stderr, databaseEnv };
}

/** A resource and a client with a secret, through the admin API as an operator would. */
async function registerClient(server: Server): Promise<{ id: string; secret: string }> {
  const address = { url: server.url, keysDir: join(server.dir, 'keys') } as TestServer;
  const admin = await obtainAdminToken(address);
  const resource = await adminCall(address, admin, 'POST', '/resources', {
    body: { identifier: API, scopes: ['orders:read'] },
  });
  expect(resource.status).toBe(201);
  const client = await adminCall(address, admin, 'POST', '/clients', {
    body: { name: 'billing', grants: [{ resource: API, scopes: ['orders:read'] }] },
  });
  expect(client.status).toBe(201);
  return { id: client.body.client_id as string, secret: client.body.client_secret as string };
}

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** One HTTP/1.1 connection written by hand; everything the server sends is kept. */
class RawConnection {
  readonly socket: Socket;
  received = '';
  readonly closed: Promise<void>;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (this.received += chunk));
    this.closed = new Promise((resolve) => {
      socket.once('close', () => {
        resolve();
      });
    });
  }

  static async open(port: number): Promise<RawConnection> {
    const socket = connect(port, '127.0.0.1');
    await once(socket, 'connect');
    return new RawConnection(socket);
  }

  get isClosed(): boolean {
    return this.socket.destroyed;
  }

  write(text: string): void {
    this.socket.write(text);
  }

  /** Waits, bounded, until the server sent `count` final (non-1xx) responses, and returns them. */
  async responses(count: number, ms = 10_000): Promise<RawResponse[]> {
    const deadline = performance.now() + ms;
    for (;;) {
      const parsed = parseResponses(this.received);
      if (parsed.length >= count) return parsed;
      if (this.isClosed || performance.now() > deadline) {
        throw new Error(`expected ${count} responses, got:\n${this.received}`);
      }
      await sleep(10);
    }
  }

  /** Waits, bounded, for some text from the server. */
  async waitFor(text: string, ms = 10_000): Promise<void> {
    const deadline = performance.now() + ms;
    while (!this.received.includes(text)) {
      if (this.isClosed || performance.now() > deadline) {
        throw new Error(`expected ${JSON.stringify(text)}, got:\n${this.received}`);
      }
      await sleep(10);
    }
  }
}

/** Final responses with a Content-Length body, in order; interim 1xx responses are skipped. */
function parseResponses(text: string): RawResponse[] {
  const responses: RawResponse[] = [];
  let rest = text;
  for (;;) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) return responses;
    const [statusLine = '', ...lines] = rest.slice(0, end).split('\r\n');
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine)?.[1]);
    const headers = Object.fromEntries(
      lines.map((line) => {
        const colon = line.indexOf(':');
        return [line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()];
      }),
    );
    const length = status < 200 ? 0 : Number(headers['content-length'] ?? NaN);
    if (Number.isNaN(length)) throw new Error(`a response without Content-Length:\n${text}`);
    const bodyEnd = end + 4 + length;
    // Bytes, not characters, in general; these bodies are ASCII JSON.
    if (rest.length < bodyEnd) return responses;
    if (status >= 200) responses.push({ status, headers, body: rest.slice(end + 4, bodyEnd) });
    rest = rest.slice(bodyEnd);
  }
}

/**
 * A client_credentials request with client_secret_basic and a DPoP proof, split where the caller wants: the head
 * (with `Expect: 100-continue`, so the server's "100 Continue" tells that the request has reached the
 * application) and the body in two parts.
 */
async function tokenRequest(
  server: Server,
  client: { id: string; secret: string },
): Promise<{ head: string; first: string; second: string }> {
  const body = new URLSearchParams({
    grant_type: 'client_credentials',
    resource: API,
    scope: 'orders:read',
  }).toString();
  const key = await generateDpopKey();
  const proof = await createProof(key, { htu: `${server.url}/token` });
  const head =
    `POST /token HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\n` +
    `Authorization: ${basicAuth(client.id, client.secret)}\r\nDPoP: ${proof}\r\n` +
    `Content-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length}\r\n` +
    'Expect: 100-continue\r\n\r\n';
  const half = Math.floor(body.length / 2);
  return { head, first: body.slice(0, half), second: body.slice(half) };
}

function getRequest(server: Server, path: string): string {
  return `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\n\r\n`;
}

/** Whether a new connection is refused (ECONNREFUSED) rather than accepted. */
async function refusesConnections(port: number): Promise<boolean> {
  const socket = connect(port, '127.0.0.1');
  try {
    await once(socket, 'connect');
    return false;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ECONNREFUSED') return true;
    throw error;
  } finally {
    socket.destroy();
  }
}

async function waitForLog(instance: Instance, message: string, ms = 10_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!instance.logs.includes(`"msg":"${message}"`)) {
    if (performance.now() > deadline) throw new Error(`no "${message}" in the log:\n${instance.logs}`);
    await sleep(10);
  }
}

async function exited(
  instance: Instance,
  ms: number,
): Promise<{ code: number | null; signal: string | null }> {
  const { child } = instance;
  const outputRead = child.stdout.readableEnded;
  if ((child.exitCode !== null || child.signalCode !== null) && outputRead) {
    return { code: child.exitCode, signal: child.signalCode };
  }
  // 'close', not 'exit': only then has everything the process wrote to its output been read.
  const [code, signal] = (await Promise.race([
    once(child, 'close'),
    sleep(ms).then(() => {
      throw new Error(`still running ${ms} ms later:\n${instance.logs}`);
    }),
  ])) as [number | null, string | null];
  return { code, signal };
}

/** The JSON log lines, in order; nothing else may be on stdout. */
function records(instance: Instance): { level: number; msg: string }[] {
  return instance.logs
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as { level: number; msg: string });
}

function expectOrderlyStop(server: Server): void {
  expect(server.stderr(), 'nothing outside the JSON log').toBe('');
  const messages = records(server.instance).map((record) => record.msg);
  const shuttingDown = messages.indexOf('shutting down');
  expect(shuttingDown, server.instance.logs).toBeGreaterThanOrEqual(0);
  expect(messages.indexOf('stopped'), server.instance.logs).toBeGreaterThan(shuttingDown);
  // The jobs run every second here: one still running on a closed database would warn.
  expect(
    records(server.instance).filter((record) => record.level >= 40),
    'no warning or error logged',
  ).toEqual([]);
}

/** The scheduled jobs (key checks, purge) busy every second, so that they are running when the signal comes. */
const BUSY_JOBS = { MAYFLY_KEY_CHECK_INTERVAL: '1', MAYFLY_PURGE_INTERVAL: '1' };

/** A request is in flight once its head has reached the application (100 Continue) and half its body is sent. */
async function sendHalf(server: Server, request: { head: string; first: string }): Promise<RawConnection> {
  const connection = await RawConnection.open(server.port);
  connection.write(request.head);
  await connection.waitFor('HTTP/1.1 100 Continue\r\n\r\n');
  connection.write(request.first);
  return connection;
}

describe.each(BACKENDS)('graceful shutdown on $name', (backend) => {
  it(
    'finishes the request in flight, closes idle connections, refuses new ones, says not ready and exits 0',
    { timeout: 90_000 },
    async () => {
      const server = await startServer(backend, 'drain', { MAYFLY_SHUTDOWN_TIMEOUT: '10', ...BUSY_JOBS });
      const client = await registerClient(server);
      const request = await tokenRequest(server, client);

      const inFlight = await sendHalf(server, request);
      // Idle: one request answered, the connection kept alive.
      const idle = await RawConnection.open(server.port);
      idle.write(getRequest(server, '/healthz'));
      expect((await idle.responses(1))[0]?.status).toBe(200);
      // A /readyz whose head is not complete yet: its connection is busy, not idle, so it outlives the signal.
      const probe = await RawConnection.open(server.port);
      const readyz = getRequest(server, '/readyz');
      probe.write(readyz.slice(0, -2));
      const readyBefore = await fetch(`${server.url}/readyz`, { headers: { connection: 'close' } });
      expect(readyBefore.status).toBe(200);

      const signalled = performance.now();
      server.instance.child.kill('SIGTERM');
      await waitForLog(server.instance, 'shutting down');

      await Promise.race([idle.closed, sleep(3_000)]);
      expect(idle.isClosed, 'the idle keep-alive connection is closed').toBe(true);
      expect(parseResponses(idle.received)).toHaveLength(1);
      let refused = await refusesConnections(server.port);
      for (let tries = 0; !refused && tries < 20; tries++) {
        await sleep(50);
        refused = await refusesConnections(server.port);
      }
      expect(refused, 'a new connection is refused once the listener closed').toBe(true);

      // Readiness turned false for the drain: a load balancer still polling stops sending requests.
      probe.write('\r\n');
      const [notReady] = await probe.responses(1);
      expect(notReady?.status, probe.received).toBe(503);
      expect(JSON.parse(notReady?.body ?? '')).toMatchObject({
        status: 'not_ready',
        checks: { shutdown: { status: 'failing' }, database: { status: 'ok' } },
      });

      // Still there for the request in flight: the drain waits for it.
      await sleep(300);
      expect(server.instance.child.exitCode).toBeNull();
      expect(inFlight.isClosed).toBe(false);
      inFlight.write(request.second);
      const [answer] = await inFlight.responses(1);
      expect(answer?.status, inFlight.received).toBe(200);
      expect(JSON.parse(answer?.body ?? '')).toMatchObject({
        access_token: expect.any(String) as unknown,
        token_type: 'DPoP',
        scope: 'orders:read',
      });
      // The clients hang up once answered; whether the server closes these connections itself is checked below.
      inFlight.socket.end();
      probe.socket.end();

      const { code, signal } = await exited(server.instance, 12_000);
      expect(signal).toBeNull();
      expect(code).toBe(0);
      expect(performance.now() - signalled, 'within MAYFLY_SHUTDOWN_TIMEOUT').toBeLessThan(10_000);
      expectOrderlyStop(server);

      // The database was closed cleanly: a new process on it finds the client, which still gets tokens.
      const again = await startServer(
        backend,
        'drain-again',
        {},
        { dir: server.dir, env: server.databaseEnv },
      );
      const next = await tokenRequest(again, client);
      const connection = await RawConnection.open(again.port);
      connection.write(next.head + next.first + next.second);
      const [reissued] = await connection.responses(1);
      expect(reissued?.status, connection.received).toBe(200);
      connection.socket.destroy();
    },
  );

  it(
    'closes the connection of a drained request once answered, instead of keeping it alive through the drain',
    { timeout: 60_000 },
    async () => {
      const server = await startServer(backend, 'close', { MAYFLY_SHUTDOWN_TIMEOUT: '10' });
      const client = await registerClient(server);
      const request = await tokenRequest(server, client);
      const inFlight = await sendHalf(server, request);

      server.instance.child.kill('SIGTERM');
      await waitForLog(server.instance, 'shutting down');
      inFlight.write(request.second);
      const [answer] = await inFlight.responses(1);
      const answered = performance.now();
      expect(answer?.status, inFlight.received).toBe(200);
      // Keep-alive would invite a next request on a connection the server is about to drop.
      // Soft: each of the three says something of its own when it fails.
      expect.soft(answer?.headers.connection, JSON.stringify(answer?.headers)).toBe('close');
      await Promise.race([inFlight.closed, sleep(2_000)]);
      expect.soft(inFlight.isClosed, 'the server closed the connection after the answer').toBe(true);
      const { code } = await exited(server.instance, 12_000);
      expect(code).toBe(0);
      // Nothing left to wait for once the last answer is sent: not Node's 5 s keep-alive timeout.
      expect.soft(performance.now() - answered, 'exit after the last answer (ms)').toBeLessThan(2_000);
    },
  );

  it(
    'cuts a request that never completes once MAYFLY_SHUTDOWN_TIMEOUT has passed, and still exits 0',
    { timeout: 60_000 },
    async () => {
      const server = await startServer(backend, 'cut', { MAYFLY_SHUTDOWN_TIMEOUT: '1', ...BUSY_JOBS });
      const stuck = await sendHalf(server, {
        head:
          `POST /token HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\n` +
          'Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n' +
          'Expect: 100-continue\r\n\r\n',
        first: 'grant_type=client_credentials',
      });

      const signalled = performance.now();
      server.instance.child.kill('SIGTERM');
      const { code, signal } = await exited(server.instance, 6_000);
      const elapsed = performance.now() - signalled;
      expect(signal).toBeNull();
      expect(code).toBe(0);
      // It waited for the request the whole second, and not more than a moment longer.
      expect(elapsed).toBeGreaterThanOrEqual(950);
      expect(elapsed).toBeLessThan(4_000);
      await Promise.race([stuck.closed, sleep(1_000)]);
      expect(stuck.isClosed, 'the connection was cut').toBe(true);
      expect(parseResponses(stuck.received), 'no answer: the request was cut').toEqual([]);
      expectOrderlyStop(server);
    },
  );
});
