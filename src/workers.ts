import cluster from 'node:cluster';

import type { Config } from './config/config.ts';
import { createLogger } from './observability/logger.ts';

/** Sent by the primary to ask a worker to drain and exit, as SIGTERM would. */
export const SHUTDOWN_MESSAGE = 'mayfly:shutdown';

/** Sent by a worker once it listens: it started well. */
export const LISTENING_MESSAGE = 'mayfly:listening';

const RESTART_DELAY_MS = 500;
const MAX_RESTART_DELAY_MS = 30_000;
const MAX_FAILED_STARTS = 8;

/**
 * MAYFLY_WORKERS > 1: this process forks that many workers, which share the listening port (node:cluster) and
 * each run a whole server; all state is in Postgres. The primary restarts a worker that dies (with growing delays
 * while workers fail to start, giving up with exit 1 after a few), and on SIGTERM or SIGINT asks every worker to
 * drain, then exits 0 once they all did (1 if one of them failed to).
 */
export function runPrimary(config: Config): void {
  const log = createLogger(config.logLevel, undefined, config.logFormat).child({ component: 'primary' });
  let stopping = false;
  let failedWorkers = 0;
  // Consecutive deaths of workers that never started listening: a broken start (a wrong KEK, no database) is
  // retried with growing delays, then the primary gives up so that its own supervisor sees the failure.
  let failedStarts = 0;
  const listening = new Set<number>();
  const fork = (): void => {
    if (!stopping) cluster.fork();
  };
  cluster.on('message', (worker, message) => {
    if (message === LISTENING_MESSAGE) {
      listening.add(worker.id);
      failedStarts = 0;
    }
  });
  cluster.on('exit', (worker, code, signal) => {
    const started = listening.delete(worker.id);
    if (stopping) {
      if (code !== 0) failedWorkers += 1;
      if (Object.keys(cluster.workers ?? {}).length === 0) {
        log.info({ failed: failedWorkers }, 'every worker stopped');
        process.exit(failedWorkers ? 1 : 0);
      }
      return;
    }
    if (!started) failedStarts += 1;
    if (failedStarts > MAX_FAILED_STARTS) {
      log.fatal(
        { worker: worker.id, code, signal },
        `workers failed to start ${failedStarts} times in a row; giving up`,
      );
      stopping = true;
      for (const other of Object.values(cluster.workers ?? {})) other?.kill('SIGTERM');
      process.exitCode = 1;
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(1);
      return;
    }
    const delay = Math.min(RESTART_DELAY_MS * 2 ** failedStarts, MAX_RESTART_DELAY_MS);
    log.error({ worker: worker.id, code, signal, restart_in_ms: delay }, 'worker died; starting another');
    setTimeout(fork, delay);
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
