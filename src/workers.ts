import cluster, { type Worker } from 'node:cluster';

import type { Config } from './config/config.ts';
import { createLogger } from './observability/logger.ts';

/** Sent by the primary to ask a worker to drain and exit, as SIGTERM would. */
export const SHUTDOWN_MESSAGE = 'mayfly:shutdown';

const RESTART_DELAY_MS = 1_000;

/**
 * MAYFLY_WORKERS > 1: this process forks that many workers, which share the listening port (node:cluster) and
 * each run a whole server; all state is in Postgres. The primary restarts a worker that dies, and on SIGTERM or
 * SIGINT asks every worker to drain, then exits 0 once they all did.
 */
export function runPrimary(config: Config): void {
  const log = createLogger(config.logLevel, undefined, config.logFormat).child({ component: 'primary' });
  let stopping = false;
  const fork = (): Worker => cluster.fork();
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) {
      if (Object.keys(cluster.workers ?? {}).length === 0) {
        log.info('every worker stopped');
        process.exit(0);
      }
      return;
    }
    log.error({ worker: worker.id, code, signal }, 'worker died; starting another');
    setTimeout(fork, RESTART_DELAY_MS).unref();
  });
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping the workers');
    for (const worker of Object.values(cluster.workers ?? {})) worker?.send(SHUTDOWN_MESSAGE);
    // A worker that does not exit within its own grace period plus a margin is killed.
    setTimeout(
      () => {
        for (const worker of Object.values(cluster.workers ?? {})) worker?.kill('SIGKILL');
        process.exit(1);
      },
      (config.shutdownTimeout + 10) * 1000,
    ).unref();
  };
  process.on('SIGTERM', () => {
    shutdown('SIGTERM');
  });
  process.on('SIGINT', () => {
    shutdown('SIGINT');
  });
  log.info({ workers: config.workers }, 'starting workers');
  for (let i = 0; i < config.workers; i += 1) fork();
}
