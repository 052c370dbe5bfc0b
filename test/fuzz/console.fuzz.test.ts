import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { CONSOLE_PAGES } from '../../src/console/pages/index.ts';
import { signedIn, type ConsoleSession } from '../support/console.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import {
  changedTables,
  findInternalMarker,
  fingerprint,
  FUZZ_SERVER_ENV,
  fuzzSettings,
  minimumRequests,
  runFuzz,
  watchProcessFailures,
  weirdString,
  type Fingerprint,
  type Violation,
} from './arbitraries.ts';

/**
 * Property-based fuzzing of the web console: every page of its page table (the one the router runs on), with path
 * parameters naming real and made-up objects, query strings and form posts that mix the fields the pages read
 * with mutated, oversized and random ones — mostly from a signed-in write user with a valid form token, so that
 * the input reaches the pages. Every answer is below 500, is HTML or a redirect, shows no internals, and a refused
 * post changes no table.
 *
 * FUZZ_SEED, FUZZ_RUNS, FUZZ_TIME_LIMIT_MS and FUZZ_PATH steer a run (see arbitraries.ts); the seed is printed.
 */

let server: TestServer;
let session: ConsoleSession;
const watcher = watchProcessFailures();
const pools = {
  resources: [] as string[],
  identifiers: [] as string[],
  clients: [] as string[],
  kids: [] as string[],
};
let fuzzed = 0;
const tally = new Map<string, number>();

beforeAll(async () => {
  server = await startTestServer({ env: FUZZ_SERVER_ENV });
  for (const name of ['orders', 'ledger']) {
    const resource = await server.createResource({
      identifier: `https://${name}.example.com`,
      scopes: [`${name}:read`, `${name}:write`],
    });
    pools.resources.push(resource.id);
    pools.identifiers.push(resource.identifier);
    const client = await server.createClient({
      name: `${name} reader`,
      grants: [{ resource: resource.identifier, scopes: [`${name}:read`] }],
    });
    pools.clients.push(client.client.client_id);
  }
  pools.kids.push(...(await server.app.keys.list()).map((key) => key.kid));
  session = await signedIn(server, 'fuzzer');
});
afterAll(async () => {
  watcher.stop();
  await server.close();
});

/** Field names the console's forms use, and a few they do not. */
const FIELD_NAMES = [
  'name',
  'identifier',
  'scopes',
  'token_ttl',
  'token_format',
  'auth_method',
  'jwks',
  'jwks_uri',
  'bearer_allowed',
  'dpop_jkts',
  'introspects',
  'overlap',
  'previous_secret_expires_in',
  'force',
  'immediate',
  'status',
  'resource',
  'actor',
  'action',
  'target',
  'since',
  'until',
  'cursor',
  'limit',
  'confirm',
  '__proto__',
  'constructor',
];

const value = (): fc.Arbitrary<string> =>
  fc.oneof(
    { arbitrary: weirdString(), weight: 4 },
    {
      arbitrary: fc.constantFrom(
        'https://orders.example.com',
        'https://new.example.com',
        'orders:read orders:write',
        'orders:read',
        '300',
        '-1',
        '1e9',
        'jwt',
        'opaque',
        'xml',
        'client_secret_basic',
        'private_key_jwt',
        '{"keys":[]}',
        '{"keys":[{"kty":"EC"}]}',
        'on',
        'true',
        'enabled',
        'disabled',
        '2026-01-01T00:00',
        '0000-13-45T99:99',
        'user:fuzzer',
      ),
      weight: 3,
    },
  );

interface ConsoleSpec {
  page: number;
  params: {
    pool: 'resources' | 'identifiers' | 'clients' | 'kids' | 'weird';
    index: number;
    weird: string;
  }[];
  fields: [string, string][];
  query: [string, string][];
  token: 'valid' | 'missing' | 'wrong';
}

const field = fc.tuple(
  fc.oneof(
    { arbitrary: fc.constantFrom(...FIELD_NAMES), weight: 5 },
    {
      arbitrary: fc.constantFrom(
        ...pools.identifiers.map((id) => `grant:${id}`),
        'grant:https://orders.example.com',
      ),
      weight: 2,
    },
    { arbitrary: weirdString(), weight: 1 },
  ),
  value(),
);

const spec: fc.Arbitrary<ConsoleSpec> = fc.record({
  page: fc.nat({ max: CONSOLE_PAGES.length - 1 }),
  params: fc.array(
    fc.record({
      pool: fc.constantFrom('resources', 'identifiers', 'clients', 'kids', 'weird'),
      index: fc.nat({ max: 3 }),
      weird: weirdString(),
    }),
    { minLength: 2, maxLength: 2 },
  ),
  fields: fc.array(field, { maxLength: 8 }),
  query: fc.array(fc.tuple(fc.constantFrom(...FIELD_NAMES), value()), { maxLength: 4 }),
  token: fc.oneof(
    { arbitrary: fc.constant('valid' as const), weight: 10 },
    { arbitrary: fc.constantFrom('missing' as const, 'wrong' as const), weight: 1 },
  ),
});

/** The path of a page with its parameters filled from the pools (a made-up value when a pool runs short). */
function pathOf(template: string, params: ConsoleSpec['params']): string {
  let next = 0;
  return template.replace(/\{[a-z_]+\}/g, () => {
    const param = params[next++] ?? { pool: 'weird', index: 0, weird: 'x' };
    const pooled = param.pool === 'weird' ? undefined : pools[param.pool][param.index];
    const raw = pooled ?? param.weird;
    // Percent-encoded as a browser would; an unencodable lone surrogate is sent as is (URL encodes it).
    try {
      return encodeURIComponent(raw) || '-';
    } catch {
      return raw || '-';
    }
  });
}

let last: Fingerprint | undefined;

async function checkOne(input: ConsoleSpec): Promise<Violation | undefined> {
  const page = CONSOLE_PAGES[input.page];
  if (!page) return undefined;
  const path = `/console${pathOf(page.path, input.params)}`;
  const search = new URLSearchParams(input.query).toString();
  const target = search ? `${path}?${search}` : path;
  const before = last ?? (await fingerprint(server.app.db));
  const fields = Object.create(null) as Record<string, string[]>;
  for (const [name, v] of input.fields) (fields[name] ??= []).push(v);
  // A valid post is sent from its own page, as a browser sends it: the page's form token and, for edit forms, the
  // version of the object it showed.
  let version: string | undefined;
  if (input.token === 'valid') {
    const hasPage = CONSOLE_PAGES.some((other) => other.method === 'GET' && other.path === page.path);
    const shown = await session.get(hasPage ? path : '/console/keys');
    version = /name="_version" value="([^"]*)"/.exec(shown.text)?.[1];
  }
  const csrf = input.token === 'valid' ? session.csrf : input.token === 'wrong' ? 'A'.repeat(43) : undefined;
  const response =
    page.method === 'GET'
      ? await session.get(target)
      : await session.post(target, {
          ...(version === undefined ? {} : { _version: version }),
          ...fields,
          _csrf: csrf,
        });
  fuzzed += 1;
  const after = await fingerprint(server.app.db);
  last = after;
  const where = `${page.method} ${page.path}`;
  tally.set(`${where} ${response.status}`, (tally.get(`${where} ${response.status}`) ?? 0) + 1);
  const violation = (key: string): Violation => ({
    key: `${key} at ${where}`,
    describe: () =>
      `${page.method} ${target.slice(0, 200)} → ${response.status} ${JSON.stringify(response.text.slice(0, 300))}`,
  });
  if (response.status >= 500) return violation(`${response.status}`);
  // The HTTP parser's own refusal of an oversized request line or header, before any console code runs.
  if (response.status === 431 || response.status === 414) return undefined;
  if (response.status === 303) {
    if (!response.location?.startsWith('/console')) return violation('redirect outside the console');
    if (response.location.startsWith('/console/sign-in')) return violation('session lost');
  } else if (response.headers.get('content-type') !== 'text/html; charset=utf-8') {
    return violation(`answer of type ${String(response.headers.get('content-type'))}`);
  }
  if (findInternalMarker(response.text)) return violation('internal detail');
  if (response.status >= 400 && page.method === 'POST') {
    const changed = changedTables(before, after);
    if (changed.length) return violation(`refused post (${response.status}) changed ${changed.join(', ')}`);
  }
  return undefined;
}

describe('console under fuzzing', () => {
  it('answers every generated request below 500 with a page or a redirect, and a refused post changes nothing', async () => {
    const settings = fuzzSettings('console');
    const started = performance.now();
    try {
      await runFuzz('console', settings, spec, checkOne);
    } finally {
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      const top = [...tally].sort(([, a], [, b]) => b - a);
      console.info(
        `[fuzz:console] ${fuzzed} requests in ${seconds} s; answers:\n` +
          top.map(([what, n]) => `  ${String(n).padStart(5)}  ${what}`).join('\n'),
      );
    }
    expect(fuzzed).toBeGreaterThanOrEqual(Math.min(settings.numRuns, minimumRequests()));
  }, 120_000);

  it('records no unhandled rejection or uncaught exception', () => {
    expect(watcher.failures).toEqual([]);
  });

  it('still serves the console to the signed-in user', async () => {
    const overview = await session.get('/console');
    expect(overview.status).toBe(200);
    expect(overview.text).toContain('<h1>Overview</h1>');
  });
});
