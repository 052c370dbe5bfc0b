import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import { createClient } from '../../src/clients/client.service.ts';
import type { Client, ClientInput } from '../../src/clients/client.schemas.ts';
import { createResource } from '../../src/clients/resource.service.ts';
import type { Resource, ResourceInput } from '../../src/clients/resource.schemas.ts';
import type { Clock } from '../../src/clock.ts';
import { loadConfig } from '../../src/config/config.ts';
import { createAppContext, type AppContext } from '../../src/context.ts';
import { answerUnparsableRequests, createApp } from '../../src/server.ts';
import { createTestDatabase, type TestDatabase } from './database.ts';
import { CapturedLogs } from './logs.ts';

export interface TestServer {
  /** Also the issuer: requests and DPoP `htu` values use it verbatim. */
  url: string;
  app: AppContext;
  logs: CapturedLogs;
  database: TestDatabase;
  /** Keys folder of this server (a fresh temporary folder): the bootstrap writes admin.json here. */
  keysDir: string;
  createResource(input: ResourceInput): Promise<Resource>;
  /** Through the client service, as an admin would; the client keyed `id` for brevity in tests. */
  createClient(input: ClientInput): Promise<CreatedClient>;
  /** Stops the server; drops the database unless it was passed in. */
  close(): Promise<void>;
}

export interface CreatedClient {
  client: Client & { id: string };
  clientSecret: string | undefined;
}

/** Changes the tests make directly through the services are attributed to this actor. */
export const TEST_ACTOR = { id: 'system:test' };

export interface TestServerOptions {
  env?: Record<string, string>;
  database?: TestDatabase;
  clock?: Clock;
  /** Listen on this port (a restarted server keeps its issuer); default: any free port. */
  port?: number;
}

/**
 * A real Mayfly over a real socket on 127.0.0.1. The port is bound first so the issuer (and so every DPoP
 * `htu`) can name it.
 */
export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const database = options.database ?? (await createTestDatabase());
  const server: Server = createServer();
  server.listen(options.port ?? 0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;
  const keysDir = options.env?.MAYFLY_KEYS_DIR ?? (await mkdtemp(join(tmpdir(), 'mayfly-keys-')));
  const config = loadConfig({
    MAYFLY_KEYS_DIR: keysDir,
    PORT: String(port),
    HOST: '127.0.0.1',
    MAYFLY_ISSUER: url,
    MAYFLY_DPOP_NONCE_SECRET: randomBytes(32).toString('base64url'),
    MAYFLY_KEK: database.kek,
    LOG_LEVEL: 'info',
    ...(database.config.kind === 'postgres' ? { DATABASE_URL: database.config.url } : {}),
    ...options.env,
  });
  const logs = new CapturedLogs();
  const app = await createAppContext(config, {
    database: database.handle,
    logDestination: logs,
    jobs: false,
    ...(options.clock ? { clock: options.clock } : {}),
  });
  const handle = createApp(app).callback();
  answerUnparsableRequests(server);
  server.on('request', (req, res) => {
    void handle(req, res);
  });
  return {
    url,
    app,
    logs,
    database,
    keysDir,
    createResource: (input) => createResource(app.admin, TEST_ACTOR, input),
    async createClient(input) {
      const { client_secret: clientSecret, ...client } = await createClient(app.admin, TEST_ACTOR, input);
      return { client: { ...client, id: client.client_id }, clientSecret };
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) =>
        server.close(() => {
          resolve();
        }),
      );
      await app.close();
      if (!options.database) await database.drop();
      if (!options.env?.MAYFLY_KEYS_DIR) await rm(keysDir, { recursive: true, force: true });
    },
  };
}
