/**
 * Load generator, run in its own process so it does not share a CPU budget with the server's event loop.
 * Everything a request needs (DPoP proofs, bodies, headers) is prepared before the clock starts; then a fixed
 * number of requests goes out over a pool of keep-alive connections at a fixed concurrency.
 *
 * Input: one JSON object on argv[2] (see LoadSpec). Output: one JSON line (see LoadResult).
 */
import { Agent, request } from 'node:http';

import { randomUUID } from 'node:crypto';

import { importJWK, SignJWT, type JWK } from 'jose';

import { createProof, generateDpopKey } from '../test/support/dpop.ts';

export interface LoadSpec {
  url: string;
  path: string;
  method: 'GET' | 'POST';
  requests: number;
  concurrency: number;
  headers?: Record<string, string>;
  body?: string;
  /** Attach a fresh DPoP proof for `url + path` to every request. */
  dpop?: boolean;
  /** Authenticate every request with a fresh private_key_jwt assertion (appended to the form body). */
  assertion?: { clientId: string; privateJwk: JWK };
  /** Give up after this many milliseconds. */
  timeoutMs: number;
}

export interface LoadResult {
  requests: number;
  errors: number;
  statuses: Record<string, number>;
  seconds: number;
  rps: number;
  p50: number;
  p95: number;
  p99: number;
}

async function run(spec: LoadSpec): Promise<LoadResult> {
  const target = new URL(spec.path, spec.url);
  const key = spec.dpop ? await generateDpopKey() : undefined;
  const proofs = key
    ? await Promise.all(Array.from({ length: spec.requests }, () => createProof(key, { htu: target.href })))
    : [];
  const bodies = spec.assertion
    ? await prepareAssertionBodies(spec, target.href)
    : Array.from({ length: spec.requests }, () => spec.body);
  const agent = new Agent({ keepAlive: true, maxSockets: spec.concurrency });
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  let errors = 0;
  let next = 0;

  const once = (index: number) =>
    new Promise<void>((resolve) => {
      const started = performance.now();
      const headers: Record<string, string> = { ...spec.headers };
      const proof = proofs[index];
      if (proof) headers.DPoP = proof;
      const body = bodies[index];
      if (body !== undefined) headers['Content-Length'] = String(Buffer.byteLength(body));
      const req = request(target, { method: spec.method, agent, headers }, (res) => {
        res.resume();
        res.on('end', () => {
          latencies.push(performance.now() - started);
          const status = String(res.statusCode);
          statuses[status] = (statuses[status] ?? 0) + 1;
          if ((res.statusCode ?? 0) >= 400) errors += 1;
          resolve();
        });
      });
      req.on('error', () => {
        errors += 1;
        statuses.error = (statuses.error ?? 0) + 1;
        resolve();
      });
      if (body !== undefined) req.write(body);
      req.end();
    });

  const deadline = Date.now() + spec.timeoutMs;
  const worker = async () => {
    while (next < spec.requests && Date.now() < deadline) {
      const index = next;
      next += 1;
      await once(index);
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: spec.concurrency }, worker));
  const seconds = (performance.now() - started) / 1000;
  agent.destroy();

  latencies.sort((a, b) => a - b);
  const at = (q: number) =>
    Number((latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0).toFixed(2));
  return {
    requests: latencies.length,
    errors,
    statuses,
    seconds: Number(seconds.toFixed(2)),
    rps: Math.round(latencies.length / seconds),
    p50: at(0.5),
    p95: at(0.95),
    p99: at(0.99),
  };
}

async function prepareAssertionBodies(spec: LoadSpec, audience: string): Promise<string[]> {
  const { clientId, privateJwk } = spec.assertion ?? { clientId: '', privateJwk: {} };
  const key = await importJWK(privateJwk, 'ES256');
  return Promise.all(
    Array.from({ length: spec.requests }, async () => {
      const assertion = await new SignJWT({})
        .setProtectedHeader({ alg: 'ES256' })
        .setIssuer(clientId)
        .setSubject(clientId)
        .setAudience(audience)
        .setJti(randomUUID())
        .setIssuedAt()
        .setExpirationTime('5m')
        .sign(key);
      const form = new URLSearchParams(spec.body ?? '');
      form.set('client_assertion_type', 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
      form.set('client_assertion', assertion);
      return form.toString();
    }),
  );
}

const spec = JSON.parse(process.argv[2] ?? '{}') as LoadSpec;
process.stdout.write(`${JSON.stringify(await run(spec))}\n`);
