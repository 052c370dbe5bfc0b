import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { setClientEnabled } from '../../src/clients/client.service.ts';
import type { Clock } from '../../src/clock.ts';
import { startCliServer, type CliServer } from '../cli/helpers.ts';
import { createProof, generateDpopKey, type DpopKey } from '../support/dpop.ts';
import { basicAuth } from '../support/oauth.ts';
import { TEST_ACTOR, type TestServer } from '../support/server.ts';

const API = 'https://api.example.com';
/** A resource no client of this file holds a grant on: asking for it is the client's own denial. */
const UNGRANTED = 'https://ungranted.example.com';

/**
 * Moved forward by the test: windows and baselines are learnt without waiting. Frozen (`frozenAt`) where a count
 * per window is asserted: on a loaded machine, real time passing mid-window would move a token into the next one.
 */
const clock: Clock & { offsetMs: number; frozenAt: number | undefined } = {
  offsetMs: 0,
  frozenAt: undefined,
  now: () => new Date((clock.frozenAt ?? Date.now()) + clock.offsetMs),
};

interface Credentials {
  id: string;
  secret: string;
}

interface AnomalyPage {
  items: {
    kind: string;
    client_id: string;
    observed: number;
    threshold: number;
    baseline: number | null;
    window_seconds: number;
    description: string;
  }[];
  next_cursor: string | null;
}

let cli: CliServer;
let server: TestServer;
let key: DpopKey;

beforeAll(async () => {
  cli = await startCliServer({
    clock,
    env: {
      MAYFLY_TRUST_PROXY: 'true',
      MAYFLY_ANOMALY_WINDOW: '10',
      MAYFLY_ANOMALY_MIN_REQUESTS: '4',
      MAYFLY_ANOMALY_DENIAL_RATIO: '0.5',
      MAYFLY_ANOMALY_MAX_ADDRESSES: '2',
      MAYFLY_ANOMALY_MAX_DPOP_KEYS: '2',
      MAYFLY_ANOMALY_INACTIVE_ATTEMPTS: '3',
      MAYFLY_ANOMALY_BASELINE_WINDOWS: '2',
      MAYFLY_ANOMALY_SPIKE_FACTOR: '4',
      MAYFLY_ANOMALY_MIN_ISSUED: '8',
    },
  });
  server = cli.server;
  await server.createResource({ identifier: API, scopes: ['read'] });
  key = await generateDpopKey();
});
afterAll(() => cli.close());

async function client(name: string): Promise<Credentials> {
  const { client, clientSecret } = await server.createClient({
    name,
    grants: [{ resource: API, scopes: ['read'] }],
  });
  return { id: client.id, secret: clientSecret ?? '' };
}

async function token(as: Credentials, options: { address?: string; key?: DpopKey; resource?: string } = {}) {
  return request(server.url)
    .post('/token')
    .type('form')
    .set('Authorization', basicAuth(as.id, as.secret))
    .set('X-Forwarded-For', options.address ?? '198.51.100.1')
    .set('DPoP', await createProof(options.key ?? key, { htu: `${server.url}/token` }))
    .send({ grant_type: 'client_credentials', resource: options.resource ?? API });
}

const anomaliesOf = (clientId: string) =>
  cli.json<AnomalyPage>(['anomalies', '--client', clientId]).then((page) => page.items);

/** The trail is written off the request path: wait for the row. */
async function eventually<T>(read: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
  for (let i = 0; i < 50; i++) {
    const value = await read();
    if (done(value)) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return read();
}

describe('anomaly detection at the token endpoint', () => {
  it('flags a spike of denials, in the audit log, the metrics, the admin API and the CLI', async () => {
    const victim = await client('guessed');
    for (let i = 0; i < 4; i++) expect((await token(victim)).status).toBe(200);
    // Requests that do not authenticate as the client are not its denials (anyone may name any client).
    for (let i = 0; i < 6; i++) expect((await token({ ...victim, secret: 'wrong' })).status).toBe(401);
    // 3 of 7 denied: below half.
    for (let i = 0; i < 3; i++) expect((await token(victim, { resource: UNGRANTED })).status).toBe(400);
    expect(server.logs.audit('anomaly').filter((l) => l.client_id === victim.id)).toEqual([]);
    expect((await token(victim, { resource: UNGRANTED })).status).toBe(400);

    const lines = server.logs.audit('anomaly').filter((l) => l.client_id === victim.id);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      kind: 'denial_ratio',
      observed: 0.5,
      threshold: 0.5,
      window_seconds: 10,
    });
    const metrics = await server.app.metrics.registry.getSingleMetricAsString('mayfly_anomalies_total');
    expect(metrics).toMatch(/mayfly_anomalies_total\{kind="denial_ratio"\} [1-9]/);

    const stored = await eventually(
      () => anomaliesOf(victim.id),
      (items) => items.length > 0,
    );
    expect(stored).toEqual([
      expect.objectContaining({ kind: 'denial_ratio', client_id: victim.id, observed: 0.5, baseline: null }),
    ]);
    const table = await cli.run(['anomalies', '--kind', 'denial_ratio']);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toContain(victim.id);
    expect(table.stdout).toMatch(/KIND\s+CLIENT/);
    // A cooldown: the same kind is not raised again at once.
    expect((await token(victim, { resource: UNGRANTED })).status).toBe(400);
    expect(server.logs.audit('anomaly').filter((l) => l.client_id === victim.id)).toHaveLength(1);
  });

  it('flags a client used from too many addresses and too many DPoP keys', async () => {
    const spread = await client('spread');
    for (const address of ['203.0.113.1', '203.0.113.2']) {
      expect((await token(spread, { address })).status).toBe(200);
    }
    expect(server.logs.audit('anomaly').filter((l) => l.client_id === spread.id)).toEqual([]);
    expect((await token(spread, { address: '203.0.113.3' })).status).toBe(200);

    const keys = await Promise.all([generateDpopKey(), generateDpopKey()]);
    for (const other of keys) expect((await token(spread, { key: other })).status).toBe(200);

    const kinds = server.logs
      .audit('anomaly')
      .filter((l) => l.client_id === spread.id)
      .map((l) => l.kind);
    expect(kinds).toEqual(['many_addresses', 'many_dpop_keys']);
    const description = String(server.logs.audit('anomaly').at(-1)?.description);
    // Counts only: no address and no key thumbprint in what people read.
    expect(description).not.toMatch(/203\.0\.113/);
    expect(description).not.toContain(key.thumbprint);
  });

  it('flags a disabled client that keeps trying', async () => {
    const retired = await client('retired');
    expect((await token(retired)).status).toBe(200);
    await setClientEnabled(server.app.admin, TEST_ACTOR, retired.id, false);
    for (let i = 0; i < 3; i++) expect((await token(retired)).body.error).toBe('invalid_client');
    expect(server.logs.audit('anomaly').filter((l) => l.client_id === retired.id)).toEqual([
      expect.objectContaining({ kind: 'inactive_client', observed: 3, threshold: 3 }),
    ]);
  });

  it("flags issuance far above the client's own baseline, not its usual rate", async () => {
    const steady = await client('steady');
    clock.frozenAt = Date.now();
    try {
      // Three windows of two tokens each teach the baseline (one window is always held back).
      for (let window = 0; window < 4; window++) {
        for (let i = 0; i < 2; i++) expect((await token(steady)).status).toBe(200);
        clock.offsetMs += 10_000;
      }
      for (let i = 0; i < 7; i++) expect((await token(steady)).status).toBe(200);
      expect(server.logs.audit('anomaly').filter((l) => l.client_id === steady.id)).toEqual([]);
      expect((await token(steady)).status).toBe(200);
      expect(server.logs.audit('anomaly').filter((l) => l.client_id === steady.id)).toEqual([
        expect.objectContaining({ kind: 'issuance_spike', observed: 8, threshold: 8, baseline: 2 }),
      ]);
    } finally {
      // Real time resumes: the clock only ever moves forward.
      clock.frozenAt = undefined;
    }
  });

  it('does not track client ids that do not exist', async () => {
    for (let i = 0; i < 6; i++) {
      expect((await token({ id: `ghost-${i % 2}`, secret: 'x' })).body.error).toBe('invalid_client');
    }
    expect(server.logs.audit('anomaly').filter((l) => String(l.client_id).startsWith('ghost-'))).toEqual([]);
  });

  it('refuses unknown kinds and bad filters with stable errors', async () => {
    const result = await cli.run(['anomalies', '--kind', 'nope']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--kind expects denial_ratio or');
    const api = await cli.run(['anomalies', '--since', 'yesterday']);
    expect(api.code).toBe(2);
  });
});
