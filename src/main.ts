import { ConfigError, loadConfig } from './config/config.ts';
import { createAppContext } from './context.ts';
import { startServer } from './server.ts';

/** Process entry: config → context → server. The only place that exits the process. */
async function main(): Promise<void> {
  const config = loadConfig();
  const app = await createAppContext(config);
  const running = await startServer(app);
  app.log.info(
    {
      issuer: config.issuer,
      address: running.url,
      database:
        config.database.kind === 'postgres' ? 'postgres' : `pglite:${config.database.dataDir ?? 'memory'}`,
    },
    'mayfly listening',
  );

  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) {
      app.log.warn({ signal }, 'second signal: exiting at once');
      process.exit(1);
    }
    stopping = true;
    app.log.info({ signal }, 'shutting down');
    running
      .stop()
      .then(() => app.close())
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
}

main().catch((error: unknown) => {
  if (error instanceof ConfigError) {
    process.stderr.write(`mayfly: ${error.message}\n`);
  } else {
    process.stderr.write(
      `mayfly: start-up failed: ${error instanceof Error ? error.message : String(error)}\n`,
    );
  }
  process.exit(1);
});
