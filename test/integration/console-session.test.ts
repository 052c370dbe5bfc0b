import { TOTP, Secret } from 'otpauth';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Clock } from '../../src/clock.ts';
import { updateAdminUser, deleteAdminUser } from '../../src/console/admin-user.service.ts';
import { ConsoleSession, createConsoleUser, signedIn, TEST_PASSWORD } from '../support/console.ts';
import { startTestServer, TEST_ACTOR, type TestServer } from '../support/server.ts';

/**
 * The console's doors: sign-in (password, optional TOTP, throttling), sessions (cookie flags, idle and absolute
 * expiry, ending on credential changes), CSRF protection of every form, the page security headers, and the audit
 * of console actions under the person's name.
 */
const clock: Clock & { offsetMs: number } = {
  offsetMs: 0,
  now: () => new Date(Date.now() + clock.offsetMs),
};

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({
    clock,
    env: {
      MAYFLY_CONSOLE_IDLE_TIMEOUT: '600',
      MAYFLY_CONSOLE_SESSION_LIFETIME: '3600',
      // This file signs in from one address far more often than a person would; throttling has servers of its own.
      MAYFLY_CONSOLE_SIGNIN_PER_ADDRESS: '10000',
      MAYFLY_CONSOLE_SIGNIN_PER_USER: '10000',
      MAYFLY_AUTH_FAILURE_SLOW_AFTER: '1000',
      MAYFLY_AUTH_FAILURE_BLOCK_AFTER: '2000',
    },
  });
});
afterAll(() => server.close());

const keyCount = async () =>
  Number(
    (
      await server.app.db
        .selectFrom('signing_key')
        .select((eb) => eb.fn.countAll().as('n'))
        .executeTakeFirstOrThrow()
    ).n,
  );

describe('pages', () => {
  it('answers a strict CSP, no-store and no framing on every page, sign-in included', async () => {
    const session = await signedIn(server, 'headers');
    for (const path of ['/console/sign-in', '/console', '/console/keys', '/console/no-such-page']) {
      const page = await session.get(path);
      const csp = page.headers.get('content-security-policy') ?? '';
      expect(csp).toContain("default-src 'none'");
      expect(csp).toContain("script-src 'self'");
      expect(csp).toContain("form-action 'self'");
      expect(csp).toContain("frame-ancestors 'none'");
      expect(csp).not.toContain('unsafe-inline');
      expect(page.headers.get('cache-control')).toBe('no-store');
      expect(page.headers.get('x-frame-options')).toBe('DENY');
      // Browsers then send the console's origin with its own form posts (under no-referrer they send `null`).
      expect(page.headers.get('referrer-policy')).toBe('same-origin');
      expect(page.text).not.toContain('name="referrer"');
      expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    }
    expect((await session.get('/console/no-such-page')).status).toBe(404);
  });

  it('serves its script and stylesheet from its own origin, and no page has inline script or style', async () => {
    const session = await signedIn(server, 'assets');
    const css = await session.get('/console/assets/console.css');
    expect(css.status).toBe(200);
    expect(css.headers.get('content-type')).toMatch(/^text\/css/);
    const js = await session.get('/console/assets/console.js');
    expect(js.headers.get('content-type')).toMatch(/^text\/javascript/);
    for (const path of ['/console', '/console/keys', '/console/sign-in']) {
      const { text } = await session.get(path);
      expect(text).not.toMatch(/<script(?![^>]*\bsrc=)/);
      expect(text).not.toMatch(/\sstyle=|\son[a-z]+=/);
    }
  });

  it('sends a person without a session to sign-in, whatever the page or method', async () => {
    const anonymous = new ConsoleSession(server);
    for (const path of ['/console', '/console/keys', '/console/no-such-page']) {
      const page = await anonymous.get(path);
      expect(page.status).toBe(303);
      expect(page.location).toBe('/console/sign-in');
    }
    const before = await keyCount();
    const post = await anonymous.post('/console/keys/rotate', { _csrf: 'x' });
    expect(post.status).toBe(303);
    expect(post.location).toBe('/console/sign-in');
    expect(await keyCount()).toBe(before);
  });

  it('refuses other methods, other content types and oversized forms with a page, never a 500', async () => {
    const session = await signedIn(server, 'methods');
    const put = await fetch(`${server.url}/console/keys`, {
      method: 'PUT',
      headers: { cookie: [...session.cookies].map(([n, v]) => `${n}=${v}`).join('; ') },
    });
    expect(put.status).toBe(405);
    expect(put.headers.get('allow')).toBe('GET');
    const json = await session.post('/console/keys/rotate', {}, { 'content-type': 'application/json' });
    expect(json.status).toBe(415);
    expect(json.text).toContain('form posts only');
    const big = await session.post('/console/keys/rotate', { padding: 'x'.repeat(70 * 1024) });
    expect(big.status).toBe(413);
  });
});

describe('sign-in', () => {
  it('sets an HttpOnly, SameSite=Strict session cookie scoped to /console, with a new id at every sign-in', async () => {
    await createConsoleUser(server, 'cookies');
    const session = new ConsoleSession(server);
    session.cookies.set('mayfly-console', 'planted-by-an-attacker');
    await session.get('/console/sign-in');
    const response = await session.signIn('cookies');
    expect(response.status).toBe(303);
    expect(response.location).toBe('/console');
    const setCookie = response.headers.getSetCookie().find((line) => line.startsWith('mayfly-console='));
    expect(setCookie).toMatch(/; Path=\/console; HttpOnly; SameSite=Strict$/);
    expect(setCookie).not.toContain('Secure');
    const id = session.cookies.get('mayfly-console');
    expect(id).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(id).not.toBe('planted-by-an-attacker');
    // Only the hash is stored.
    const stored = await server.app.db.selectFrom('console_session').select('id_hash').execute();
    expect(stored.map((row) => row.id_hash)).not.toContain(id);
    const again = new ConsoleSession(server);
    await again.signIn('cookies');
    expect(again.cookies.get('mayfly-console')).not.toBe(id);
  });

  it('marks the cookies Secure, with the __Host- prefix (Path=/, no Domain), when the issuer is https', async () => {
    const secure = await startTestServer({ env: { MAYFLY_ISSUER: 'https://console.example' } });
    try {
      await createConsoleUser(secure, 'tls');
      const session = new ConsoleSession(secure);
      const form = await session.get('/console/sign-in');
      expect(form.headers.getSetCookie()[0]).toMatch(
        /^__Host-mayfly-console-sign-in=[\w-]+; Path=\/; HttpOnly; SameSite=Strict; Secure; Max-Age=3600$/,
      );
      const response = await session.post(
        '/console/sign-in',
        { user: 'tls', password: TEST_PASSWORD },
        { origin: 'https://console.example' },
      );
      expect(response.status).toBe(303);
      const cookie = response.headers
        .getSetCookie()
        .find((line) => line.startsWith('__Host-mayfly-console='));
      expect(cookie).toMatch(/; Path=\/; HttpOnly; SameSite=Strict; Secure$/);
      expect((await session.get('/console')).status).toBe(200);
    } finally {
      await secure.close();
    }
  });

  it('gives one message for a wrong password, an unknown user and a disabled user, and logs the reason', async () => {
    await createConsoleUser(server, 'wrong');
    await createConsoleUser(server, 'gone');
    await updateAdminUser(server.app.admin, TEST_ACTOR, 'gone', { status: 'disabled' });
    const answers = [];
    for (const [user, password] of [
      ['wrong', 'not the password at all'],
      ['nobody-here', TEST_PASSWORD],
      ['gone', TEST_PASSWORD],
    ] as const) {
      const session = new ConsoleSession(server);
      const response = await session.signIn(user, password);
      expect(response.status).toBe(401);
      expect(response.text).toContain('The user name, password or authentication code is not right.');
      expect(session.cookies.has('mayfly-console')).toBe(false);
      answers.push(response.text.replace(/value="[^"]*"/g, ''));
    }
    expect(new Set(answers.map((text) => text.replace(/wrong|nobody-here|gone/g, ''))).size).toBe(1);
    const lines = server.logs.audit('console_sign_in').slice(-3);
    expect(lines.map((line) => [line.user, line.outcome, line.reason])).toEqual([
      ['wrong', 'failure', 'wrong password'],
      [undefined, 'failure', 'no such user'],
      ['gone', 'failure', 'user disabled'],
    ]);
    // A name that is no user's may be a password typed in the wrong field: only a short hash of it is logged.
    expect(lines[1]?.unknown_user).toMatch(/^[\w-]{16}$/);
    expect(server.logs.text()).not.toContain('nobody-here');
    expect(server.logs.text()).not.toContain('not the password at all');
    expect(server.logs.text()).not.toContain(TEST_PASSWORD);
  });

  it('refuses a sign-in post without the form token of its page, or from another origin', async () => {
    await createConsoleUser(server, 'login-csrf');
    const noPage = new ConsoleSession(server);
    const blind = await noPage.post('/console/sign-in', {
      _csrf: 'guess',
      user: 'login-csrf',
      password: TEST_PASSWORD,
    });
    expect(blind.status).toBe(403);
    expect(blind.text).toContain('This sign-in form has expired or was not sent from this page.');
    expect(noPage.cookies.has('mayfly-console')).toBe(false);

    const crossSite = new ConsoleSession(server);
    await crossSite.get('/console/sign-in');
    const refused = await crossSite.post(
      '/console/sign-in',
      { user: 'login-csrf', password: TEST_PASSWORD },
      { origin: 'https://evil.example' },
    );
    expect(refused.status).toBe(403);
    expect(crossSite.cookies.has('mayfly-console')).toBe(false);
  });

  it('asks for the user name and password when either is missing', async () => {
    const session = new ConsoleSession(server);
    await session.get('/console/sign-in');
    const response = await session.post('/console/sign-in', { user: 'someone', password: '' });
    expect(response.status).toBe(400);
    expect(response.text).toContain('Enter your user name and password.');
  });

  it('needs the TOTP code of a user with a second factor, accepts each code once, and refuses a wrong one', async () => {
    const created = await createConsoleUser(server, 'two-factor', { totp: true });
    const enrolment = created.totp_enrolment;
    expect(enrolment?.otpauth_uri).toMatch(
      /^otpauth:\/\/totp\/Mayfly%20127\.0\.0\.1%3A\d+:two-factor\?secret=[A-Z2-7]+&/,
    );
    // An independent implementation computes the codes.
    const totp = new TOTP({ secret: Secret.fromBase32(enrolment?.secret ?? ''), digits: 6, period: 30 });
    const code = totp.generate({ timestamp: clock.now().getTime() });

    const without = await new ConsoleSession(server).signIn('two-factor');
    expect(without.status).toBe(401);
    const wrong = await new ConsoleSession(server).signIn(
      'two-factor',
      TEST_PASSWORD,
      code === '000000' ? '111111' : '000000',
    );
    expect(wrong.status).toBe(401);
    const right = new ConsoleSession(server);
    expect((await right.signIn('two-factor', TEST_PASSWORD, code)).location).toBe('/console');
    const replayed = await new ConsoleSession(server).signIn('two-factor', TEST_PASSWORD, code);
    expect(replayed.status).toBe(401);
    const reasons = server.logs
      .audit('console_sign_in')
      .filter((line) => line.user === 'two-factor')
      .map((line) => line.reason ?? 'ok');
    expect(reasons).toEqual([
      'authentication code missing',
      'wrong or reused authentication code',
      'ok',
      'wrong or reused authentication code',
    ]);
    // The seed is stored sealed with the KEK, never in the clear.
    const row = await server.app.db
      .selectFrom('admin_user')
      .select('totp_secret')
      .where('name', '=', 'two-factor')
      .executeTakeFirstOrThrow();
    expect(row.totp_secret).toMatch(/^v1\./);
    expect(row.totp_secret).not.toContain(enrolment?.secret);
  });
});

describe('throttling', () => {
  let throttled: TestServer;
  beforeAll(async () => {
    throttled = await startTestServer({
      env: {
        MAYFLY_CONSOLE_SIGNIN_PER_USER: '4',
        MAYFLY_CONSOLE_SIGNIN_PER_ADDRESS: '12',
        MAYFLY_AUTH_FAILURE_SLOW_AFTER: '100',
        MAYFLY_AUTH_FAILURE_BLOCK_AFTER: '101',
      },
    });
  });
  afterAll(() => throttled.close());

  it('limits attempts per user name, from anywhere, even with the right password', async () => {
    await createConsoleUser(throttled, 'limited');
    for (let i = 0; i < 4; i++) {
      expect((await new ConsoleSession(throttled).signIn('limited', 'wrong password here')).status).toBe(401);
    }
    const refused = await new ConsoleSession(throttled).signIn('limited');
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(refused.text).toMatch(/Too many sign-in attempts\. Wait \d+ seconds, then try again\./);
    const line = throttled.logs.audit('console_sign_in').at(-1);
    expect(line).toMatchObject({
      user: 'limited',
      outcome: 'failure',
      reason: 'too many sign-in attempts for this user',
    });
  });

  it('limits attempts per source address, whatever user they name', async () => {
    // 5 attempts were counted by the test above from this address (the refused one too); 7 more reach 12.
    for (let i = 0; i < 7; i++) {
      expect((await new ConsoleSession(throttled).signIn(`someone-${i}`, 'wrong password here')).status).toBe(
        401,
      );
    }
    const refused = await new ConsoleSession(throttled).signIn('someone-else', 'wrong password here');
    expect(refused.status).toBe(429);
    expect(throttled.logs.audit('console_sign_in').at(-1)).toMatchObject({
      reason: 'too many sign-in attempts from this address',
    });
  });
});

describe('backoff', () => {
  it('blocks a user name from an address after repeated failures, even with the right password next', async () => {
    const blocking = await startTestServer({
      env: { MAYFLY_AUTH_FAILURE_SLOW_AFTER: '2', MAYFLY_AUTH_FAILURE_BLOCK_AFTER: '3' },
    });
    try {
      await createConsoleUser(blocking, 'guessed');
      for (let i = 0; i < 3; i++) {
        expect((await new ConsoleSession(blocking).signIn('guessed', 'wrong password here')).status).toBe(
          401,
        );
      }
      const blocked = await new ConsoleSession(blocking).signIn('guessed');
      expect(blocked.status).toBe(429);
      expect(blocking.logs.audit('console_sign_in').at(-1)).toMatchObject({
        reason: 'blocked after repeated failures',
      });
    } finally {
      await blocking.close();
    }
  });
});

describe('sessions', () => {
  it('end after the idle timeout, and the page says so', async () => {
    const session = await signedIn(server, 'idle');
    clock.offsetMs += 599_000;
    expect((await session.get('/console')).status).toBe(200);
    // Each request restarts the idle period.
    clock.offsetMs += 599_000;
    expect((await session.get('/console')).status).toBe(200);
    clock.offsetMs += 601_000;
    const ended = await session.get('/console');
    expect(ended.status).toBe(303);
    expect(ended.location).toBe('/console/sign-in?ended=1');
    expect(session.cookies.has('mayfly-console')).toBe(false);
    const signInPage = await session.get(ended.location ?? '');
    expect(signInPage.text).toContain('Your session has ended. Sign in again to continue.');
  });

  it('end at their absolute lifetime however active', async () => {
    const session = await signedIn(server, 'busy');
    for (let minutes = 0; minutes < 59; minutes += 5) {
      clock.offsetMs += 5 * 60_000;
      if (minutes < 55) expect((await session.get('/console')).status).toBe(200);
    }
    expect((await session.get('/console')).status).toBe(303);
  });

  it('end at sign-out: the old cookie opens nothing', async () => {
    const session = await signedIn(server, 'leaving');
    const cookie = session.cookies.get('mayfly-console');
    await session.get('/console');
    const out = await session.post('/console/sign-out', {});
    expect(out.status).toBe(303);
    expect(out.location).toBe('/console/sign-in?signed_out=1');
    session.cookies.set('mayfly-console', cookie ?? '');
    expect((await session.get('/console')).status).toBe(303);
  });

  it('end at once when the user is disabled, deleted, or given a new password or second factor', async () => {
    const cases: [string, () => Promise<unknown>][] = [
      ['disabled', () => updateAdminUser(server.app.admin, TEST_ACTOR, 'disabled', { status: 'disabled' })],
      ['deleted', () => deleteAdminUser(server.app.admin, TEST_ACTOR, 'deleted')],
      [
        'repassword',
        () =>
          updateAdminUser(server.app.admin, TEST_ACTOR, 'repassword', { password: 'another long password' }),
      ],
      ['refactor', () => updateAdminUser(server.app.admin, TEST_ACTOR, 'refactor', { totp: 'enroll' })],
    ];
    for (const [name, change] of cases) {
      const session = await signedIn(server, name);
      expect((await session.get('/console')).status).toBe(200);
      await change();
      expect((await session.get('/console')).status).toBe(303);
    }
  });

  it('follow a change of role at the next request', async () => {
    const session = await signedIn(server, 'demoted');
    await session.get('/console/keys');
    await updateAdminUser(server.app.admin, TEST_ACTOR, 'demoted', { role: 'read' });
    const before = await keyCount();
    const refused = await session.post('/console/keys/rotate', {});
    expect(refused.status).toBe(403);
    expect(refused.text).toContain('your role is read only');
    expect(await keyCount()).toBe(before);
  });
});

describe('CSRF', () => {
  it('refuses a form post without its token, with another token, or from another site, and changes nothing', async () => {
    const session = await signedIn(server, 'forms');
    const other = await signedIn(server, 'other-forms');
    await session.get('/console/keys');
    await other.get('/console/keys');
    const before = await keyCount();
    const attempts: [Record<string, string | undefined>, Record<string, string>][] = [
      [{ _csrf: undefined }, {}],
      [{ _csrf: '' }, {}],
      [{ _csrf: 'A'.repeat(43) }, {}],
      [{ _csrf: other.csrf }, {}],
      [{}, { origin: 'https://evil.example' }],
      [{}, { origin: 'null' }],
      [{}, { 'sec-fetch-site': 'cross-site' }],
      [{}, { 'sec-fetch-site': 'same-site' }],
    ];
    for (const [fields, headers] of attempts) {
      const response = await session.post('/console/keys/rotate', fields, headers);
      expect(response.status).toBe(403);
      expect(response.text).toContain('this form was not sent from a current console page');
    }
    expect(await keyCount()).toBe(before);
    const refusals = server.logs
      .audit('console_request')
      .filter((line) => line.user === 'forms' && line.error === 'csrf_token_invalid');
    expect(refusals).toHaveLength(attempts.length);
    // The same post with the page's token, from the page's origin, is accepted.
    const accepted = await session.post('/console/keys/rotate', {}, { 'sec-fetch-site': 'same-origin' });
    expect(accepted.status).toBe(303);
    expect(await keyCount()).toBe(before + 1);
  });

  it('protects sign-out too: a forged post does not end the session', async () => {
    const session = await signedIn(server, 'stays');
    await session.get('/console');
    expect((await session.post('/console/sign-out', { _csrf: 'forged' })).status).toBe(403);
    expect((await session.get('/console')).status).toBe(200);
  });
});

describe('audit', () => {
  it('records a console change under the person, in the trail and the log', async () => {
    const session = await signedIn(server, 'auditor');
    await session.get('/console/keys');
    // Earlier tests published a successor; revoking it is a change of its own.
    const published = await server.app.db
      .selectFrom('signing_key')
      .select('kid')
      .where('revoked_at', 'is', null)
      .where('activates_at', '>', clock.now())
      .executeTakeFirstOrThrow();
    const confirm = await session.get(`/console/keys/${published.kid}/revoke`);
    expect(confirm.text).toContain(`Revoke key ${published.kid}?`);
    const revoked = await session.post(`/console/keys/${published.kid}/revoke`, {});
    expect(revoked.status).toBe(303);
    const events = await server.app.db
      .selectFrom('audit_event')
      .select(['actor', 'action', 'target_id'])
      .where('actor', '=', 'user:auditor')
      .execute();
    expect(events).toContainEqual({
      actor: 'user:auditor',
      action: 'signing_key.revoke',
      target_id: published.kid,
    });
    // Revoking a published successor reschedules the active key's retirement, under the same person.
    expect(events.every((event) => event.action.startsWith('signing_key.'))).toBe(true);
    expect(server.logs.audit('admin_change').some((line) => line.actor === 'user:auditor')).toBe(true);
    const requests = server.logs.audit('console_request').filter((line) => line.user === 'auditor');
    expect(requests.map((line) => [line.method, line.path, line.status])).toEqual(
      expect.arrayContaining([
        ['GET', '/console/keys', 200],
        ['POST', `/console/keys/${published.kid}/revoke`, 303],
      ]),
    );
    // The notice of the change is shown once, on the next page.
    const next = await session.get('/console/keys');
    expect(next.text).toContain(`class="notice" role="status">Key ${published.kid} is revoked.`);
    expect((await session.get('/console/keys')).text).not.toContain('class="notice"');
  });
});

describe('review fixes', () => {
  it('refuses a form of more than 1000 fields before reading them into anything', async () => {
    const anonymous = new ConsoleSession(server);
    await anonymous.get('/console/sign-in');
    const flood = await anonymous.post('/console/sign-in', { a: Array<string>(20_000).fill('') });
    expect(flood.status).toBe(400);
    expect(flood.text).toContain('a console form has at most 1000 fields');
    // The server still answers at once afterwards.
    expect((await new ConsoleSession(server).get('/console/sign-in')).status).toBe(200);
  });

  it('lets a user sign in from a browser they signed in with before while others spend the per-user limit', async () => {
    const limited = await startTestServer({
      env: {
        MAYFLY_CONSOLE_SIGNIN_PER_USER: '3',
        MAYFLY_TRUST_PROXY: 'true',
        MAYFLY_AUTH_FAILURE_SLOW_AFTER: '100',
        MAYFLY_AUTH_FAILURE_BLOCK_AFTER: '101',
      },
    });
    try {
      await createConsoleUser(limited, 'victim');
      const own = new ConsoleSession(limited);
      const from = (address: string) => ({ 'x-forwarded-for': address });
      await own.get('/console/sign-in', from('192.0.2.1'));
      const first = await own.post(
        '/console/sign-in',
        { user: 'victim', password: TEST_PASSWORD },
        from('192.0.2.1'),
      );
      expect(first.status).toBe(303);
      expect(own.cookies.get('mayfly-console-device')).toMatch(/^[\w-]+\.\d+\.\d+\.[\w-]{43}$/);
      // Someone else spends the user's limit from other addresses.
      for (let i = 0; i < 3; i++) {
        const attacker = new ConsoleSession(limited);
        await attacker.get('/console/sign-in', from(`198.51.100.${i}`));
        await attacker.post(
          '/console/sign-in',
          { user: 'victim', password: 'a guess that is wrong' },
          from(`198.51.100.${i}`),
        );
      }
      const stranger = new ConsoleSession(limited);
      await stranger.get('/console/sign-in', from('203.0.113.9'));
      const refused = await stranger.post(
        '/console/sign-in',
        { user: 'victim', password: TEST_PASSWORD },
        from('203.0.113.9'),
      );
      expect(refused.status).toBe(429);
      // The user's own browser is still let in, from a new address too.
      await own.get('/console/sign-in', from('192.0.2.77'));
      const again = await own.post(
        '/console/sign-in',
        { user: 'victim', password: TEST_PASSWORD },
        from('192.0.2.77'),
      );
      expect(again.status).toBe(303);
      // A device cookie for another user, or a forged one, counts for nothing.
      const forger = new ConsoleSession(limited);
      const device = own.cookies.get('mayfly-console-device') ?? '';
      forger.cookies.set('mayfly-console-device', device.replace(/[\w-]{43}$/, 'A'.repeat(43)));
      await forger.get('/console/sign-in', from('203.0.113.10'));
      expect(
        (
          await forger.post(
            '/console/sign-in',
            { user: 'victim', password: TEST_PASSWORD },
            from('203.0.113.10'),
          )
        ).status,
      ).toBe(429);
      // A new password voids the browser's device cookie: it shares the user's (spent) budget again.
      await updateAdminUser(limited.app.admin, TEST_ACTOR, 'victim', {
        password: 'the password after reset',
      });
      await own.get('/console/sign-in', from('192.0.2.78'));
      expect(
        (
          await own.post(
            '/console/sign-in',
            { user: 'victim', password: 'the password after reset' },
            from('192.0.2.78'),
          )
        ).status,
      ).toBe(429);
    } finally {
      await limited.close();
    }
  });

  it('locks the second factor after 10 wrong codes following the right password, until it is enrolled again', async () => {
    const created = await createConsoleUser(server, 'code-guessed', { totp: true });
    const totp = new TOTP({
      secret: Secret.fromBase32(created.totp_enrolment?.secret ?? ''),
      digits: 6,
      period: 30,
    });
    const right = () => totp.generate({ timestamp: clock.now().getTime() });
    const wrong = () => (right() === '000000' ? '111111' : '000000');
    // Forgetting the code is not a guess: it does not count towards the lock.
    for (let i = 0; i < 12; i++) {
      expect((await new ConsoleSession(server).signIn('code-guessed', TEST_PASSWORD, '')).status).toBe(401);
    }
    for (let i = 0; i < 10; i++) {
      expect((await new ConsoleSession(server).signIn('code-guessed', TEST_PASSWORD, wrong())).status).toBe(
        401,
      );
    }
    const locked = await new ConsoleSession(server).signIn('code-guessed', TEST_PASSWORD, right());
    expect(locked.status).toBe(401);
    expect(server.logs.audit('console_sign_in').at(-1)).toMatchObject({ reason: 'second factor locked' });
    expect(server.logs.records().some((line) => line.event === 'console_second_factor_locked')).toBe(true);
    const enrolled = await updateAdminUser(server.app.admin, TEST_ACTOR, 'code-guessed', { totp: 'enroll' });
    const renewed = new TOTP({
      secret: Secret.fromBase32(enrolled.totp_enrolment?.secret ?? ''),
      digits: 6,
      period: 30,
    });
    const fresh = await new ConsoleSession(server).signIn(
      'code-guessed',
      TEST_PASSWORD,
      renewed.generate({ timestamp: clock.now().getTime() }),
    );
    expect(fresh.status).toBe(303);
  });

  it('ends a session whose credentials were read before a credential change committed', async () => {
    const { createSession, findSession } = await import('../../src/console/sessions.ts');
    const { findAdminUser } = await import('../../src/console/admin-user.service.ts');
    await createConsoleUser(server, 'raced');
    // Read for checking, then changed by an administrator before the session is stored.
    const read = await findAdminUser(server.app.db, 'raced');
    await updateAdminUser(server.app.admin, TEST_ACTOR, 'raced', { password: 'changed meanwhile password' });
    const late = await createSession(server.app.db, read!, clock.now(), 3600);
    expect(await findSession(server.app.db, late.id, clock.now(), 600)).toBeUndefined();
    const current = await findAdminUser(server.app.db, 'raced');
    expect(current?.credentials_version).toBe((read?.credentials_version ?? 0) + 1);
    const after = await createSession(server.app.db, current!, clock.now(), 3600);
    expect(await findSession(server.app.db, after.id, clock.now(), 600)).toBeDefined();
    // A role change is not a credential change: the session stays.
    await updateAdminUser(server.app.admin, TEST_ACTOR, 'raced', { role: 'read' });
    expect(await findSession(server.app.db, after.id, clock.now(), 600)).toBeDefined();
  });

  it('refuses a session cookie sent twice (one of them planted), and ends the previous session of a browser signing in again', async () => {
    const session = await signedIn(server, 'twice');
    const first = session.cookies.get('mayfly-console') ?? '';
    const doubled = await fetch(`${server.url}/console`, {
      redirect: 'manual',
      headers: { cookie: `mayfly-console=${first}; mayfly-console=${first}` },
    });
    expect(doubled.status).toBe(303);
    expect(doubled.headers.get('location')).toBe('/console/sign-in?ended=1');
    await session.signIn('twice');
    const second = session.cookies.get('mayfly-console');
    expect(second).not.toBe(first);
    const stale = new ConsoleSession(server);
    stale.cookies.set('mayfly-console', first);
    expect((await stale.get('/console')).status).toBe(303);
    expect((await session.get('/console')).status).toBe(200);
  });

  it('keeps the form of an earlier sign-in tab working', async () => {
    await createConsoleUser(server, 'tabs');
    const browser = new ConsoleSession(server);
    await browser.get('/console/sign-in');
    const firstTab = browser.csrf;
    await browser.get('/console/sign-in');
    expect(browser.csrf).toBe(firstTab);
    expect((await browser.post('/console/sign-in', { user: 'tabs', password: TEST_PASSWORD })).status).toBe(
      303,
    );
  });
});

describe('one-time forms', () => {
  it('refuses a form sent again with the same one-time token, and changes nothing the second time', async () => {
    const session = await signedIn(server, 'reloader');
    await session.get('/console/keys');
    const once = 'B'.repeat(43);
    const first = await session.post('/console/keys/rotate', { _once: once, immediate: 'true' });
    expect(first.status).toBe(303);
    const before = await keyCount();
    await session.get('/console/keys');
    const again = await session.post('/console/keys/rotate', { _once: once, immediate: 'true' });
    expect(again.status).toBe(409);
    expect(again.text).toContain('this form was already sent, and its answer is shown only once');
    expect(await keyCount()).toBe(before);
    const malformed = await session.post('/console/keys/rotate', { _once: 'short' });
    expect(malformed.status).toBe(400);
    // The session remembers the latest 50 tokens only.
    for (let i = 0; i < 60; i++) {
      const token = `${String(i).padStart(2, '0')}${'C'.repeat(41)}`;
      expect((await session.post('/console/keys/rotate', { _once: token })).status).toBe(303);
    }
    const row = await server.app.db
      .selectFrom('console_session')
      .select('sent_forms')
      .where('user_name', '=', 'reloader')
      .executeTakeFirstOrThrow();
    expect(row.sent_forms).toHaveLength(50);
    expect(row.sent_forms.at(-1)).toBe(`59${'C'.repeat(41)}`);
    expect(row.sent_forms[0]).toBe(`10${'C'.repeat(41)}`);
  });
});

describe('password checks at once', () => {
  it('answers 503 beyond 2 concurrent password checks (4 pool threads, 2 left to the token endpoint) instead of queueing them all', async () => {
    const busy = await startTestServer({
      env: {
        MAYFLY_CONSOLE_SIGNIN_PER_ADDRESS: '10000',
        MAYFLY_CONSOLE_SIGNIN_PER_USER: '10000',
        MAYFLY_AUTH_FAILURE_SLOW_AFTER: '1000',
        MAYFLY_AUTH_FAILURE_BLOCK_AFTER: '2000',
      },
    });
    try {
      const sessions = await Promise.all(
        Array.from({ length: 40 }, async () => {
          const session = new ConsoleSession(busy);
          await session.get('/console/sign-in');
          return session;
        }),
      );
      const answers = await Promise.all(
        sessions.map((session, i) =>
          session.post('/console/sign-in', { user: `flood-${i}`, password: 'not a real password' }),
        ),
      );
      const statuses = answers.map((answer) => answer.status);
      expect(statuses.filter((status) => status === 503).length).toBeGreaterThan(0);
      expect(statuses.every((status) => status === 401 || status === 503)).toBe(true);
      const busyAnswer = answers.find((answer) => answer.status === 503);
      expect(busyAnswer?.headers.get('retry-after')).toBe('1');
      expect(busyAnswer?.text).toContain('The server is busy signing others in.');
    } finally {
      await busy.close();
    }
  });
});

describe('MAYFLY_CONSOLE=false', () => {
  it('serves no console at all: every /console path answers 404', async () => {
    const off = await startTestServer({ env: { MAYFLY_CONSOLE: 'false' } });
    try {
      for (const path of ['/console', '/console/sign-in', '/console/assets/console.js']) {
        const response = await fetch(`${off.url}${path}`, { redirect: 'manual' });
        expect(response.status, path).toBe(404);
      }
      const post = await fetch(`${off.url}/console/sign-in`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: 'user=a&password=b',
      });
      expect(post.status).toBe(404);
    } finally {
      await off.close();
    }
  });
});
