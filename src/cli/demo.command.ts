import { readFile } from 'node:fs/promises';

import * as oauth from 'oauth4webapi';

import { ClientWithSecret } from '../clients/client.schemas.ts';
import { createTransport, retryOnceWithNonce } from './admin-client.ts';
import { defineCommand, type CommandContext } from './command.ts';
import { CliError, UsageError } from './errors.ts';
import { formatTime } from './output.ts';
import { startSampleResource } from './sample-resource.ts';

interface DemoClient {
  file: string;
  client: ClientWithSecret;
  auth: oauth.ClientAuth;
}

async function readClientFile(path: string, option: string): Promise<DemoClient> {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, 'utf8'));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new CliError(
      `${option} ${path}: ${code ? `cannot read it (${code})` : 'not valid JSON'}; expected the output of 'mayfly client create --json'`,
    );
  }
  const parsed = ClientWithSecret.safeParse(json);
  if (!parsed.success) {
    throw new CliError(`${option} ${path} is not the output of 'mayfly client create --json'`);
  }
  const client = parsed.data;
  const secret = client.client_secret;
  if (!secret || client.auth_method === 'private_key_jwt') {
    throw new CliError(
      `${option} ${path}: the demo needs a client with a secret (client_secret_basic or client_secret_post), ` +
        'as printed by client create or rotate-secret with --json',
    );
  }
  const auth =
    client.auth_method === 'client_secret_post'
      ? oauth.ClientSecretPost(secret)
      : oauth.ClientSecretBasic(secret);
  return { file: path, client, auth };
}

/** The sample resource listens where the identifier points when that is this machine over http; else anywhere. */
function choosePort(identifier: string): number {
  const url = URL.parse(identifier);
  const local = url?.protocol === 'http:' && (url.hostname === 'localhost' || url.hostname === '127.0.0.1');
  return local && url.port ? Number(url.port) : 0;
}

function describeFailure(error: unknown): string {
  if (error instanceof oauth.ResponseBodyError) {
    return `${error.error}${error.error_description ? `: ${error.error_description}` : ''}`;
  }
  return error instanceof Error ? error.message : String(error);
}

/** Runs one step; a failure names the step, so the newcomer knows where the walkthrough stopped. */
async function runStep<T>(what: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof CliError) throw error;
    throw new CliError(`${what} failed: ${describeFailure(error)}`);
  }
}

const demo = defineCommand({
  path: ['demo'],
  summary: 'walk through a first token: obtain, use, introspect, revoke',
  description:
    'Walk through the life of a first access token, one numbered step at a time: obtain a DPoP-bound token\n' +
    'for the client, call a sample protected resource with it, introspect it as the resource server, revoke\n' +
    'it, and see it become inactive. Tokens and secrets are never printed.\n\n' +
    "The files are what 'mayfly client create --json' printed for a client with a grant on a resource, and\n" +
    'for a resource server created with --introspects for that resource.',
  synopsis: '--client <file> --resource-server <file>',
  arguments: [],
  options: {
    client: {
      type: 'string',
      value: '<file>',
      description: 'the client (client create --json with --grant)',
    },
    'resource-server': {
      type: 'string',
      value: '<file>',
      description: 'the resource server (client create --json with --introspects)',
    },
  },
  globals: 'url',
  examples: [
    'mayfly resource create http://localhost:4000 --scopes "orders:read"',
    'mayfly client create --name billing --grant http://localhost:4000=orders:read --json > billing.json',
    'mayfly client create --name orders-api --introspects http://localhost:4000 --json > orders-api.json',
    'mayfly demo --client billing.json --resource-server orders-api.json',
  ],
  async run({ values }, context) {
    if (values.client === undefined) throw new UsageError('--client <file> is required');
    if (values['resource-server'] === undefined) throw new UsageError('--resource-server <file> is required');
    await runDemo(context, values.client, values['resource-server']);
  },
});

async function runDemo(
  context: CommandContext,
  clientFile: string,
  resourceServerFile: string,
): Promise<void> {
  let number = 0;
  const say = (line: string) => {
    number += 1;
    context.out.result(`${number}. ${line}\n`);
  };
  const caller = await readClientFile(clientFile, '--client');
  const server = await readClientFile(resourceServerFile, '--resource-server');
  const grant = caller.client.grants.find((g) => server.client.introspects.includes(g.resource));
  if (!grant) {
    throw new CliError(
      `${server.client.name} (${resourceServerFile}) introspects none of the resources ${caller.client.name} ` +
        `(${clientFile}) holds a grant on; create the resource server with --introspects <uri> for one of: ` +
        (caller.client.grants.map((g) => g.resource).join(', ') || '(no grants)'),
    );
  }
  say(
    `Client "${caller.client.name}" (${caller.client.client_id}) may get tokens for ${grant.resource} with scope ` +
      `"${grant.scopes.join(' ')}"; "${server.client.name}" is the resource server that may introspect them.`,
  );

  const transport = createTransport(context.url);
  const as = await runStep('discovering the server', async () => {
    const response = await oauth.discoveryRequest(new URL(context.url), {
      algorithm: 'oauth2',
      ...transport,
    });
    const issuer = ((await response.clone().json()) as { issuer?: unknown }).issuer;
    if (typeof issuer !== 'string')
      throw new Error(`${context.url} does not publish authorization server metadata`);
    return oauth.processDiscoveryResponse(new URL(issuer), response);
  });
  say(
    `Read the server's metadata at ${context.url}/.well-known/oauth-authorization-server: issuer ${as.issuer}.`,
  );

  const callerClient: oauth.Client = { client_id: caller.client.client_id };
  const dpop = oauth.DPoP(callerClient, await oauth.generateKeyPair('ES256'));
  say(
    `Generated a fresh ES256 key pair. Each request carries a DPoP proof signed with it, and the token is bound to it.`,
  );

  const token = await runStep('the token request', () =>
    retryOnceWithNonce(async () =>
      oauth.processClientCredentialsResponse(
        as,
        callerClient,
        await oauth.clientCredentialsGrantRequest(
          as,
          callerClient,
          caller.auth,
          { resource: grant.resource, scope: grant.scopes.join(' ') },
          { DPoP: dpop, ...transport },
        ),
      ),
    ),
  );
  say(
    `Obtained an access token at /token (client_credentials, ${caller.client.auth_method}): type DPoP, ` +
      `scope "${token.scope ?? grant.scopes.join(' ')}", expires in ${token.expires_in ?? '?'} s. The token itself is not shown.`,
  );

  const serverClient: oauth.Client = { client_id: server.client.client_id };
  const introspect = async (value: string) =>
    oauth.processIntrospectionResponse(
      as,
      serverClient,
      await oauth.introspectionRequest(as, serverClient, server.auth, value, transport),
    );
  const isJwt = token.access_token.split('.').length === 3;
  const sample = await runStep('starting the sample resource', () =>
    startSampleResource({
      as,
      audience: grant.resource,
      introspect,
      transport,
      port: choosePort(grant.resource),
    }),
  );
  try {
    say(
      `Started a sample protected resource for ${grant.resource} at ${sample.url}${sample.portFallbackReason ? ` (${sample.portFallbackReason})` : ''}. ` +
        (isJwt
          ? "It validates JWT access tokens itself with the server's published keys (oauth4webapi validateJwtAccessToken, DPoP required)."
          : 'The token is opaque, so it asks the server by introspection and checks the DPoP proof against the token.'),
    );

    const answer = await runStep('calling the sample resource', async () => {
      try {
        const response = await oauth.protectedResourceRequest(
          token.access_token,
          'GET',
          new URL(`${sample.url}/`),
          undefined,
          null,
          {
            DPoP: dpop,
            ...transport,
          },
        );
        return { status: response.status, body: await response.text() };
      } catch (error) {
        if (error instanceof oauth.WWWAuthenticateChallengeError) {
          return { status: error.response.status, body: await error.response.text() };
        }
        throw error;
      }
    });
    say(
      `Called GET ${sample.url}/ with "Authorization: DPoP <token>" and a fresh proof: ${answer.status} ${answer.body}`,
    );
    if (answer.status !== 200) throw new CliError(`the sample resource refused the token: ${answer.body}`);

    const stolen = await runStep('calling without a proof', () =>
      fetch(`${sample.url}/`, { headers: { authorization: `Bearer ${token.access_token}` } }),
    );
    say(
      `Called it again with the token alone, as a thief would (Bearer, no proof): ${stolen.status}. Without the key the token is useless.`,
    );

    const active = await runStep('introspecting the token', () => introspect(token.access_token));
    say(
      `Introspected the token at /token/introspection as "${server.client.name}": active: ${active.active}` +
        (active.active
          ? `, scope: ${active.scope ?? '-'}, exp: ${active.exp ? `${formatTime(new Date(active.exp * 1000).toISOString())} (in ${active.exp - Math.floor(Date.now() / 1000)} s)` : '-'}.`
          : '.'),
    );

    await runStep('revoking the token', async () =>
      oauth.processRevocationResponse(
        await oauth.revocationRequest(as, callerClient, caller.auth, token.access_token, transport),
      ),
    );
    say(`Revoked the token at /token/revocation as "${caller.client.name}".`);

    const revoked = await runStep('introspecting the revoked token', () => introspect(token.access_token));
    say(
      `Introspected it again: active: ${revoked.active}.` +
        (isJwt
          ? ' A resource that only checks signatures would accept it until it expires; introspection learns at once.'
          : ''),
    );
    if (revoked.active) throw new CliError('the token is still active after revocation');
  } finally {
    await sample.close();
  }
  say('Stopped the sample resource. Done.');
}

export const DEMO_COMMANDS = [demo];
