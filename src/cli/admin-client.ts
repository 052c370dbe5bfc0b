import { readFile } from 'node:fs/promises';

import { importJWK, type CryptoKey } from 'jose';
import * as oauth from 'oauth4webapi';
import { z } from 'zod';

import { CliError } from './errors.ts';

import type { AdminScope } from '../clients/admin-rights.ts';

export type { AdminScope };

export type AdminMethod = 'GET' | 'POST' | 'PATCH' | 'DELETE';

export interface AdminRequest {
  query?: Record<string, string | undefined>;
  body?: unknown;
}

export interface AdminClient {
  /** One admin API call; the JSON answer, or undefined for 204. Refusals throw an ApiError. */
  send(method: AdminMethod, path: string, request?: AdminRequest): Promise<unknown>;
}

/** The admin API refused a request: its stable code and message, as the server wrote them. */
export class ApiError extends CliError {
  override name = 'ApiError';
  readonly status: number;
  readonly code: string;

  constructor(status: number, code: string, message: string) {
    super(`${message} (${code})`);
    this.status = status;
    this.code = code;
  }
}

const AdminCredentials = z.object({
  issuer: z.url({ protocol: /^https?$/ }),
  client_id: z.string().min(1),
  private_jwk: z.looseObject({ kty: z.string(), d: z.string() }),
});
type AdminCredentials = z.infer<typeof AdminCredentials>;

export interface AdminConnection {
  /** Base URL of the server, without a trailing slash. */
  url: string;
  credentialsPath: string;
  scope: AdminScope;
}

/**
 * Obtains a DPoP-bound admin token with the credentials file (private_key_jwt) and returns a client that signs a
 * fresh DPoP proof for every request. A new DPoP key per run: nothing is cached on disk.
 */
export async function connectAdmin(connection: AdminConnection): Promise<AdminClient> {
  const credentials = await readCredentials(connection.credentialsPath);
  refuseForeignUrl(connection, credentials);
  const key = await importPrivateKey(credentials, connection.credentialsPath);
  // Requests are made for the issuer's URLs (the server checks DPoP proofs and assertion audiences against them)
  // and sent to --url, which may be another name for the server.
  const transport = createTransport(connection.url, { signedFor: credentials.issuer });
  const as: oauth.AuthorizationServer = {
    issuer: credentials.issuer,
    token_endpoint: `${credentials.issuer}/token`,
  };
  const client: oauth.Client = { client_id: credentials.client_id };
  const dpop = oauth.DPoP(client, await oauth.generateKeyPair('ES256'));
  const { kid } = credentials.private_jwk;
  const clientAuth = oauth.PrivateKeyJwt(typeof kid === 'string' ? { key, kid } : key);
  const parameters = { resource: `${credentials.issuer}/admin`, scope: connection.scope };

  let accessToken: string;
  try {
    const token = await retryOnceWithNonce(async () =>
      oauth.processClientCredentialsResponse(
        as,
        client,
        await oauth.clientCredentialsGrantRequest(as, client, clientAuth, parameters, {
          DPoP: dpop,
          ...transport,
        }),
      ),
    );
    accessToken = token.access_token;
  } catch (error) {
    throw explainTokenError(error, connection, credentials);
  }

  return {
    async send(method, path, request = {}) {
      const url = new URL(`${credentials.issuer}/admin/v1${path}`);
      for (const [name, value] of Object.entries(request.query ?? {})) {
        if (value !== undefined) url.searchParams.set(name, value);
      }
      const body = request.body === undefined ? null : JSON.stringify(request.body);
      let response: Response;
      try {
        response = await retryOnceWithNonce(() => {
          const headers = new Headers({ accept: 'application/json' });
          if (body !== null) headers.set('content-type', 'application/json');
          return oauth.protectedResourceRequest(accessToken, method, url, headers, body, {
            DPoP: dpop,
            ...transport,
          });
        });
      } catch (error) {
        if (error instanceof oauth.WWWAuthenticateChallengeError) {
          throw await explainChallenge(error, connection);
        }
        throw error;
      }
      return readAnswer(response, connection.url);
    },
  };
}

export async function readCredentials(path: string): Promise<AdminCredentials> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new CliError(
        `no admin credentials at ${path}. Mayfly writes admin.json into its keys folder (MAYFLY_KEYS_DIR, ` +
          `default ./keys) when it first starts: run 'npm start' once, then run mayfly from the same folder, ` +
          `or pass --credentials <file> (or set MAYFLY_CREDENTIALS).`,
      );
    }
    throw new CliError(`cannot read the admin credentials at ${path}: ${code ?? String(error)}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    // The parser's message quotes the text, which holds a private key: say only where the problem is.
    throw new CliError(
      `${path} is not valid JSON; expected the admin credentials file Mayfly writes (admin.json)`,
    );
  }
  const parsed = AdminCredentials.safeParse(json);
  if (!parsed.success) {
    const members = [...new Set(parsed.error.issues.map((issue) => issue.path.join('.') || '(the file)'))];
    throw new CliError(
      `${path} is not an admin credentials file: missing or invalid ${members.join(', ')}; ` +
        `expected { issuer, client_id, private_jwk } as Mayfly writes it (admin.json)`,
    );
  }
  return parsed.data;
}

async function importPrivateKey(credentials: AdminCredentials, path: string): Promise<CryptoKey> {
  try {
    const { alg } = credentials.private_jwk;
    const key = await importJWK(credentials.private_jwk, typeof alg === 'string' ? alg : 'ES256');
    if (key instanceof Uint8Array) throw new TypeError('a symmetric key');
    return key;
  } catch {
    throw new CliError(`${path}: private_jwk is not a usable ES256 private key`);
  }
}

/**
 * Options shared by every request: plain http only for http:// URLs (a local server), and network failures
 * turned into one sentence that names the URL and what to do. `signedFor`: requests are built (and their DPoP
 * proofs signed) for that origin and sent to `baseUrl`, another address of the same server.
 */
export function createTransport(baseUrl: string, options: { signedFor?: string } = {}) {
  const target = new URL(baseUrl);
  return {
    // eslint-disable-next-line @typescript-eslint/no-deprecated -- oauth4webapi's documented opt-in to http://, marked deprecated to stand out
    [oauth.allowInsecureRequests]:
      baseUrl.startsWith('http:') || options.signedFor?.startsWith('http:') === true,
    [oauth.customFetch]: async (url: string, init: oauth.CustomFetchOptions<string, unknown>) => {
      const destination = new URL(url);
      if (options.signedFor !== undefined && destination.origin === new URL(options.signedFor).origin) {
        destination.protocol = target.protocol;
        destination.host = target.host;
      }
      try {
        return await fetch(destination, init as RequestInit);
      } catch (error) {
        throw new CliError(describeNetworkFailure(baseUrl, error));
      }
    },
  };
}

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

/**
 * The CLI sends its client assertion and admin tokens only to the server named by the credentials: the issuer's
 * own origin, or a loopback address (the same machine, e.g. inside the server's container). Anywhere else a
 * mistyped or hostile --url would receive a credential it could use at the real server.
 */
function refuseForeignUrl(connection: AdminConnection, credentials: AdminCredentials): void {
  const target = new URL(connection.url);
  if (target.origin === new URL(credentials.issuer).origin || LOOPBACK_HOSTS.has(target.hostname)) return;
  throw new CliError(
    `--url ${connection.url} is not the server these credentials belong to (issuer ${credentials.issuer}); ` +
      `the CLI sends admin credentials only to the issuer or to a loopback address. ` +
      `Use --url ${credentials.issuer}, or check --credentials.`,
  );
}

export function describeNetworkFailure(baseUrl: string, error: unknown): string {
  const cause = (error as { cause?: { code?: unknown; message?: unknown } }).cause;
  const code = typeof cause?.code === 'string' ? cause.code : undefined;
  const why =
    code === 'ECONNREFUSED'
      ? 'connection refused'
      : code === 'ENOTFOUND' || code === 'EAI_AGAIN'
        ? 'unknown host'
        : (error as { name?: unknown }).name === 'TimeoutError'
          ? 'no answer in time'
          : (code ?? (typeof cause?.message === 'string' ? cause.message : String(error)));
  return (
    `cannot reach Mayfly at ${baseUrl} (${why}). Start it with 'npm start', ` +
    `or point --url (or MAYFLY_URL) at a running server.`
  );
}

/** RFC 9449 §8 and §9: a server may ask for a nonce once; oauth4webapi's DPoP handle has kept it for the retry. */
export async function retryOnceWithNonce<T>(attempt: () => Promise<T>): Promise<T> {
  try {
    return await attempt();
  } catch (error) {
    if (oauth.isDPoPNonceError(error)) return attempt();
    throw error;
  }
}

function explainTokenError(
  error: unknown,
  connection: AdminConnection,
  credentials: AdminCredentials,
): Error {
  if (!(error instanceof oauth.ResponseBodyError)) {
    return error instanceof CliError
      ? error
      : new CliError(
          `the token request to ${connection.url}/token failed: ${error instanceof Error ? error.message : String(error)}`,
        );
  }
  const said = `${error.error}${error.error_description ? `: ${error.error_description}` : ''}`;
  if (error.error === 'invalid_client') {
    return new CliError(
      `${connection.url} refused the admin credentials in ${connection.credentialsPath} (${said}). ` +
        `They belong to the server that wrote them (issuer ${credentials.issuer}): check that --url and ` +
        `--credentials name the same server and database.`,
    );
  }
  if (error.error === 'invalid_target' || error.error === 'invalid_scope') {
    return new CliError(
      `${connection.url} does not grant these credentials ${connection.scope} on ${credentials.issuer}/admin ` +
        `(${said}). Check that --url names the server that wrote ${connection.credentialsPath}.`,
    );
  }
  return new CliError(`${connection.url}/token refused the admin token request (${said})`);
}

async function explainChallenge(
  error: oauth.WWWAuthenticateChallengeError,
  connection: AdminConnection,
): Promise<CliError> {
  const challenge = error.cause.find((c) => c.scheme === 'dpop') ?? error.cause[0];
  const code = challenge?.parameters.error;
  const description = challenge?.parameters.error_description;
  const fromBody = await readErrorBody(error.response);
  if (fromBody) return new ApiError(error.response.status, fromBody.code, fromBody.message);
  if (code === 'insufficient_scope') {
    return new ApiError(
      403,
      code,
      `the admin token lacks ${connection.scope}${description ? `: ${description}` : ''}`,
    );
  }
  return new ApiError(
    error.response.status,
    code ?? 'invalid_token',
    `the admin API at ${connection.url} refused the token${description ? `: ${description}` : ''}`,
  );
}

const ErrorBody = z.object({ code: z.string(), message: z.string() });

async function readErrorBody(response: Response): Promise<z.infer<typeof ErrorBody> | undefined> {
  const parsed = ErrorBody.safeParse(await response.json().catch(() => undefined));
  return parsed.success ? parsed.data : undefined;
}

async function readAnswer(response: Response, baseUrl: string): Promise<unknown> {
  if (response.status === 204) return undefined;
  if (response.ok) {
    try {
      return await response.json();
    } catch {
      throw new CliError(`${baseUrl} answered ${response.status} without JSON: is it a Mayfly admin API?`);
    }
  }
  const body = await readErrorBody(response);
  if (body) throw new ApiError(response.status, body.code, body.message);
  throw new CliError(
    `${baseUrl} answered HTTP ${response.status} without an admin API error: is --url a Mayfly server with the admin API?`,
  );
}
