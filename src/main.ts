import cluster from 'node:cluster';
import { realpathSync } from 'node:fs';

import { ConfigError, loadConfig } from './config/config.ts';
import { createAppContext } from './context.ts';
import { startMetricsServer, startServer } from './server.ts';
import { LISTENING_MESSAGE, runPrimary, SHUTDOWN_MESSAGE } from './workers.ts';

/**
 * Runs Mayfly until SIGTERM or SIGINT: config → context → server. `npm start` and `mayfly serve` both come here,
 * the only place that exits the process.
 */
export async function serve(): Promise<void> {
  // Every file the server creates (the embedded database, key material, credentials) is its user's alone.
  process.umask(0o077);
  try {
    await startMayfly();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`mayfly: ${error.message}\n`);
    } else {
      process.stderr.write(
        `mayfly: start-up failed: ${error instanceof Error ? error.message : String(error)}\n`,
      );
    }
    process.exit(1);
  }
}

async function startMayfly(): Promise<void> {
  const config = loadConfig();
  if (config.workers > 1 && cluster.isPrimary) {
    runPrimary(config);
    return;
  }
  // A drain request that arrives while this worker is still starting is honoured once it listens.
  const early = { shutdownRequested: false };
  const onEarlyMessage = (message: unknown) => {
    if (message === SHUTDOWN_MESSAGE) early.shutdownRequested = true;
  };
  process.on('message', onEarlyMessage);
  const app = await createAppContext(config);
  const running = await startServer(app);
  const metricsServer =
    config.metricsPort === undefined ? undefined : await startMetricsServer(app, config.metricsPort);
  app.log.info(
    {
      issuer: config.issuer,
      address: running.url,
      ...(metricsServer ? { metrics: `${metricsServer.url}/metrics` } : {}),
      database:
        config.database.kind === 'postgres' ? 'postgres' : `pglite:${config.database.dataDir ?? 'memory'}`,
      ...(cluster.isWorker ? { worker: cluster.worker?.id, pid: process.pid } : {}),
    },
    'mayfly listening',
  );

  let stopping = false;
  const shutdown = (signal: string) => {
    // Under a primary, a terminal's Ctrl-C reaches every worker as well as the primary's request: one suffices.
    if (stopping && cluster.isWorker) return;
    if (stopping) {
      app.log.warn({ signal }, 'second signal: exiting at once');
      process.exit(1);
    }
    stopping = true;
    // Readiness turns false first, so a load balancer polling /readyz stops sending new requests.
    app.draining = true;
    app.log.info({ signal, timeout_s: config.shutdownTimeout }, 'shutting down');
    running
      .stop(config.shutdownTimeout * 1000)
      .then(() => metricsServer?.stop(1_000))
      .then(() => app.close())
      .then(() => {
        app.log.info('stopped');
      })
      .then(() => process.exit(0))
      .catch((error: unknown) => {
        app.log.error({ err: error }, 'shutdown failed');
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => {
    shutdown('SIGTERM');
  });
  process.on('SIGINT', () => {
    shutdown('SIGINT');
  });
  process.off('message', onEarlyMessage);
  process.on('message', (message) => {
    if (message === SHUTDOWN_MESSAGE) shutdown('primary');
  });
  if (cluster.isWorker) process.send?.(LISTENING_MESSAGE);
  if (early.shutdownRequested) shutdown('primary');
}

// Started directly (npm start, the container image) rather than imported by `mayfly serve`.
if (process.argv[1] !== undefined && realpathSync(process.argv[1]) === import.meta.filename) {
  await serve();
}
