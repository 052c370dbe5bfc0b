import type { Context, Next } from 'koa';
import { sql } from 'kysely';

import type { Db } from '../db/connect.ts';

export interface ReadinessSources {
  db: Db;
  /** Migrations this build ships; all must be applied. */
  migrations: readonly string[];
  /** The key signing now, and why signing is halted if it is. */
  signing(): { signer: { kid: string }; signingProblem: string | undefined };
  /** True once shutdown began: the load balancer should stop sending requests. */
  draining(): boolean;
}

interface Check {
  status: 'ok' | 'failing';
  [detail: string]: unknown;
}

export interface Readiness {
  status: 'ready' | 'not_ready';
  checks: Record<'database' | 'migrations' | 'signing_key', Check> & { shutdown?: Check };
}

const DATABASE_TIMEOUT_MS = 2_000;

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`no answer within ${ms} ms`));
    }, ms);
    promise.then(resolve, reject).finally(() => {
      clearTimeout(timer);
    });
  });
}

/**
 * Whether this instance can serve: the database answers, every migration of this build is applied, a key is
 * signing, and it is not shutting down. Each check says why it fails, never with a secret or a connection string.
 */
export async function checkReadiness(sources: ReadinessSources): Promise<Readiness> {
  let database: Check;
  let migrations: Check;
  const started = performance.now();
  try {
    const applied = await withTimeout(
      sql<{ name: string }>`select name from kysely_migration`.execute(sources.db),
      DATABASE_TIMEOUT_MS,
    );
    database = { status: 'ok', latency_ms: Math.round(performance.now() - started) };
    const names = new Set(applied.rows.map((row) => row.name));
    const pending = sources.migrations.filter((name) => !names.has(name));
    migrations = pending.length ? { status: 'failing', pending } : { status: 'ok' };
  } catch (error) {
    database = {
      status: 'failing',
      reason: error instanceof Error && /within/.test(error.message) ? error.message : 'unreachable',
    };
    migrations = { status: 'failing', reason: 'database unreachable' };
  }
  const { signer, signingProblem } = sources.signing();
  const checks: Readiness['checks'] = {
    database,
    migrations,
    signing_key: signingProblem
      ? { status: 'failing', reason: 'no usable signing key' }
      : { status: 'ok', kid: signer.kid },
    ...(sources.draining() ? { shutdown: { status: 'failing' as const, reason: 'shutting down' } } : {}),
  };
  const ready = Object.values(checks).every((check) => check.status === 'ok');
  return { status: ready ? 'ready' : 'not_ready', checks };
}

/**
 * `/healthz`: the process answers (liveness). `/readyz`: it can serve (readiness), 503 when not. Never
 * rate-limited, never cached.
 */
export function serveHealth(readiness: () => Promise<Readiness>) {
  return async function health(ctx: Context, next: Next): Promise<void> {
    if (ctx.path !== '/healthz' && ctx.path !== '/readyz') {
      await next();
      return;
    }
    ctx.set('Cache-Control', 'no-store');
    if (ctx.path === '/healthz') {
      ctx.body = { status: 'ok' };
      return;
    }
    const result = await readiness();
    ctx.status = result.status === 'ready' ? 200 : 503;
    ctx.body = result;
  };
}
