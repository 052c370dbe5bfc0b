import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { access, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { CLI, findFreePort, runMayfly } from './helpers.ts';

let dir: string;
const databases: TestDatabase[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mayfly-serve-'));
});
afterAll(async () => {
  await Promise.all(databases.map((database) => database.drop()));
  await rm(dir, { recursive: true, force: true });
});

/**
 * A fresh, empty database for one server process: a new Postgres database when the suite runs with DATABASE_URL,
 * else PGlite in memory (PGlite's `memory://`, much quicker to create than a folder).
 */
async function serverEnvironment(name: string): Promise<Record<string, string>> {
  const shared = { MAYFLY_KEYS_DIR: join(dir, name, 'keys'), HOST: '127.0.0.1', LOG_LEVEL: 'info' };
  if (!process.env.DATABASE_URL) return { ...shared, MAYFLY_DATA_DIR: 'memory://' };
  const database = await createTestDatabase();
  databases.push(database);
  return {
    ...shared,
    DATABASE_URL: database.config.kind === 'postgres' ? database.config.url : '',
    MAYFLY_DPOP_NONCE_SECRET: randomBytes(32).toString('base64url'),
    MAYFLY_KEK: database.kek,
  };
}

// Each test starts its own database and processes, so they may run side by side.
describe.concurrent('mayfly migrate and mayfly serve', () => {
  it('migrate applies the pending migrations and says which', { timeout: 60_000 }, async () => {
    // Run from the temporary folder: whatever a process makes relative to its working directory stays there.
    const migrated = await runMayfly(['migrate'], { env: await serverEnvironment('migrate'), cwd: dir });
    expect(migrated.stderr).toBe('');
    expect(migrated.code).toBe(0);
    expect(migrated.stdout).toMatch(/^(applied \d+-[\w-]+\n)+$/);
  });

  it(
    'serve runs the server, writes the admin credentials on first start and exits 0 on SIGTERM',
    { timeout: 60_000 },
    async () => {
      const env = await serverEnvironment('serve');
      const port = await findFreePort();
      const child = spawn(process.execPath, [CLI, 'serve'], {
        cwd: dir,
        env: {
          PATH: process.env.PATH ?? '',
          ...env,
          PORT: String(port),
          MAYFLY_ISSUER: `http://127.0.0.1:${port}`,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let logs = '';
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => (logs += chunk));
      try {
        await new Promise<void>((resolve, reject) => {
          child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
            logs += chunk;
            if (logs.includes('"msg":"mayfly listening"')) resolve();
          });
          child.on('exit', () => {
            reject(new Error(`mayfly serve exited: ${logs}`));
          });
        });
        expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
        const credentials = join(env.MAYFLY_KEYS_DIR ?? '', 'admin.json');
        await access(credentials);
        const url = `http://127.0.0.1:${port}`;
        const listed = await runMayfly(['resource', 'list', '--url', url, '--credentials', credentials]);
        expect(listed.stderr).toBe('');
        expect(listed.stdout).toContain(`${url}/admin`);
      } finally {
        child.kill('SIGTERM');
      }
      // 'close', not 'exit': only then has everything the process wrote been read.
      const [code] = (await once(child, 'close')) as [number | null];
      expect(code).toBe(0);
      expect(logs).toContain('"msg":"shutting down"');
    },
  );

  it.each([
    ['mayfly serve', [CLI, 'serve']],
    ['npm start (src/main.ts)', ['src/main.ts']],
    ['mayfly migrate', [CLI, 'migrate']],
    ['npm run db:migrate (src/db/migrate-cli.ts)', ['src/db/migrate-cli.ts']],
  ])('%s refuses a bad configuration with exit 1 and the configuration message', async (_name, args) => {
    const child = spawn(process.execPath, args, {
      cwd: join(CLI, '../../..'),
      env: { PATH: process.env.PATH ?? '', PORT: '0', MAYFLY_DATA_DIR: '/nonexistent/data' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const [code] = (await once(child, 'close')) as [number | null];
    expect(stderr).toBe('mayfly: Invalid configuration:\n  - PORT: expected at least 1 (got "0")\n');
    expect(code).toBe(1);
  });
});
