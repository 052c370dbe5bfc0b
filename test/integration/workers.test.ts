import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { adminCall, obtainAdminToken } from '../support/admin.ts';
import { generateDpopKey } from '../support/dpop.ts';
import { startCluster, type Cluster } from '../support/instances.ts';
import { requestToken } from '../support/oauth.ts';

/**
 * MAYFLY_WORKERS runs several server processes on one port (node:cluster). Only with DATABASE_URL: workers
 * share their state through Postgres, and the embedded database belongs to one process.
 */
const API = 'https://orders.example.com';

interface Listening {
  worker: number;
  pid: number;
}

function listeningWorkers(logs: string): Listening[] {
  return logs
    .split('\n')
    .filter((line) => line.includes('"msg":"mayfly listening"'))
    .map((line) => JSON.parse(line) as Listening);
}

async function waitFor<T>(what: string, probe: () => T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

describe.skipIf(!process.env.DATABASE_URL)('MAYFLY_WORKERS=2', () => {
  let cluster: Cluster<'server'>;
  let caller: { id: string; secret: string };

  beforeAll(async () => {
    cluster = await startCluster({ names: ['server'], env: { MAYFLY_WORKERS: '2' } });
    await waitFor('two workers', () =>
      listeningWorkers(cluster.instances.server.logs).length >= 2 ? true : undefined,
    );
    const address = cluster.publicAddress();
    const admin = await obtainAdminToken(address);
    expect(
      (await adminCall(address, admin, 'POST', '/resources', { body: { identifier: API, scopes: ['read'] } }))
        .status,
    ).toBe(201);
    const created = await adminCall(address, admin, 'POST', '/clients', {
      body: { name: 'caller', grants: [{ resource: API, scopes: ['read'] }] },
    });
    expect(created.status).toBe(201);
    caller = { id: created.body.client_id as string, secret: created.body.client_secret as string };
  }, 120_000);
  afterAll(() => cluster.close(), 60_000);

  async function tokens(count: number): Promise<number[]> {
    const key = await generateDpopKey();
    const statuses: number[] = [];
    for (let i = 0; i < count; i += 1) {
      const res = await requestToken(cluster.balancer.url, {
        clientId: caller.id,
        secret: caller.secret,
        resource: API,
        key,
      });
      statuses.push(res.status);
    }
    return statuses;
  }

  it('runs two workers, each a whole server, sharing the port', async () => {
    const workers = listeningWorkers(cluster.instances.server.logs);
    expect(workers.map((w) => w.worker).sort()).toEqual([1, 2]);
    expect(new Set(workers.map((w) => w.pid)).size).toBe(2);
    expect(workers.every((w) => w.pid !== cluster.instances.server.child.pid)).toBe(true);
    expect(await tokens(20)).toEqual(Array.from({ length: 20 }, () => 200));
  }, 60_000);

  it('replaces a worker that dies, and keeps serving meanwhile', async () => {
    const [victim] = listeningWorkers(cluster.instances.server.logs);
    if (!victim) throw new Error('no worker');
    process.kill(victim.pid, 'SIGKILL');
    await waitFor('a replacement worker', () =>
      listeningWorkers(cluster.instances.server.logs).length >= 3 ? true : undefined,
    );
    expect(cluster.instances.server.logs).toContain('"msg":"worker died; starting another"');
    expect(await tokens(10)).toEqual(Array.from({ length: 10 }, () => 200));
  }, 60_000);

  it('stops every worker on SIGTERM and exits 0', async () => {
    const { child } = cluster.instances.server;
    // 'close', not 'exit': only then has everything the process wrote to its output been read.
    const closed = once(child, 'close');
    child.kill('SIGTERM');
    const [code] = (await closed) as [number | null];
    expect(code).toBe(0);
    const logs = cluster.instances.server.logs;
    expect(logs).toContain('"msg":"every worker stopped"');
    // Each live worker drained and stopped once.
    expect(logs.split('"msg":"stopped"').length - 1).toBe(2);
    for (const { pid } of listeningWorkers(logs)) {
      expect(() => process.kill(pid, 0)).toThrow(/ESRCH/);
    }
  }, 60_000);
});
