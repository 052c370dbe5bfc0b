import { createAdminUser } from '../../src/console/admin-user.service.ts';
import type { AdminUserWithTotp } from '../../src/console/admin-user.schemas.ts';
import { TEST_ACTOR, type TestServer } from './server.ts';

/** A password good enough for the console's rules, for tests. */
export const TEST_PASSWORD = 'correct horse battery staple';

export interface ConsoleResponse {
  status: number;
  headers: Headers;
  /** The body as text (the console answers HTML). */
  text: string;
  /** Where a redirect points, relative to the server. */
  location: string | null;
}

/**
 * A browser-like HTTP session with the console over a real socket: keeps cookies (by name, as the server set
 * them), sends forms as application/x-www-form-urlencoded, never follows redirects, and reads the CSRF token of
 * the last page it was shown.
 */
export class ConsoleSession {
  readonly server: TestServer;
  readonly cookies = new Map<string, string>();
  /** The `_csrf` value of the last HTML page fetched. */
  csrf: string | undefined;

  constructor(server: TestServer) {
    this.server = server;
  }

  async get(path: string, headers: Record<string, string> = {}): Promise<ConsoleResponse> {
    return this.#send('GET', path, undefined, headers);
  }

  /** Posts a form; `_csrf` is the last page's token unless the fields set it (or set it to undefined). */
  async post(
    path: string,
    fields: Record<string, string | string[] | undefined>,
    headers: Record<string, string> = {},
  ): Promise<ConsoleResponse> {
    const body = new URLSearchParams();
    const all = '_csrf' in fields ? fields : { _csrf: this.csrf, ...fields };
    for (const [name, value] of Object.entries(all)) {
      if (value === undefined) continue;
      for (const one of Array.isArray(value) ? value : [value]) body.append(name, one);
    }
    return this.#send('POST', path, body.toString(), {
      'content-type': 'application/x-www-form-urlencoded',
      origin: this.server.url,
      ...headers,
    });
  }

  /** Signs in with the sign-in form, as a person would. */
  async signIn(user: string, password = TEST_PASSWORD, code?: string): Promise<ConsoleResponse> {
    await this.get('/console/sign-in');
    return this.post('/console/sign-in', { user, password, ...(code === undefined ? {} : { code }) });
  }

  async #send(
    method: string,
    path: string,
    body: string | undefined,
    headers: Record<string, string>,
  ): Promise<ConsoleResponse> {
    const cookie = [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; ');
    const response = await fetch(`${this.server.url}${path}`, {
      method,
      ...(body === undefined ? {} : { body }),
      redirect: 'manual',
      headers: { ...(cookie ? { cookie } : {}), ...headers },
    });
    for (const line of response.headers.getSetCookie()) {
      const [pair = ''] = line.split(';');
      const index = pair.indexOf('=');
      const name = pair.slice(0, index);
      const value = pair.slice(index + 1);
      if (/Max-Age=0/i.test(line) || value === '') this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    const text = await response.text();
    const token = /name="_csrf" value="([^"]+)"/.exec(text)?.[1];
    if (token) this.csrf = token;
    return {
      status: response.status,
      headers: response.headers,
      text,
      location: response.headers.get('location'),
    };
  }
}

/** Creates a console user through the service, as `mayfly admin-user create` does through the API. */
export function createConsoleUser(
  server: TestServer,
  name: string,
  options: { role?: 'read' | 'write'; totp?: boolean; password?: string } = {},
): Promise<AdminUserWithTotp> {
  return createAdminUser(server.app.admin, TEST_ACTOR, {
    name,
    password: options.password ?? TEST_PASSWORD,
    role: options.role ?? 'write',
    totp: options.totp ?? false,
  });
}

/** A signed-in console session for a new user of that role. */
export async function signedIn(
  server: TestServer,
  name: string,
  role: 'read' | 'write' = 'write',
): Promise<ConsoleSession> {
  await createConsoleUser(server, name, { role });
  const session = new ConsoleSession(server);
  const response = await session.signIn(name);
  if (response.status !== 303 || response.location !== '/console') {
    throw new Error(`sign-in of ${name} failed with ${response.status}`);
  }
  return session;
}
