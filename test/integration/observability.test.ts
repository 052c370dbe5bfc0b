import { PassThrough } from 'node:stream';

import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadConfig } from '../../src/config/config.ts';
import { prettyLines } from '../../src/observability/logger.ts';
import { startMetricsServer } from '../../src/server.ts';
import { generateDpopKey, type DpopKey } from '../support/dpop.ts';
import { basicAuth, requestToken } from '../support/oauth.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

const API = 'https://api.example.com';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

let server: TestServer;
let caller: { id: string; secret: string };
let resourceServer: { id: string; secret: string };
let key: DpopKey;

beforeAll(async () => {
  server = await startTestServer();
  await server.createResource({ identifier: API, scopes: ['read'] });
  const created = await server.createClient({
    name: 'caller',
    grants: [{ resource: API, scopes: ['read'] }],
  });
  caller = { id: created.client.id, secret: created.clientSecret ?? '' };
  const rs = await server.createClient({ name: 'api', introspects: [API] });
  resourceServer = { id: rs.client.id, secret: rs.clientSecret ?? '' };
  key = await generateDpopKey();
});
afterAll(() => server.close());

describe('health', () => {
  it('/healthz says the process answers; /readyz checks the database, migrations and the signing key', async () => {
    const live = await request(server.url).get('/healthz');
    expect(live.status).toBe(200);
    expect(live.body).toEqual({ status: 'ok' });
    expect(live.headers['cache-control']).toBe('no-store');

    const ready = await request(server.url).get('/readyz');
    expect(ready.status).toBe(200);
    expect(ready.headers['cache-control']).toBe('no-store');
    expect(ready.body).toEqual({
      status: 'ready',
      checks: {
        database: { status: 'ok', latency_ms: expect.any(Number) },
        migrations: { status: 'ok' },
        signing_key: { status: 'ok', kid: server.app.keys.current.signer.kid },
      },
    });
  });

  it('/readyz says not ready, and why, while a migration of this build is missing or shutdown has begun', async () => {
    const [latest] = await server.app.db
      .selectFrom('kysely_migration' as never)
      .select('name' as never)
      .orderBy('name' as never, 'desc')
      .limit(1)
      .execute();
    const name = (latest as { name: string } | undefined)?.name ?? '';
    const timestamp = await server.app.db
      .selectFrom('kysely_migration' as never)
      .select('timestamp' as never)
      .where('name' as never, '=', name as never)
      .executeTakeFirstOrThrow();
    await server.app.db
      .deleteFrom('kysely_migration' as never)
      .where('name' as never, '=', name as never)
      .execute();
    try {
      const res = await request(server.url).get('/readyz');
      expect(res.status).toBe(503);
      expect(res.body).toMatchObject({
        status: 'not_ready',
        checks: { database: { status: 'ok' }, migrations: { status: 'failing', pending: [name] } },
      });
    } finally {
      await server.app.db
        .insertInto('kysely_migration' as never)
        .values({ name, ...(timestamp as object) })
        .execute();
    }
    expect((await request(server.url).get('/readyz')).status).toBe(200);

    server.app.draining = true;
    try {
      const res = await request(server.url).get('/readyz');
      expect(res.status).toBe(503);
      expect(res.body.checks.shutdown).toEqual({ status: 'failing', reason: 'shutting down' });
      // Liveness is another question: the process still answers.
      expect((await request(server.url).get('/healthz')).status).toBe(200);
    } finally {
      server.app.draining = false;
    }
  });
});

describe('request ids', () => {
  it('answers a new id; a caller cannot choose the id of its audit lines unless it is the trusted proxy', async () => {
    const fresh = await request(server.url).get('/jwks');
    expect(fresh.headers['x-request-id']).toMatch(UUID);
    const ignored = await request(server.url).get('/jwks').set('X-Request-Id', 'lb-7f3a.42:1');
    expect(ignored.headers['x-request-id']).toMatch(UUID);

    const proxied = await startTestServer({ env: { MAYFLY_TRUST_PROXY: 'true' } });
    try {
      const kept = await request(proxied.url).get('/jwks').set('X-Request-Id', 'lb-7f3a.42:1');
      expect(kept.headers['x-request-id']).toBe('lb-7f3a.42:1');
      for (const bad of ['has space', 'x'.repeat(129), 'quote"s', 'semi;colon']) {
        const replaced = await request(proxied.url).get('/jwks').set('X-Request-Id', bad);
        expect(replaced.headers['x-request-id']).toMatch(UUID);
      }
    } finally {
      await proxied.close();
    }
  });

  it('puts the id on every log line of a token request, so one request can be followed through the logs', async () => {
    const before = server.logs.lines.length;
    const res = await requestToken(server.url, {
      clientId: caller.id,
      secret: caller.secret,
      resource: API,
      key,
    });
    expect(res.status).toBe(200);
    const id = res.headers['x-request-id'] as string;
    expect(id).toMatch(UUID);
    const lines = server.logs.records().slice(before);
    expect(lines.find((line) => line.event === 'token')).toMatchObject({
      outcome: 'success',
      client_id: caller.id,
    });
    expect(lines.map((line) => line.req_id)).toEqual(lines.map(() => id));

    // A second request's lines carry its own id, never the first one's.
    const middle = server.logs.lines.length;
    const other = await request(server.url)
      .post('/token')
      .set('Authorization', basicAuth(caller.id, 'wrong'))
      .type('form')
      .send({ grant_type: 'client_credentials', resource: API });
    expect(other.status).toBe(401);
    const otherId = other.headers['x-request-id'] as string;
    expect(otherId).not.toBe(id);
    const otherLines = server.logs.records().slice(middle);
    expect(otherLines.find((line) => line.event === 'token')).toMatchObject({ outcome: 'failure' });
    expect(otherLines.map((line) => line.req_id)).toEqual(otherLines.map(() => otherId));
  });
});

describe('metrics', () => {
  async function scrape(): Promise<string> {
    const res = await request(server.url).get('/metrics');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    return res.text;
  }
  const value = (text: string, series: string) => {
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? undefined : Number(line.slice(series.length + 1));
  };

  it('counts token requests by authenticated client, outcome and error, and never labels a claimed id', async () => {
    const start = await scrape();
    const ok = `mayfly_token_requests_total{client_id="${caller.id}",outcome="success",error=""}`;
    const refused =
      'mayfly_token_requests_total{client_id="unauthenticated",outcome="failure",error="invalid_client"}';
    const okBefore = value(start, ok) ?? 0;
    const refusedBefore = value(start, refused) ?? 0;

    const token = await requestToken(server.url, {
      clientId: caller.id,
      secret: caller.secret,
      resource: API,
      key,
    });
    expect(token.status).toBe(200);
    const claimed = 'made-up-client-id-from-an-attacker';
    const bad = await requestToken(server.url, { clientId: claimed, secret: 'nope', resource: API, key });
    expect(bad.status).toBe(401);
    const introspected = await request(server.url)
      .post('/token/introspection')
      .set('Authorization', basicAuth(resourceServer.id, resourceServer.secret))
      .type('form')
      .send({ token: token.body.access_token as string });
    expect(introspected.body.active).toBe(true);

    const text = await scrape();
    expect(value(text, ok)).toBe(okBefore + 1);
    expect(value(text, refused)).toBe(refusedBefore + 1);
    expect(text).not.toContain(claimed);
    expect(text).not.toContain(token.body.access_token as string);
    expect(text).not.toContain(caller.secret);
    expect(
      value(text, 'mayfly_introspections_total{outcome="success",active="true"}'),
    ).toBeGreaterThanOrEqual(1);
    expect(
      value(text, 'mayfly_http_requests_total{endpoint="token",method="POST",status="2xx"}'),
    ).toBeGreaterThanOrEqual(1);
    expect(
      value(text, 'mayfly_http_requests_total{endpoint="token",method="POST",status="4xx"}'),
    ).toBeGreaterThanOrEqual(1);
    expect(
      value(text, 'mayfly_http_request_duration_seconds_count{endpoint="token"}'),
    ).toBeGreaterThanOrEqual(2);
    expect(value(text, 'mayfly_signing_keys{phase="active"}')).toBe(1);
    const kid = server.app.keys.current.signer.kid;
    expect(value(text, `mayfly_signing_key_age_seconds{kid="${kid}",phase="active"}`)).toBeGreaterThanOrEqual(
      0,
    );
    expect(text).toMatch(/^mayfly_process_resident_memory_bytes \d+/m);
  });

  it('names unknown paths "other", so scanning for paths cannot grow the label set', async () => {
    for (const path of ['/a', '/b/c', '/wp-login.php']) await request(server.url).get(path);
    const text = await scrape();
    expect(text).not.toContain('wp-login');
    expect(
      value(text, 'mayfly_http_requests_total{endpoint="other",method="GET",status="4xx"}'),
    ).toBeGreaterThanOrEqual(3);
  });

  it('with MAYFLY_METRICS_PORT, serves /metrics only on that port', async () => {
    const separate = await startTestServer({ env: { MAYFLY_METRICS_PORT: '1' } });
    const metricsServer = await startMetricsServer(separate.app, 0);
    try {
      expect((await request(separate.url).get('/metrics')).status).toBe(404);
      const res = await request(metricsServer.url).get('/metrics');
      expect(res.status).toBe(200);
      expect(res.text).toContain('mayfly_http_requests_total');
      expect((await request(metricsServer.url).get('/token')).status).toBe(404);
    } finally {
      await metricsServer.stop(100);
      await separate.close();
    }
  });

  it('refuses a metrics port equal to the main port', () => {
    expect(() => loadConfig({ PORT: '4000', MAYFLY_METRICS_PORT: '4000' })).toThrow(
      /MAYFLY_METRICS_PORT: expected a port other than PORT \(4000\)/,
    );
  });
});

describe('readable log lines', () => {
  it('prints time, level, component, message and the fields, with the request id last', async () => {
    const out = new PassThrough();
    let text = '';
    out.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
    const stream = prettyLines(out);
    stream.write(
      `${JSON.stringify({
        level: 'warn',
        time: '2026-11-27T12:00:01.234Z',
        service: 'mayfly',
        component: 'audit',
        req_id: 'r-1',
        event: 'token',
        outcome: 'failure',
        scopes: ['read'],
        msg: 'token failure',
      })}\nnot json\n${JSON.stringify({ level: 'info', msg: 'token', client_id: 'x\n12:00:00.000 INFO  forged' })}\n`,
    );
    await new Promise((resolve) => setImmediate(resolve));
    expect(text).toBe(
      '12:00:01.234 WARN  [audit] token failure  event=token outcome=failure scopes=["read"] req_id=r-1\nnot json\n' +
        // A value with a line break is quoted: a caller cannot forge a line of its own.
        ' INFO  token  client_id="x\\n12:00:00.000 INFO  forged"\n',
    );
  });
});
