import type { Context, Next } from 'koa';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

import type { DatabaseHandle } from '../db/connect.ts';
import { phaseAt, type KeyState } from '../keys/lifecycle.ts';

/**
 * Prometheus metrics, one registry per app context. Every label takes a bounded set of values: endpoints are
 * named from a fixed list, error codes are OAuth's, and a client appears only once it authenticated (a
 * registered client), never as whatever id a failed request claimed. No token, jti or key material.
 */
export interface Metrics {
  registry: Registry;
  /** Koa middleware: counts and times every request by endpoint and outcome. */
  observeRequests(): (ctx: Context, next: Next) => Promise<void>;
  tokenRequest(client: string | undefined, outcome: 'success' | 'failure', error: string | undefined): void;
  introspection(outcome: 'success' | 'failure', active: boolean): void;
  purge(
    outcome: 'success' | 'failure',
    rows: { payloads: number; replayMarkers: number; revokedTokens: number; rateLimitCounters: number },
  ): void;
  /** A request refused by a rate limit or an authentication-failure block. */
  rateLimited(limit: string): void;
  /** A client id blocked from an address after repeated failed authentication. */
  authFailureBlock(): void;
  /** An anomaly raised by the detector, by kind. */
  anomaly(kind: string): void;
  /** Reads pool usage and key phases at scrape time. */
  watch(sources: { database: DatabaseHandle; keys: () => readonly KeyState[] }): void;
}

const ENDPOINTS: readonly [string, (path: string) => boolean][] = [
  ['token', (path) => path === '/token'],
  ['introspection', (path) => path === '/token/introspection'],
  ['revocation', (path) => path === '/token/revocation'],
  ['jwks', (path) => path === '/jwks'],
  ['metadata', (path) => path.startsWith('/.well-known/')],
  ['admin', (path) => path.startsWith('/admin/')],
  ['health', (path) => path === '/healthz' || path === '/readyz'],
  ['metrics', (path) => path === '/metrics'],
];

export function endpointOf(path: string): string {
  return ENDPOINTS.find(([, matches]) => matches(path))?.[0] ?? 'other';
}

/** OAuth error codes are short snake_case words; anything else is not used as a label value. */
const safeCode = (code: string | undefined) => (code && /^[a-z_]{1,40}$/.test(code) ? code : 'other');

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'mayfly_' });

  const requests = new Counter({
    name: 'mayfly_http_requests_total',
    help: 'HTTP requests by endpoint, method and status class.',
    labelNames: ['endpoint', 'method', 'status'] as const,
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'mayfly_http_request_duration_seconds',
    help: 'Time to answer a request, by endpoint.',
    labelNames: ['endpoint'] as const,
    buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const tokens = new Counter({
    name: 'mayfly_token_requests_total',
    help: 'Token requests by client (authenticated clients only), outcome and OAuth error code.',
    labelNames: ['client_id', 'outcome', 'error'] as const,
    registers: [registry],
  });
  const introspections = new Counter({
    name: 'mayfly_introspections_total',
    help: 'Introspection requests by outcome and whether the token was reported active.',
    labelNames: ['outcome', 'active'] as const,
    registers: [registry],
  });
  const queryErrors = new Counter({
    name: 'mayfly_db_query_errors_total',
    help: 'Database queries that failed (including connection failures).',
    registers: [registry],
  });
  const purges = new Counter({
    name: 'mayfly_purge_runs_total',
    help: 'Runs of the purge of expired rows, by outcome.',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  const purged = new Counter({
    name: 'mayfly_purged_rows_total',
    help: 'Expired rows deleted by the purge, by table.',
    labelNames: ['table'] as const,
    registers: [registry],
  });

  const limited = new Counter({
    name: 'mayfly_rate_limited_total',
    help: 'Requests refused by a rate limit, by limit (auth-failures: a blocked client id and address).',
    labelNames: ['limit'] as const,
    registers: [registry],
  });
  const blocks = new Counter({
    name: 'mayfly_auth_failure_blocks_total',
    help: 'Client ids blocked from an address after repeated failed authentication.',
    registers: [registry],
  });

  const anomalies = new Counter({
    name: 'mayfly_anomalies_total',
    help: 'Anomalies raised by the per-client detector, by kind.',
    labelNames: ['kind'] as const,
    registers: [registry],
  });

  return {
    registry,
    observeRequests() {
      return async function observe(ctx: Context, next: Next): Promise<void> {
        const started = process.hrtime.bigint();
        try {
          await next();
        } finally {
          const endpoint = endpointOf(ctx.path);
          const seconds = Number(process.hrtime.bigint() - started) / 1e9;
          latency.observe({ endpoint }, seconds);
          const method = ['GET', 'HEAD', 'POST', 'PATCH', 'DELETE', 'PUT'].includes(ctx.method)
            ? ctx.method
            : 'other';
          requests.inc({ endpoint, method, status: `${String(ctx.status).slice(0, 1)}xx` });
        }
      };
    },
    tokenRequest(client, outcome, error) {
      tokens.inc({
        client_id: client ?? 'unauthenticated',
        outcome,
        error: outcome === 'success' ? '' : safeCode(error),
      });
    },
    introspection(outcome, active) {
      introspections.inc({ outcome, active: String(active) });
    },
    rateLimited(limit) {
      limited.inc({ limit });
    },
    authFailureBlock() {
      blocks.inc();
    },
    anomaly(kind) {
      anomalies.inc({ kind: safeCode(kind) });
    },
    purge(outcome, rows) {
      purges.inc({ outcome });
      if (rows.payloads) purged.inc({ table: 'oidc_payload' }, rows.payloads);
      if (rows.replayMarkers) purged.inc({ table: 'replay_marker' }, rows.replayMarkers);
      if (rows.revokedTokens) purged.inc({ table: 'revoked_token' }, rows.revokedTokens);
      if (rows.rateLimitCounters) purged.inc({ table: 'rate_limit' }, rows.rateLimitCounters);
    },
    watch({ database, keys }) {
      database.queryErrors.listener = () => {
        queryErrors.inc();
      };
      new Gauge({
        name: 'mayfly_db_pool_connections',
        help: 'Postgres pool connections by state (total, idle, waiting for a connection).',
        labelNames: ['state'] as const,
        registers: [registry],
        collect() {
          const stats = database.poolStats();
          if (!stats) return;
          this.set({ state: 'total' }, stats.total);
          this.set({ state: 'idle' }, stats.idle);
          this.set({ state: 'waiting' }, stats.waiting);
        },
      });
      // From the keys the ring last read: a scrape costs no database round trip.
      const phased = () => {
        const states = keys();
        const now = new Date();
        return states.map((key) => ({ key, phase: phaseAt(states, key, now) }));
      };
      new Gauge({
        name: 'mayfly_signing_keys',
        help: 'Signing keys by phase.',
        labelNames: ['phase'] as const,
        registers: [registry],
        collect() {
          const listed = phased();
          for (const phase of ['published', 'active', 'retired', 'revoked'] as const) {
            this.set({ phase }, listed.filter((entry) => entry.phase === phase).length);
          }
        },
      });
      new Gauge({
        name: 'mayfly_signing_key_age_seconds',
        help: 'Seconds since each signing key was published, by kid and phase (a handful of keys at most).',
        labelNames: ['kid', 'phase'] as const,
        registers: [registry],
        collect() {
          this.reset();
          const now = Date.now();
          for (const { key, phase } of phased()) {
            this.set({ kid: key.kid, phase }, (now - key.publishedAt.getTime()) / 1000);
          }
        },
      });
    },
  };
}

/** `GET /metrics` in the Prometheus text format. */
export function serveMetrics(metrics: Metrics) {
  return async function metricsEndpoint(ctx: Context, next: Next): Promise<void> {
    if (ctx.path !== '/metrics') {
      await next();
      return;
    }
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') {
      ctx.status = 405;
      ctx.set('Allow', 'GET, HEAD');
      return;
    }
    ctx.set('Cache-Control', 'no-store');
    ctx.type = metrics.registry.contentType;
    ctx.body = await metrics.registry.metrics();
  };
}
