/**
 * The request target never chooses the server's own URL (RFC 9112 §3.2): a request line in absolute form for
 * another origin, in authority form (CONNECT) or in asterisk form is refused before any handler runs, on every
 * surface; an absolute-form target of the issuer's own origin is served as its path. Sent over raw sockets, since
 * HTTP clients only write origin form.
 */
import { connect } from 'node:net';

import { exportJWK, generateKeyPair, type CryptoKey } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createProof, generateDpopKey, type DpopKey } from '../support/dpop.ts';
import { basicAuth, createClientAssertion, JWT_BEARER_ASSERTION } from '../support/oauth.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

const API = 'https://api.example.com';
const ATTACKER = 'https://other.example';

interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** One request written as is on a new connection; the answer as the server wrote it. */
function raw(
  url: string,
  requestLine: string,
  headers: Record<string, string>,
  body = '',
): Promise<RawAnswer> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => {
      const lines = Object.entries({ Connection: 'close', ...headers }).map(([k, v]) => `${k}: ${v}`);
      if (body) lines.push(`Content-Length: ${Buffer.byteLength(body)}`);
      socket.write(`${requestLine}\r\n${lines.join('\r\n')}\r\n\r\n${body}`);
    });
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (text += chunk));
    socket.on('error', reject);
    socket.on('close', () => {
      const [head = '', ...rest] = text.split('\r\n\r\n');
      const [statusLine = '', ...headerLines] = head.split('\r\n');
      const parsed: Record<string, string> = {};
      for (const line of headerLines) {
        const colon = line.indexOf(':');
        parsed[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
      }
      const chunked = parsed['transfer-encoding'] === 'chunked';
      const payload = rest.join('\r\n\r\n');
      resolve({
        status: Number(statusLine.split(' ')[1]),
        headers: parsed,
        body: chunked
          ? payload
              .split('\r\n')
              .filter((_, i) => i % 2 === 1)
              .join('')
          : payload,
      });
    });
  });
}

const FORM = 'application/x-www-form-urlencoded';

function expectRefusedTarget(answer: RawAnswer): void {
  expect(answer.status).toBe(400);
  expect(JSON.parse(answer.body)).toMatchObject({ error: 'invalid_request' });
  expect(answer.body).not.toContain('other.example');
}

describe('request targets, no trusted proxy', () => {
  let server: TestServer;
  let host: string;
  let client: { id: string; secret: string };
  let keyClient: { id: string; privateKey: CryptoKey };
  let dpopKey: DpopKey;

  beforeAll(async () => {
    server = await startTestServer({ env: { MAYFLY_REGISTRATION: 'true' } });
    host = new URL(server.url).host;
    await server.createResource({ identifier: API, scopes: ['read'] });
    const created = await server.createClient({
      name: 'target',
      grants: [{ resource: API, scopes: ['read'] }],
    });
    client = { id: created.client.id, secret: created.clientSecret ?? '' };
    const pair = await generateKeyPair('ES256', { extractable: true });
    const jwk = { ...(await exportJWK(pair.publicKey)), kty: 'EC' as const, kid: 'k', alg: 'ES256' };
    const keyed = await server.createClient({
      name: 'keyed',
      auth_method: 'private_key_jwt',
      jwks: { keys: [jwk] },
      grants: [{ resource: API, scopes: ['read'] }],
    });
    keyClient = { id: keyed.client.id, privateKey: pair.privateKey };
    dpopKey = await generateDpopKey();
  });
  afterAll(() => server.close());

  const tokenBody = new URLSearchParams({ grant_type: 'client_credentials', resource: API }).toString();

  it("refuses a token request aimed at another origin, whose proof names that origin's token endpoint", async () => {
    const proof = await createProof(dpopKey, { htu: `${ATTACKER}/token` });
    const answer = await raw(
      server.url,
      `POST ${ATTACKER}/token HTTP/1.1`,
      { Host: host, 'Content-Type': FORM, Authorization: basicAuth(client.id, client.secret), DPoP: proof },
      tokenBody,
    );
    expectRefusedTarget(answer);
  });

  it('refuses a client assertion and proof minted for another server, even with the request line naming it', async () => {
    const assertion = await createClientAssertion({
      clientId: keyClient.id,
      audience: `${ATTACKER}/token`,
      key: keyClient.privateKey,
      kid: 'k',
    });
    const body = new URLSearchParams({
      grant_type: 'client_credentials',
      resource: API,
      client_assertion_type: JWT_BEARER_ASSERTION,
      client_assertion: assertion,
    }).toString();
    const proof = await createProof(dpopKey, { htu: `${ATTACKER}/token` });
    const answer = await raw(
      server.url,
      `POST ${ATTACKER}/token HTTP/1.1`,
      { Host: host, 'Content-Type': FORM, DPoP: proof },
      body,
    );
    expectRefusedTarget(answer);
    // Sent to the real endpoint, the same assertion is refused as made for another audience.
    const direct = await raw(
      server.url,
      'POST /token HTTP/1.1',
      { Host: host, 'Content-Type': FORM, DPoP: await createProof(dpopKey, { htu: `${server.url}/token` }) },
      body,
    );
    expect(direct.status).toBe(401);
    expect(JSON.parse(direct.body)).toMatchObject({ error: 'invalid_client' });
  });

  it("serves an absolute-form target of the issuer's own origin as its path", async () => {
    const proof = await createProof(dpopKey, { htu: `${server.url}/token` });
    const answer = await raw(
      server.url,
      `POST ${server.url}/token HTTP/1.1`,
      { Host: host, 'Content-Type': FORM, Authorization: basicAuth(client.id, client.secret), DPoP: proof },
      tokenBody,
    );
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toMatchObject({ token_type: 'DPoP' });
  });

  it("keeps the issuer's origin whatever Host says when the target is the issuer's absolute URL", async () => {
    const answer = await raw(
      server.url,
      `GET ${server.url}/.well-known/oauth-authorization-server HTTP/1.1`,
      {
        Host: 'other.example',
      },
    );
    expect(answer.status).toBe(200);
    const metadata = JSON.parse(answer.body) as Record<string, unknown>;
    expect(metadata.issuer).toBe(server.url);
    expect(metadata.token_endpoint).toBe(`${server.url}/token`);
    expect(answer.body).not.toContain('other.example');
  });

  it('refuses the same paths in absolute form for another origin, on every surface', async () => {
    const surfaces = [
      ['GET', '/.well-known/oauth-authorization-server'],
      ['GET', '/.well-known/openid-configuration'],
      ['GET', '/jwks'],
      ['GET', '/healthz'],
      ['GET', '/readyz'],
      ['GET', '/metrics'],
      ['POST', '/token/introspection'],
      ['POST', '/token/revocation'],
      ['GET', '/admin/v1/clients'],
      ['GET', '/admin/openapi.json'],
      ['GET', '/console/sign-in'],
      ['POST', '/register'],
    ] as const;
    for (const [method, path] of surfaces) {
      for (const target of [
        `${ATTACKER}${path}`,
        `http://${host}.evil${path}`,
        `http://user@${host}${path}`,
      ]) {
        const answer = await raw(server.url, `${method} ${target} HTTP/1.1`, { Host: host });
        expect(answer.status, `${method} ${target}`).toBe(400);
        expect(JSON.parse(answer.body), `${method} ${target}`).toMatchObject({ error: 'invalid_request' });
      }
    }
  });

  it('refuses asterisk form, a path that reads as another host, and an unknown scheme', async () => {
    for (const line of [
      'OPTIONS * HTTP/1.1',
      'GET //other.example/.well-known/oauth-authorization-server HTTP/1.1',
      'GET ftp://other.example/jwks HTTP/1.1',
    ]) {
      expectRefusedTarget(await raw(server.url, line, { Host: host }));
    }
  });

  it('answers CONNECT with 405 and a JSON error instead of dropping the connection', async () => {
    const answer = await raw(server.url, 'CONNECT other.example:443 HTTP/1.1', { Host: 'other.example:443' });
    expect(answer.status).toBe(405);
    expect(answer.headers['cache-control']).toBe('no-store');
    expect(JSON.parse(answer.body)).toMatchObject({ error: 'invalid_request' });
  });
});

describe('request targets behind a trusted proxy', () => {
  let server: TestServer;
  let host: string;

  beforeAll(async () => {
    server = await startTestServer({ env: { MAYFLY_TRUST_PROXY: 'true' } });
    host = new URL(server.url).host;
  });
  afterAll(() => server.close());

  it('refuses an absolute-form target of another origin whatever the forwarded headers say', async () => {
    const answer = await raw(server.url, `GET ${ATTACKER}/.well-known/oauth-authorization-server HTTP/1.1`, {
      Host: host,
      'X-Forwarded-Host': 'other.example',
      'X-Forwarded-Proto': 'https',
    });
    expectRefusedTarget(answer);
  });

  it("advertises the issuer's origin for an origin-form target, whatever the forwarded headers say", async () => {
    const answer = await raw(server.url, 'GET /.well-known/oauth-authorization-server HTTP/1.1', {
      Host: 'other.example',
      'X-Forwarded-Host': 'other.example',
      'X-Forwarded-Proto': 'https',
    });
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toMatchObject({
      issuer: server.url,
      token_endpoint: `${server.url}/token`,
    });
  });

  it("serves the issuer's own absolute URL behind the proxy too", async () => {
    const answer = await raw(server.url, `GET ${server.url}/jwks HTTP/1.1`, {
      Host: host,
      'X-Forwarded-Host': 'other.example',
    });
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toHaveProperty('keys');
  });
});
