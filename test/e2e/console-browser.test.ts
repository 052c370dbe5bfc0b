import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { createRemoteJWKSet, jwtVerify } from 'jose';
import * as oauth from 'oauth4webapi';
import * as OTPAuth from 'otpauth';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Clock } from '../../src/clock.ts';
import { createConsoleUser, TEST_PASSWORD } from '../support/console.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { insecure, listen, type AccessTokenClaims } from './helpers.ts';

/**
 * The web console driven by a real Chromium over a real socket: sign-in (with and without a second factor),
 * the pages a write user works with, the protections of its forms and sessions, keyboard use, a narrow screen,
 * and screenshots of the main pages for review.
 */

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SHOTS = fileURLToPath(new URL('../../artifacts/console-screenshots/', import.meta.url));
const IDLE_TIMEOUT_SECONDS = 60;
const WRITER = 'browser-writer';
const API = `http://127.0.0.1/orders-${randomBytes(4).toString('hex')}`;
const API_NAME = 'Orders';
const CLIENT_NAME = 'orders-worker';
/** Bounds every wait on the page: a step that hangs fails instead of eating the whole test's time. */
const WAIT_MS = 10_000;

const clock: Clock & { offsetMs: number } = {
  offsetMs: 0,
  now: () => new Date(Date.now() + clock.offsetMs),
};

let server: TestServer;
let browser: Browser;
let context: BrowserContext;
let page: Page;
/** Closes what the tests opened, last opened first; run in afterAll whatever happened. */
const cleanups: (() => Promise<unknown>)[] = [];
const screenshots: string[] = [];
/** The client registered in the console, and the secret copied from its page (kept in memory only). */
let registered: { clientId: string; secret: string } | undefined;

/**
 * The little of the browser the functions run in the page use: this project is compiled without the DOM library,
 * so they take these from `globalThis`, which in the page is the window. (Only what is written inside such a
 * function reaches the page: it is sent as source text.)
 */
interface PageGlobals {
  document: {
    documentElement: { scrollWidth: number };
    activeElement: {
      tagName: string;
      textContent: string | null;
      id: string;
      closest(selector: string): unknown;
    } | null;
    getElementById(id: string): { textContent: string | null } | null;
    querySelectorAll(selector: string): Iterable<{ value: string }>;
  };
  innerWidth: number;
  navigator: { clipboard: { readText(): Promise<string> } };
}

/** A digest to compare secrets by: a failed assertion then prints no secret. */
const digest = (text: string) => createHash('sha256').update(text).digest('base64url');

async function newContext(options: Parameters<Browser['newContext']>[0] = {}) {
  const created = await browser.newContext({ baseURL: server.url, ...options });
  created.setDefaultTimeout(WAIT_MS);
  created.setDefaultNavigationTimeout(WAIT_MS);
  return created;
}

async function screenshot(target: Page, name: string): Promise<void> {
  const path = join(SHOTS, `${name}.png`);
  await target.screenshot({ path, fullPage: true, animations: 'disabled' });
  screenshots.push(name);
}

async function heading(target: Page): Promise<string> {
  return (await target.getByRole('heading', { level: 1 }).textContent())?.trim() ?? '';
}

interface Submitted {
  status: number;
  url: string;
  /** The request headers a server judges a form post's origin by. */
  origin: string | undefined;
  fetchSite: string | undefined;
}

/**
 * Does `act` (a click or key press that submits a form) and waits until the page that answers has loaded, even
 * when it has the same address as the form's page. Answers what was posted where, and the answer's status.
 */
async function submit(target: Page, act: () => Promise<void>): Promise<Submitted> {
  const [response] = await Promise.all([
    target.waitForResponse((r) => r.request().method() === 'POST'),
    target.waitForEvent('framenavigated', { predicate: (frame) => frame === target.mainFrame() }),
    act(),
  ]);
  await target.waitForLoadState('domcontentloaded');
  const headers = await response.request().allHeaders();
  return {
    status: response.status(),
    url: response.url(),
    origin: headers.origin,
    fetchSite: headers['sec-fetch-site'],
  };
}

/** Fills the sign-in form by its labels and submits it with Enter. */
async function signIn(target: Page, user: string, code?: string): Promise<Submitted> {
  await target.goto('/console/sign-in');
  await target.getByLabel('User name', { exact: true }).fill(user);
  await target.getByLabel('Password', { exact: true }).fill(TEST_PASSWORD);
  if (code !== undefined) await target.getByLabel('Authentication code', { exact: true }).fill(code);
  return submit(target, () => target.getByLabel('Password', { exact: true }).press('Enter'));
}

async function signingKeys() {
  return server.app.db.selectFrom('signing_key').select(['kid', 'revoked_at']).orderBy('kid').execute();
}

/** A client_credentials grant with a DPoP proof, made by oauth4webapi as any client of Mayfly would. */
async function requestToken(credentials: { clientId: string; secret: string }) {
  const issuer = new URL(server.url);
  const as = await oauth.processDiscoveryResponse(
    issuer,
    await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure }),
  );
  const client: oauth.Client = { client_id: credentials.clientId };
  const dpop = oauth.DPoP(client, await oauth.generateKeyPair('ES256'));
  const response = await oauth.clientCredentialsGrantRequest(
    as,
    client,
    oauth.ClientSecretBasic(credentials.secret),
    { resource: API, scope: 'orders:read' },
    { DPoP: dpop, ...insecure },
  );
  return oauth.processClientCredentialsResponse(as, client, response).then(
    async (result) => ({ result, jkt: await dpop.calculateThumbprint(), jwksUri: as.jwks_uri ?? '' }),
    (error: unknown) => ({ error }),
  );
}

/** The token is issued, DPoP-bound to the proof's key, for the resource and scope asked. */
async function expectToken(credentials: { clientId: string; secret: string }): Promise<void> {
  const outcome = await requestToken(credentials);
  if ('error' in outcome) {
    const { error } = outcome;
    throw new Error(`no token: ${error instanceof Error ? `${error.name}: ${error.message}` : 'unknown'}`);
  }
  const { result, jkt, jwksUri } = outcome;
  expect(result.token_type).toBe('dpop');
  expect(result.scope).toBe('orders:read');
  const { payload } = await jwtVerify<AccessTokenClaims>(
    result.access_token,
    createRemoteJWKSet(new URL(jwksUri)),
    {
      issuer: server.url,
      audience: API,
      typ: 'at+jwt',
    },
  );
  expect(payload.client_id).toBe(credentials.clientId);
  expect(payload.cnf).toEqual({ jkt });
}

/** The grant is refused the way RFC 6749 §5.2 says for a client that authenticated with HTTP Basic. */
async function expectInvalidClient(credentials: { clientId: string; secret: string }): Promise<void> {
  const outcome = await requestToken(credentials);
  expect('error' in outcome, 'the token request should be refused').toBe(true);
  const { error } = outcome as { error: unknown };
  expect(error).toBeInstanceOf(oauth.WWWAuthenticateChallengeError);
  expect(error).toMatchObject({
    status: 401,
    cause: [{ scheme: 'basic', parameters: { error: 'invalid_client' } }],
  });
}

function need<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`${what} is missing: an earlier step failed`);
  return value;
}

/** Whether the page as a whole scrolls sideways (a wide table inside its own scroller is fine). */
const scrollsSideways = (target: Page) =>
  target.evaluate(() => {
    const { document, innerWidth } = globalThis as unknown as PageGlobals;
    return document.documentElement.scrollWidth > innerWidth;
  });

const focused = (target: Page) =>
  target.evaluate(() => {
    const active = (globalThis as unknown as PageGlobals).document.activeElement;
    return {
      tag: active?.tagName.toLowerCase() ?? '',
      text: active?.textContent?.trim() ?? '',
      id: active?.id ?? '',
      inNav: active?.closest('nav[aria-label="Console"]') !== null,
    };
  });

const MISSING_CHROMIUM = `Chromium is not at ${CHROMIUM}: install it (apt-get install chromium) or set CHROMIUM_PATH`;

// Counted as a failed test, not only a failed suite: a machine without Chromium must not pass as skipped tests.
it('finds Chromium to drive', () => {
  expect(existsSync(CHROMIUM), MISSING_CHROMIUM).toBe(true);
});

// One browser and one server, one step after another: each step builds on the state the previous ones left.
describe('the web console in Chromium', { concurrent: false, shuffle: false }, () => {
  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(MISSING_CHROMIUM);
    await rm(SHOTS, { recursive: true, force: true });
    await mkdir(SHOTS, { recursive: true });
    server = await startTestServer({
      clock,
      env: { MAYFLY_CONSOLE_IDLE_TIMEOUT: String(IDLE_TIMEOUT_SECONDS) },
    });
    cleanups.push(() => server.close());
    await createConsoleUser(server, WRITER, { role: 'write' });
    // Playwright starts Chromium with --no-sandbox unless `chromiumSandbox` is set, so it runs as root too.
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, timeout: 30_000 });
    // Closing the browser closes every context and page opened in it.
    cleanups.push(() => browser.close());
    context = await newContext();
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.url });
    page = await context.newPage();
  });

  afterAll(async () => {
    const failures: unknown[] = [];
    for (const cleanup of cleanups.reverse()) await cleanup().catch((error: unknown) => failures.push(error));
    if (failures.length) throw new AggregateError(failures, 'closing the browser or a server failed');
  });

  it('signs a write user in through the form and shows the overview', async () => {
    const response = await page.goto('/console');
    // Not signed in: sent to sign-in, without the "session ended" message.
    expect(new URL(page.url()).pathname).toBe('/console/sign-in');
    expect(response?.status()).toBe(200);
    expect(await heading(page)).toBe('Sign in');
    expect(await page.getByRole('status').count()).toBe(0);
    await screenshot(page, 'sign-in');

    const posted = await signIn(page, WRITER);
    if (page.url() !== `${server.url}/console`) {
      // Say why: the message shown, and the headers the server judges a form post's origin by.
      const shown = (await page.getByRole('alert').allTextContents()).join(' ').trim();
      throw new Error(
        `the sign-in form was refused with ${posted.status} (${shown || 'no message'}); Chromium posted it ` +
          `with Origin: ${posted.origin ?? '(none)'}, Sec-Fetch-Site: ${posted.fetchSite ?? '(none)'}`,
      );
    }
    expect(posted).toMatchObject({ status: 303, url: `${server.url}/console/sign-in` });
    expect(await heading(page)).toBe('Overview');
    expect(await page.locator('header').textContent()).toContain(WRITER);
    expect(await page.getByRole('heading', { name: 'Signing keys' }).count()).toBe(1);
    expect(server.logs.audit('console_sign_in').at(-1)).toMatchObject({ outcome: 'success', user: WRITER });
    await screenshot(page, 'overview');
  });

  it('creates a resource: a wrong form comes back with its errors, a right one is listed', async () => {
    await page.goto('/console/resources');
    expect(await heading(page)).toBe('Resources');
    await page.getByRole('link', { name: 'Create a resource' }).click();
    await page.waitForURL(`${server.url}/console/resources/new`);
    expect(await heading(page)).toBe('Create a resource');

    await page.getByLabel('Identifier', { exact: true }).fill('orders api');
    await page.getByLabel('Scopes', { exact: true }).fill('orders:read');
    const refused = await submit(page, () => page.getByRole('button', { name: 'Create resource' }).click());
    expect(refused).toMatchObject({ status: 400, url: `${server.url}/console/resources/new` });
    await page.getByRole('heading', { name: 'There is a problem' }).waitFor();
    const problem = page.locator('#error-identifier');
    expect(await problem.textContent()).toMatch(/URI/);
    expect(await page.getByLabel('Identifier', { exact: true }).getAttribute('aria-invalid')).toBe('true');
    // What was typed comes back, to be corrected rather than typed again.
    expect(await page.getByLabel('Scopes', { exact: true }).inputValue()).toContain('orders:read');
    await screenshot(page, 'resource-form-errors');

    await page.getByLabel('Identifier', { exact: true }).fill(API);
    await page.getByLabel('Name (optional)', { exact: true }).fill(API_NAME);
    await page.getByLabel('Scopes', { exact: true }).fill('orders:read orders:write');
    const created = await submit(page, () => page.getByRole('button', { name: 'Create resource' }).click());
    expect(created.status).toBe(303);
    expect(page.url()).toMatch(/\/console\/resources\/[0-9a-f-]{36}$/);
    expect(await page.getByRole('status').textContent()).toContain(`Resource ${API} created.`);
    expect(await heading(page)).toBe(API_NAME);

    const stored = await server.app.db
      .selectFrom('resource')
      .select(['id', 'name', 'scopes'])
      .where('identifier', '=', API)
      .executeTakeFirst();
    expect(stored).toMatchObject({ name: API_NAME, scopes: ['orders:read', 'orders:write'] });
    expect(page.url()).toBe(`${server.url}/console/resources/${stored?.id ?? ''}`);

    await page.getByRole('link', { name: 'Resources', exact: true }).click();
    await page.waitForURL(`${server.url}/console/resources`);
    const row = page.getByRole('row').filter({ hasText: API });
    expect(await row.count()).toBe(1);
    expect(await row.getByRole('link').textContent()).toBe(API_NAME);
    expect(await row.textContent()).toMatch(/orders:read\s*orders:write/);
    await screenshot(page, 'resources');
  });

  it('registers a client with a grant; its copied secret obtains a DPoP-bound token through oauth4webapi', async () => {
    await page.goto('/console/clients');
    await page.getByRole('link', { name: 'Register a client' }).click();
    await page.waitForURL(`${server.url}/console/clients/new`);
    expect(await heading(page)).toBe('Register a client');
    await page.getByLabel('Name', { exact: true }).fill(CLIENT_NAME);
    expect(await page.getByLabel('Authentication method').inputValue()).toBe('client_secret_basic');
    const grant = page
      .getByRole('group', { name: 'Grants', exact: true })
      .getByRole('group', { name: `${API_NAME} (${API})` });
    await grant.getByRole('checkbox', { name: 'orders:read', exact: true }).check();

    const created = await submit(page, () => page.getByRole('button', { name: 'Register client' }).click());
    expect(created).toMatchObject({ status: 201, url: `${server.url}/console/clients/new` });
    expect(await heading(page)).toBe(`Client ${CLIENT_NAME} registered`);
    const clientId = (await page.locator('#client-id').textContent()) ?? '';
    const shown = (await page.locator('#client-secret').textContent()) ?? '';
    expect(shown.length).toBeGreaterThanOrEqual(32);

    const stored = await server.app.db
      .selectFrom('client')
      .select(['id', 'name', 'auth_method', 'disabled_at'])
      .where('id', '=', clientId)
      .executeTakeFirst();
    expect(stored).toEqual({
      id: clientId,
      name: CLIENT_NAME,
      auth_method: 'client_secret_basic',
      disabled_at: null,
    });
    const secretHashes = await server.app.db
      .selectFrom('client_secret')
      .select('secret_hash')
      .where('client_id', '=', clientId)
      .execute();
    expect(secretHashes.map((row) => row.secret_hash)).toEqual([digest(shown)]);

    // The copy button puts exactly the secret shown on the clipboard.
    await page.getByRole('button', { name: 'Copy the secret' }).click();
    await page.locator('#client-secret-status').getByText('Copied to the clipboard.').waitFor();
    const copied = await page.evaluate(() =>
      (globalThis as unknown as PageGlobals).navigator.clipboard.readText(),
    );
    expect(digest(copied), 'the clipboard holds the secret shown').toBe(digest(shown));
    registered = { clientId, secret: copied };

    // Secrets never go into an artifact: the screenshot shows a stand-in.
    await page.evaluate(() => {
      const code = (globalThis as unknown as PageGlobals).document.getElementById('client-secret');
      if (code) code.textContent = '•••••••• (secret hidden in screenshots)';
    });
    expect((await page.content()).includes(shown)).toBe(false);
    await screenshot(page, 'client-secret');

    await expectToken(registered);
    expect(server.logs.text().includes(shown), 'the secret is in the server log').toBe(false);
  });

  it('disables the client: its token request is refused; enabling it serves it again', async () => {
    const { clientId } = need(registered, 'the registered client');
    await page.goto('/console/clients');
    const row = page.getByRole('row').filter({ hasText: clientId });
    expect(await row.getByRole('link').textContent()).toBe(CLIENT_NAME);
    expect(await row.textContent()).toContain('Enabled');
    await screenshot(page, 'clients');

    await row.getByRole('link', { name: CLIENT_NAME }).click();
    await page.waitForURL(`${server.url}/console/clients/${clientId}`);
    expect(await heading(page)).toBe(CLIENT_NAME);
    await screenshot(page, 'client');

    const disabling = await submit(page, () =>
      page.getByRole('button', { name: `Disable ${CLIENT_NAME}` }).click(),
    );
    expect(disabling).toMatchObject({
      status: 303,
      url: `${server.url}/console/clients/${clientId}/disable`,
    });
    expect(new URL(page.url()).pathname).toBe(`/console/clients/${clientId}`);
    expect(await page.getByRole('button', { name: `Enable ${CLIENT_NAME}` }).count()).toBe(1);
    expect(await page.getByRole('status').textContent()).toContain(`${CLIENT_NAME} is disabled`);
    expect(await page.locator('dl.details').textContent()).toContain('Disabled');
    const disabled = await server.app.db
      .selectFrom('client')
      .select('disabled_at')
      .where('id', '=', clientId)
      .executeTakeFirstOrThrow();
    expect(disabled.disabled_at).toBeInstanceOf(Date);
    await expectInvalidClient(need(registered, 'the registered client'));

    const enabling = await submit(page, () =>
      page.getByRole('button', { name: `Enable ${CLIENT_NAME}` }).click(),
    );
    expect(enabling).toMatchObject({ status: 303, url: `${server.url}/console/clients/${clientId}/enable` });
    expect(await page.getByRole('button', { name: `Disable ${CLIENT_NAME}` }).count()).toBe(1);
    expect(await page.getByRole('status').textContent()).toContain(`${CLIENT_NAME} is enabled`);
    expect(await page.locator('dl.details').textContent()).toContain('Enabled');
    await expectToken(need(registered, 'the registered client'));
  });

  it('rotates the client secret with no overlap: the old secret is refused, the new one works', async () => {
    const previous = need(registered, 'the registered client');
    await page.goto(`/console/clients/${previous.clientId}`);
    await page.getByLabel('Previous secret keeps working for (seconds, optional)').fill('0');
    const rotated = await submit(page, () =>
      page.getByRole('button', { name: 'Issue a new secret' }).click(),
    );
    expect(rotated).toMatchObject({
      status: 201,
      url: `${server.url}/console/clients/${previous.clientId}/rotate-secret`,
    });
    expect(await heading(page)).toBe(`New secret for ${CLIENT_NAME}`);
    expect(await page.getByText('The previous secret no longer works.').count()).toBe(1);

    await page.getByRole('button', { name: 'Copy the secret' }).click();
    await page.locator('#client-secret-status').getByText('Copied to the clipboard.').waitFor();
    const copied = await page.evaluate(() =>
      (globalThis as unknown as PageGlobals).navigator.clipboard.readText(),
    );
    const shown = (await page.locator('#client-secret').textContent()) ?? '';
    expect(digest(copied), 'the clipboard holds the new secret shown').toBe(digest(shown));
    expect(digest(copied), 'a new secret').not.toBe(digest(previous.secret));
    registered = { clientId: previous.clientId, secret: copied };
    // Shown once: the client's page has no secret on it.
    await page.getByRole('link', { name: 'Go to the client’s page' }).click();
    await page.waitForURL(`${server.url}/console/clients/${previous.clientId}`);
    expect((await page.content()).includes(shown)).toBe(false);

    await expectInvalidClient(previous);
    await expectToken(registered);
  });

  it('rotates a signing key, lists the successor as published, and revokes it after confirmation', async () => {
    const before = await signingKeys();
    await page.goto('/console/keys');
    expect(await heading(page)).toBe('Signing keys');
    await submit(page, () => page.getByRole('button', { name: 'Rotate now', exact: true }).click());
    expect(page.url()).toBe(`${server.url}/console/keys`);

    const after = await signingKeys();
    const added = after.filter((key) => !before.some((old) => old.kid === key.kid));
    expect(added).toHaveLength(1);
    const kid = added[0]?.kid ?? '';
    expect(await page.getByRole('status').textContent()).toContain(`Key ${kid} is published`);
    const row = page.getByRole('row').filter({ hasText: kid });
    expect(await row.textContent()).toContain('Published (not signing yet)');
    await screenshot(page, 'keys');

    await row.getByRole('link', { name: 'Revoke…' }).click();
    await page.waitForURL(`${server.url}/console/keys/${kid}/revoke`);
    expect(await heading(page)).toBe(`Revoke key ${kid}?`);
    await submit(page, () => page.getByRole('button', { name: `Revoke key ${kid}` }).click());
    expect(page.url()).toBe(`${server.url}/console/keys`);
    expect(await page.getByRole('status').textContent()).toContain(`Key ${kid} is revoked`);
    expect(await page.getByRole('row').filter({ hasText: kid }).textContent()).toContain('Revoked');
    const revoked = (await signingKeys()).find((key) => key.kid === kid);
    expect(revoked?.revoked_at).toBeInstanceOf(Date);
  });

  it('shows the changes made in the console in the audit trail, attributed to the user', async () => {
    const { clientId } = need(registered, 'the registered client');
    await page.goto('/console/audit');
    expect(await heading(page)).toBe('Audit trail');
    await page.getByLabel('Admin', { exact: true }).fill(`user:${WRITER}`);
    await page.getByRole('button', { name: 'Filter', exact: true }).click();
    await page.waitForURL(/\/console\/audit\?/);

    const stored = await server.app.db
      .selectFrom('audit_event')
      .select(['action', 'target_id'])
      .where('actor', '=', `user:${WRITER}`)
      .orderBy('id', 'desc')
      .execute();
    expect(stored.map((event) => event.action)).toEqual(
      expect.arrayContaining(['resource.create', 'client.create']),
    );
    expect(stored.some((event) => event.target_id === clientId)).toBe(true);

    // Newest first, as stored, every one by this user.
    const rows = page.locator('tbody tr');
    const cells = async (label: string) =>
      (await rows.locator(`[data-label="${label}"]`).allTextContents()).map((text) => text.trim());
    expect(await cells('Action')).toEqual(stored.map((event) => event.action));
    expect(new Set(await cells('Actor'))).toEqual(new Set([`user:${WRITER}`]));
    await screenshot(page, 'audit');
  });

  it('signs in a user with a second factor: a right code once, never a wrong or reused one', async () => {
    const user = await createConsoleUser(server, 'browser-totp', { role: 'read', totp: true });
    const totp = new OTPAuth.TOTP({
      secret: OTPAuth.Secret.fromBase32(user.totp_enrolment?.secret ?? ''),
      algorithm: 'SHA1',
      digits: 6,
      period: 30,
    });
    const totpPage = await (await newContext()).newPage();

    // A code valid for none of the steps the server accepts (now, and one either side).
    const now = Date.now();
    const valid = new Set([-30_000, 0, 30_000].map((drift) => totp.generate({ timestamp: now + drift })));
    let wrong = totp.generate({ timestamp: now });
    while (valid.has(wrong)) wrong = String((Number(wrong) + 1) % 1_000_000).padStart(6, '0');
    await signIn(totpPage, 'browser-totp', wrong);
    expect(new URL(totpPage.url()).pathname).toBe('/console/sign-in');
    expect(await totpPage.getByRole('alert').textContent()).toContain(
      'The user name, password or authentication code is not right.',
    );
    // The name typed is kept, the password is not.
    expect(await totpPage.getByLabel('User name', { exact: true }).inputValue()).toBe('browser-totp');
    expect(await totpPage.getByLabel('Password', { exact: true }).inputValue()).toBe('');

    const code = totp.generate();
    await signIn(totpPage, 'browser-totp', code);
    expect(totpPage.url()).toBe(`${server.url}/console`);
    expect(await heading(totpPage)).toBe('Overview');
    expect(await totpPage.locator('header').textContent()).toContain('browser-totp (read only)');

    // The same code again, from another browser: refused, it was used.
    const replayPage = await (await newContext()).newPage();
    await signIn(replayPage, 'browser-totp', code);
    expect(new URL(replayPage.url()).pathname).toBe('/console/sign-in');
    expect(await replayPage.getByRole('alert').textContent()).toContain(
      'The user name, password or authentication code is not right.',
    );
    expect(
      server.logs
        .audit('console_sign_in')
        .filter((line) => line.user === 'browser-totp')
        .map((line) => [line.outcome, line.reason]),
    ).toEqual([
      ['failure', 'wrong or reused authentication code'],
      ['success', undefined],
      ['failure', 'wrong or reused authentication code'],
    ]);
  });

  it('refuses a form whose security token was tampered with', async () => {
    const before = await signingKeys();
    await page.goto('/console/keys');
    await page.evaluate(() => {
      const { document } = globalThis as unknown as PageGlobals;
      for (const input of document.querySelectorAll('input[name="_csrf"]')) {
        input.value = 'tampered-token';
      }
    });
    const refused = await submit(page, () =>
      page.getByRole('button', { name: 'Rotate now', exact: true }).click(),
    );
    expect(refused).toMatchObject({ status: 403, url: `${server.url}/console/keys/rotate` });
    expect(await heading(page)).toBe('Form refused');
    expect(await page.getByRole('alert').textContent()).toContain(
      'this form was not sent from a current console page',
    );
    expect(await signingKeys()).toEqual(before);

    // The session itself is untouched: the keys page still opens.
    await page.goto('/console/keys');
    expect(await heading(page)).toBe('Signing keys');
  });

  it('refuses a form posted to the console from a page of another origin, even with a valid token', async () => {
    await page.goto('/console/keys');
    // The token is taken from the signed-in page, as if it had leaked: the origin alone must refuse the post.
    const token = await page.locator('input[name="_csrf"]').first().inputValue();
    const target = `${server.url}/console/keys/rotate`;
    const attacker = await listen((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(
        `<!doctype html><title>Prize</title><form method="post" action="${target}">` +
          `<input type="hidden" name="_csrf" value="${token}"><input type="hidden" name="immediate" value="true">` +
          `</form><script>document.forms[0].submit()</script>`,
      );
    });
    cleanups.push(() => attacker.close());
    expect(new URL(attacker.url).origin).not.toBe(new URL(server.url).origin);

    const before = await signingKeys();
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.url() === target && r.request().method() === 'POST'),
      page.goto(attacker.url),
    ]);
    expect(response.status()).toBe(403);
    await page.waitForURL(target);
    expect(await heading(page)).toBe('Form refused');
    expect(await signingKeys()).toEqual(before);
    expect(server.logs.audit('console_request').at(-1)).toMatchObject({
      outcome: 'failure',
      method: 'POST',
      path: '/console/keys/rotate',
      status: 403,
      user: WRITER,
      error: 'csrf_token_invalid',
    });
  });

  it('can be used with the keyboard: skip link, navigation, and sign-in', async () => {
    const keyboardPage = await (await newContext()).newPage();
    await keyboardPage.goto('/console/sign-in');
    await keyboardPage.keyboard.press('Tab');
    expect(await focused(keyboardPage)).toMatchObject({ tag: 'a', text: 'Skip to content' });
    await keyboardPage.keyboard.press('Tab');
    expect(await focused(keyboardPage)).toMatchObject({ id: 'field-user' });
    await keyboardPage.keyboard.type(WRITER);
    await keyboardPage.keyboard.press('Tab');
    expect(await focused(keyboardPage)).toMatchObject({ id: 'field-password' });
    await keyboardPage.keyboard.type(TEST_PASSWORD);
    await keyboardPage.keyboard.press('Tab');
    expect(await focused(keyboardPage)).toMatchObject({ id: 'field-code' });
    await keyboardPage.keyboard.press('Tab');
    expect(await focused(keyboardPage)).toMatchObject({ tag: 'button', text: 'Sign in' });
    await Promise.all([
      keyboardPage.waitForURL(`${server.url}/console`),
      keyboardPage.keyboard.press('Enter'),
    ]);
    expect(await heading(keyboardPage)).toBe('Overview');

    // From the top of a signed-in page: the skip link first, then the navigation.
    await keyboardPage.keyboard.press('Tab');
    expect(await focused(keyboardPage)).toMatchObject({ tag: 'a', text: 'Skip to content' });
    let reached: Awaited<ReturnType<typeof focused>> | undefined;
    for (let presses = 0; presses < 3 && !reached?.inNav; presses++) {
      await keyboardPage.keyboard.press('Tab');
      reached = await focused(keyboardPage);
    }
    expect(reached).toMatchObject({ tag: 'a', text: 'Overview', inNav: true });

    // The skip link moves the focus to the page's content.
    await keyboardPage.reload();
    await keyboardPage.keyboard.press('Tab');
    await keyboardPage.keyboard.press('Enter');
    expect(await focused(keyboardPage)).toMatchObject({ tag: 'main', id: 'main' });
  });

  it('fits a 360 px wide screen: the clients list and a client page do not scroll sideways', async () => {
    const { clientId } = need(registered, 'the registered client');
    // The same session as the main window, on a phone-sized screen.
    const phone = await newContext({
      viewport: { width: 360, height: 740 },
      storageState: await context.storageState(),
    });
    const phonePage = await phone.newPage();
    await phonePage.goto('/console/clients');
    expect(await heading(phonePage)).toBe('Clients');
    expect(await phonePage.getByRole('link', { name: CLIENT_NAME }).isVisible()).toBe(true);
    expect(await scrollsSideways(phonePage)).toBe(false);
    await screenshot(phonePage, 'clients-narrow');

    await phonePage.goto(`/console/clients/${clientId}`);
    expect(await heading(phonePage)).toBe(CLIENT_NAME);
    expect(await scrollsSideways(phonePage)).toBe(false);
    expect(await phonePage.getByRole('button', { name: `Disable ${CLIENT_NAME}` }).isVisible()).toBe(true);
  });

  it('ends the session on sign-out: going back or returning leads to sign-in', async () => {
    await page.goto('/console');
    const [cookie] = (await context.cookies(`${server.url}/console`)).filter(
      (c) => c.name === 'mayfly-console',
    );
    expect(cookie?.httpOnly).toBe(true);
    expect(cookie?.sameSite).toBe('Strict');

    await submit(page, () => page.getByRole('button', { name: 'Sign out' }).click());
    expect(page.url()).toBe(`${server.url}/console/sign-in?signed_out=1`);
    expect(await page.getByRole('status').textContent()).toContain('You have signed out.');

    await page.goBack();
    await page.waitForLoadState('domcontentloaded');
    expect(new URL(page.url()).pathname).toBe('/console/sign-in');
    expect(await heading(page)).toBe('Sign in');
    await page.goto('/console');
    expect(new URL(page.url()).pathname).toBe('/console/sign-in');

    // The session is gone on the server, not only the cookie in this browser.
    const replay = await fetch(`${server.url}/console`, {
      headers: { cookie: `mayfly-console=${cookie?.value ?? ''}` },
      redirect: 'manual',
    });
    expect(replay.status).toBe(303);
    expect(replay.headers.get('location')).toBe('/console/sign-in?ended=1');
  });

  // Last: it moves the server's clock forward.
  it(`ends a session left idle for more than MAYFLY_CONSOLE_IDLE_TIMEOUT (${IDLE_TIMEOUT_SECONDS} s)`, async () => {
    const idlePage = await (await newContext()).newPage();
    await signIn(idlePage, WRITER);
    expect(await heading(idlePage)).toBe('Overview');

    // Within the timeout, each page view keeps the session alive.
    clock.offsetMs += (IDLE_TIMEOUT_SECONDS - 5) * 1000;
    await idlePage.goto('/console/keys');
    expect(await heading(idlePage)).toBe('Signing keys');

    clock.offsetMs += (IDLE_TIMEOUT_SECONDS + 1) * 1000;
    await idlePage.goto('/console/keys');
    expect(idlePage.url()).toBe(`${server.url}/console/sign-in?ended=1`);
    expect(await heading(idlePage)).toBe('Sign in');
    expect(await idlePage.getByRole('status').textContent()).toContain(
      'Your session has ended. Sign in again to continue.',
    );
  });

  it('saved a non-empty screenshot of every main page', async () => {
    const expected = [
      'sign-in',
      'overview',
      'resources',
      'resource-form-errors',
      'clients',
      'client-secret',
      'client',
      'keys',
      'audit',
      'clients-narrow',
    ];
    expect(screenshots).toEqual(expect.arrayContaining(expected));
    for (const name of expected) {
      const file = await stat(join(SHOTS, `${name}.png`));
      expect(file.size, name).toBeGreaterThan(1000);
    }
  });
});
