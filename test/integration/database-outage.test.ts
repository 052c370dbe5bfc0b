import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { adminCall, obtainAdminToken, type AdminToken } from '../support/admin.ts';
import { findFreePort } from '../cli/helpers.ts';
import { createProof, generateDpopKey, type DpopKey } from '../support/dpop.ts';
import { listening, startInstance, stopInstance, type Instance } from '../support/instances.ts';
import { basicAuth } from '../support/oauth.ts';
import { findPostgresBin, PostgresCluster } from '../support/postgres-cluster.ts';
import type { TestServer } from '../support/server.ts';

/**
 * Acceptance criterion "Database outage": one real `mayfly serve` on a Postgres cluster of this test's own, which
 * the test stops in the middle of a load of token requests and starts again. While the database is down every
 * request is answered at once and truthfully (503 temporarily_unavailable, Retry-After), the process stays up,
 * /readyz says not ready; once the database is back, service returns by itself with nothing lost.
 *
 * Independent of DATABASE_URL (the shared server must never be stopped), so it runs in both suite modes.
 */

const PG_BIN = findPostgresBin();
const API = 'https://orders.example.com';
/** Per-request bound: "fail fast" means well under the pool's 5 s connection timeout, never a hang. */
const FAST_MS = 2_000;
/**
 * A password in DATABASE_URL that trust authentication never asks for: the server must still never show it, in
 * an answer or in its log, as it would a real one.
 */
const DB_PASSWORD = `pw-${randomBytes(12).toString('hex')}`;

interface Credentials {
  id: string;
  secret: string;
}

/** One token request as the load saw it. */
interface Attempt {
  /** performance.now() when the request was sent, and when its answer was read. */
  sentAt: number;
  doneAt: number;
  status: number;
  body: string;
  retryAfter: string | null;
  /** A network failure or our own timeout: never expected. */
  failure?: string;
}

let cluster: PostgresCluster | undefined;
let instance: Instance | undefined;
let stderr = '';
let dir: string;
let url: string;
let server: TestServer;
let admin: AdminToken;
let billing: Credentials;
let ordersApi: Credentials;
let dpopKey: DpopKey;
/** What existed before the outage, compared after it. */
let kidsBefore: string[];
let keyListBefore: unknown[];
let clientBefore: Record<string, unknown>;
/** A token issued before the outage, introspected during it. */
let tokenBefore: string;
/** Every access token issued in this file: none may appear in the log. */
const issuedTokens: string[] = [];

/** The end of the server's log and anything on its stderr (a crash): the message of a failed check. */
function serverOutput(): string {
  const tail = (instance?.logs ?? '').split('\n').slice(-30).join('\n');
  return `--- server log (end)\n${tail}\n--- server stderr\n${stderr}`;
}

/** Status and body, then what the server wrote. */
function context(what: string, status: number, body: unknown): string {
  return `${what}: ${status} ${typeof body === 'string' ? body : JSON.stringify(body)}\n${serverOutput()}`;
}

async function tokenAttempt(credentials: Credentials = billing): Promise<Attempt> {
  // The proof is signed before the clock starts: only the server's time is measured.
  const proof = await createProof(dpopKey, { htu: `${url}/token` });
  const sentAt = performance.now();
  try {
    const res = await fetch(`${url}/token`, {
      method: 'POST',
      headers: {
        authorization: basicAuth(credentials.id, credentials.secret),
        dpop: proof,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({ grant_type: 'client_credentials', resource: API, scope: 'orders:read' }),
      signal: AbortSignal.timeout(10_000),
    });
    const body = await res.text();
    if (res.status === 200) issuedTokens.push((JSON.parse(body) as { access_token: string }).access_token);
    return {
      sentAt,
      doneAt: performance.now(),
      status: res.status,
      body,
      retryAfter: res.headers.get('retry-after'),
    };
  } catch (error) {
    return {
      sentAt,
      doneAt: performance.now(),
      status: 0,
      body: '',
      retryAfter: null,
      failure: error instanceof Error ? error.message : String(error),
    };
  }
}

async function getJson(path: string): Promise<{ status: number; body: unknown; ms: number }> {
  const started = performance.now();
  const res = await fetch(`${url}${path}`, { signal: AbortSignal.timeout(10_000) });
  const body: unknown = await res.json();
  return { status: res.status, body, ms: performance.now() - started };
}

async function introspect(token: string): Promise<{ status: number; body: unknown; ms: number }> {
  const started = performance.now();
  const res = await fetch(`${url}/token/introspection`, {
    method: 'POST',
    headers: {
      authorization: basicAuth(ordersApi.id, ordersApi.secret),
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ token }),
    signal: AbortSignal.timeout(10_000),
  });
  const body: unknown = await res.json();
  return { status: res.status, body, ms: performance.now() - started };
}

/** An answer must never show how the server is built or where its database is. */
function expectNothingInternal(body: string): void {
  expect(body).not.toContain(DB_PASSWORD);
  expect(body).not.toMatch(/postgres(ql)?:\/\//);
  expect(body).not.toMatch(/\n\s+at /);
  expect(body).not.toMatch(/ECONNREFUSED|57P01|terminating connection/);
}

function expectTemporarilyUnavailable(attempt: Attempt): void {
  const what = context('token request', attempt.status, attempt.body);
  expect(attempt.status, what).toBe(503);
  expect(JSON.parse(attempt.body), what).toEqual({
    error: 'temporarily_unavailable',
    error_description: expect.any(String) as unknown,
  });
  expect(attempt.retryAfter, what).toMatch(/^\d+$/);
}

async function kidsInJwks(): Promise<string[]> {
  const { status, body } = await getJson('/jwks');
  expect(status).toBe(200);
  return (body as { keys: { kid: string }[] }).keys.map((key) => key.kid).sort();
}

describe.skipIf(PG_BIN === undefined)(
  PG_BIN === undefined
    ? 'database outage: SKIPPED, no PostgreSQL server binaries (initdb, pg_ctl, postgres) in ' +
        '/usr/lib/postgresql/<version>/bin nor in MAYFLY_TEST_PG_BIN'
    : 'database outage',
  () => {
    beforeAll(async () => {
      cluster = await PostgresCluster.create(PG_BIN ?? '');
      await cluster.createDatabase('mayfly');
      dir = await mkdtemp(join(tmpdir(), 'mayfly-outage-'));
      const port = await findFreePort();
      url = `http://127.0.0.1:${port}`;
      const keysDir = join(dir, 'keys');
      instance = startInstance(
        'outage',
        port,
        {
          PATH: process.env.PATH ?? '',
          DATABASE_URL: cluster.url('mayfly', DB_PASSWORD),
          MAYFLY_KEK: randomBytes(32).toString('base64url'),
          MAYFLY_DPOP_NONCE_SECRET: randomBytes(32).toString('base64url'),
          MAYFLY_KEYS_DIR: keysDir,
          HOST: '127.0.0.1',
          MAYFLY_ISSUER: url,
          LOG_LEVEL: 'info',
          // The background jobs meet the outage too, every second: none of them may bring the process down.
          MAYFLY_KEY_CHECK_INTERVAL: '1',
          MAYFLY_PURGE_INTERVAL: '1',
        },
        dir,
      );
      instance.child.stderr.on('data', (chunk: string) => (stderr += chunk));
      await listening(instance);
      // admin.ts needs no more of a TestServer than these two members.
      server = { url, keysDir } as TestServer;

      admin = await obtainAdminToken(server);
      const resource = await adminCall(server, admin, 'POST', '/resources', {
        body: { identifier: API, scopes: ['orders:read'] },
      });
      expect(resource.status, context('create resource', resource.status, resource.body)).toBe(201);
      const created = await adminCall(server, admin, 'POST', '/clients', {
        body: { name: 'billing', grants: [{ resource: API, scopes: ['orders:read'] }] },
      });
      expect(created.status, context('create client', created.status, created.body)).toBe(201);
      billing = { id: created.body.client_id as string, secret: created.body.client_secret as string };
      const introspector = await adminCall(server, admin, 'POST', '/clients', {
        body: { name: 'orders-api', introspects: [API] },
      });
      expect(introspector.status).toBe(201);
      ordersApi = {
        id: introspector.body.client_id as string,
        secret: introspector.body.client_secret as string,
      };
      dpopKey = await generateDpopKey();

      kidsBefore = await kidsInJwks();
      const keys = await adminCall(server, admin, 'GET', '/keys');
      expect(keys.status).toBe(200);
      keyListBefore = keys.body.items as unknown[];
      const client = await adminCall(server, admin, 'GET', `/clients/${billing.id}`);
      expect(client.status).toBe(200);
      clientBefore = client.body as Record<string, unknown>;
      const first = await tokenAttempt();
      expect(first.status, context('first token', first.status, first.body)).toBe(200);
      tokenBefore = (JSON.parse(first.body) as { access_token: string }).access_token;
      // Fresh, right before the outage: the admin calls made during it are refused for the outage alone.
      admin = await obtainAdminToken(server);
    });

    afterAll(async () => {
      // Each step whatever happened before: no process and no cluster outlive the file.
      if (instance) await stopInstance(instance).catch(() => undefined);
      await cluster?.destroy();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it('answers token requests under load with a fast 503 temporarily_unavailable while Postgres is down', async () => {
      const attempts: Attempt[] = [];
      let stop = false;
      // A few clients asking with hardly a pause (bounded in count and time), before and during the outage.
      const worker = async () => {
        while (!stop && attempts.length < 2_000) {
          attempts.push(await tokenAttempt());
          await sleep(10);
        }
      };
      const workers = Array.from({ length: 4 }, worker);
      const loadStart = performance.now();
      while (attempts.filter((a) => a.status === 200).length < 20 && performance.now() - loadStart < 10_000) {
        await sleep(20);
      }
      const stopping = performance.now();
      await cluster?.stop('fast');
      const stopped = performance.now();
      // Two seconds of outage under load: the database is gone for good now, the clients keep asking.
      await sleep(2_000);
      stop = true;
      await Promise.all(workers);

      // First, so that a crash is reported as such rather than as the refused requests that follow it.
      expect(instance?.child.exitCode, `the process stays up\n${serverOutput()}`).toBeNull();
      expect(instance?.child.signalCode).toBeNull();
      for (const attempt of attempts) {
        const what = context('token request', attempt.status, attempt.failure ?? attempt.body);
        expect(attempt.failure, what).toBeUndefined();
        // Never a 500, never a hang: answered, truthfully, within the bound.
        expect([200, 503], what).toContain(attempt.status);
        expect(attempt.doneAt - attempt.sentAt, what).toBeLessThan(FAST_MS);
        expectNothingInternal(attempt.body);
        if (attempt.status === 503) expectTemporarilyUnavailable(attempt);
      }
      const before = attempts.filter((a) => a.doneAt < stopping);
      const during = attempts.filter((a) => a.sentAt > stopped);
      expect(before.length, 'tokens were issued under load before the stop').toBeGreaterThanOrEqual(20);
      expect(before.every((a) => a.status === 200)).toBe(true);
      expect(during.length, 'requests kept coming while the database was down').toBeGreaterThanOrEqual(20);
      expect(during.every((a) => a.status === 503)).toBe(true);
    });

    it('says not ready on /readyz, with the database check failing, and alive on /healthz', async () => {
      const ready = await getJson('/readyz');
      expect(ready.status).toBe(503);
      expect(ready.body).toMatchObject({
        status: 'not_ready',
        checks: { database: { status: 'failing' }, signing_key: { status: 'ok' } },
      });
      expect(ready.ms).toBeLessThan(FAST_MS + 1_000);
      expectNothingInternal(JSON.stringify(ready.body));
      const health = await getJson('/healthz');
      expect(health.status).toBe(200);
      expect(health.body).toEqual({ status: 'ok' });
    });

    it('answers the admin API with 503 temporarily_unavailable and a Retry-After, changing nothing', async () => {
      for (const call of [
        () => adminCall(server, admin, 'GET', `/clients/${billing.id}`),
        () => adminCall(server, admin, 'GET', '/keys'),
        () =>
          adminCall(server, admin, 'POST', '/resources', {
            body: { identifier: 'https://during-outage.example.com', scopes: ['x'] },
          }),
      ]) {
        const started = performance.now();
        const res = await call();
        const what = context('admin call', res.status, res.body);
        expect(res.status, what).toBe(503);
        expect(res.body, what).toMatchObject({
          code: 'temporarily_unavailable',
          message: expect.any(String),
        });
        expect(res.headers['retry-after'], what).toMatch(/^\d+$/);
        expect(performance.now() - started).toBeLessThan(FAST_MS);
        expectNothingInternal(res.text);
      }
    });

    it('answers introspection with 503 temporarily_unavailable, not with a verdict it cannot know', async () => {
      // The caller cannot be authenticated nor the token checked for revocation without the database.
      const res = await introspect(tokenBefore);
      const what = context('introspection', res.status, res.body);
      expect(res.status, what).toBe(503);
      expect(res.body, what).toEqual({
        error: 'temporarily_unavailable',
        error_description: expect.any(String) as unknown,
      });
      expect(res.ms).toBeLessThan(FAST_MS);
      expectNothingInternal(JSON.stringify(res.body));
    });

    it('returns by itself once Postgres is back, with no client or key lost', async () => {
      await cluster?.start();
      const back = performance.now();
      // Polled, bounded: no restart, no intervention, the next requests simply succeed.
      let recovered: Attempt | undefined;
      while (performance.now() - back < 15_000) {
        const attempt = await tokenAttempt();
        const what = context('token request', attempt.status, attempt.failure ?? attempt.body);
        expect([200, 503], what).toContain(attempt.status);
        expect(attempt.doneAt - attempt.sentAt, what).toBeLessThan(FAST_MS);
        if (attempt.status === 200) {
          recovered = attempt;
          break;
        }
        await sleep(200);
      }
      expect(recovered, `no token within 15 s of the restart\n${serverOutput()}`).toBeDefined();
      let ready = await getJson('/readyz');
      while (ready.status !== 200 && performance.now() - back < 15_000) {
        await sleep(200);
        ready = await getJson('/readyz');
      }
      expect(ready.status, context('/readyz', ready.status, ready.body)).toBe(200);
      expect(ready.body).toMatchObject({ status: 'ready' });

      // Steady again, not one lucky request.
      const burst = await Promise.all(Array.from({ length: 10 }, () => tokenAttempt()));
      for (const attempt of burst)
        expect(attempt.status, context('token', attempt.status, attempt.body)).toBe(200);

      expect(await kidsInJwks()).toEqual(kidsBefore);
      const keys = await adminCall(server, admin, 'GET', '/keys');
      expect(keys.status).toBe(200);
      expect(keys.body.items).toEqual(keyListBefore);
      const client = await adminCall(server, admin, 'GET', `/clients/${billing.id}`);
      expect(client.status).toBe(200);
      expect(client.body).toEqual(clientBefore);
      // Tokens issued before the outage are still good, and the write refused during it did not happen.
      const verdict = await introspect(tokenBefore);
      expect(verdict.status).toBe(200);
      expect(verdict.body).toMatchObject({ active: true, client_id: billing.id, aud: API });
      const refused = await adminCall(
        server,
        admin,
        'GET',
        `/resources/${encodeURIComponent('https://during-outage.example.com')}`,
      );
      expect(refused.status).toBe(404);
      expect(instance?.child.exitCode).toBeNull();
    });

    it('logged the outage without an unhandled error, a crash, a secret or a token', () => {
      const log = instance?.logs ?? '';
      expect(stderr, 'nothing outside the JSON log').toBe('');
      const records = log
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as { level: number; msg: string });
      expect(records.length).toBeGreaterThan(0);
      const messages = new Set(records.map((record) => record.msg));
      expect(messages, 'the outage is reported as such').toContain('database unavailable');
      for (const crash of ['unhandled error', 'provider server error', 'shutdown failed']) {
        expect(messages).not.toContain(crash);
      }
      expect(records.filter((record) => record.level >= 60)).toEqual([]);
      expect(issuedTokens.length).toBeGreaterThan(20);
      for (const secret of [billing.secret, ordersApi.secret, admin.token, DB_PASSWORD, ...issuedTokens]) {
        expect(log.includes(secret), 'a secret or a token in the log').toBe(false);
      }
    });
  },
);
