import { timingSafeEqual } from 'node:crypto';

import type { Context } from 'koa';

import { MayflyError, refuseNul } from '../errors.ts';
import { readRequestBody } from '../http/request-body.ts';

export const CONSOLE_PREFIX = '/console';
const MAX_FORM_BYTES = 64 * 1024;
/** More than any console form sends (its longest is a client's grant checkboxes). */
const MAX_FORM_FIELDS = 1000;

/** One form or query field: a repeated field (checkboxes) reads as a list. */
export type FormValues = Readonly<Record<string, string | string[]>>;

/** A cookie of the console: its name and path depend on whether the issuer is https. */
export interface ConsoleCookie {
  name: string;
  path: string;
  secure: boolean;
}

/**
 * On an https issuer the `__Host-` prefix: browsers then accept the cookie only if Secure, for Path=/ and without a
 * Domain, so no other host (a sibling subdomain) can plant or shadow it. On plain http (development) the cookie
 * keeps its bare name and is limited to `path`.
 */
export function consoleCookie(issuer: string, base: string, path: string): ConsoleCookie {
  const secure = issuer.startsWith('https:');
  return secure ? { name: `__Host-${base}`, path: '/', secure } : { name: base, path, secure };
}

/** The cookie's value; undefined when absent, or when sent more than once (one of them was planted). */
export function readCookie(ctx: Context, cookie: ConsoleCookie): string | undefined {
  const values = ctx
    .get('cookie')
    .split(';')
    .map((part) => part.trim())
    .filter((part) => part.startsWith(`${cookie.name}=`))
    .map((part) => part.slice(cookie.name.length + 1));
  return values.length === 1 ? values[0] : undefined;
}

/** Set-Cookie written by hand: Koa refuses a Secure cookie on a plain-HTTP hop behind a TLS-terminating proxy. */
export function setCookie(ctx: Context, cookie: ConsoleCookie, value: string, maxAge?: number): void {
  const parts = [
    `${cookie.name}=${value}`,
    `Path=${cookie.path}`,
    'HttpOnly',
    'SameSite=Strict',
    ...(cookie.secure ? ['Secure'] : []),
    ...(maxAge === undefined ? [] : [`Max-Age=${maxAge}`]),
  ];
  ctx.append('Set-Cookie', parts.join('; '));
}

/** Whether the request carries the cookie at all (once or more). */
export function hasCookie(ctx: Context, cookie: ConsoleCookie): boolean {
  return ctx
    .get('cookie')
    .split(';')
    .some((part) => part.trim().startsWith(`${cookie.name}=`));
}

/** Constant-time comparison of two tokens. */
export function sameToken(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}

/** A form post from another site, or from a page of another origin, is refused whatever its token. */
export function isSameOriginPost(ctx: Context, issuer: string): boolean {
  const site = ctx.get('sec-fetch-site');
  if (site && site !== 'same-origin' && site !== 'none') return false;
  const origin = ctx.get('origin');
  if (origin && origin !== new URL(issuer).origin) return false;
  return true;
}

/** One text field of a form or query; a field sent more than once counts by its first value. */
export function formText(values: FormValues, name: string): string {
  const value = values[name];
  return (Array.isArray(value) ? value[0] : value) ?? '';
}

/** Every value of a field (checkboxes), in the order sent. */
export function formList(values: FormValues, name: string): string[] {
  const value = values[name];
  if (value === undefined) return [];
  return Array.isArray(value) ? [...value] : [value];
}

/** Reads an application/x-www-form-urlencoded body; repeated names become lists. */
export async function readForm(ctx: Context): Promise<Record<string, string | string[]>> {
  if (!ctx.is('application/x-www-form-urlencoded')) {
    if (!ctx.request.length && !ctx.get('transfer-encoding')) return {};
    throw new MayflyError('unsupported_media_type', 'the console accepts HTML form posts only');
  }
  const bytes =
    ctx.request.length > MAX_FORM_BYTES ? 'too-large' : await readRequestBody(ctx.req, MAX_FORM_BYTES);
  if (bytes === 'too-large') {
    ctx.set('Connection', 'close');
    throw new MayflyError('payload_too_large', `the form is larger than ${MAX_FORM_BYTES} bytes`);
  }
  if (bytes === 'aborted') throw new MayflyError('invalid_input', 'the form was cut off');
  // No prototype: a field named __proto__ or constructor is a field like any other.
  const form = Object.create(null) as Record<string, string | string[]>;
  let fields = 0;
  for (const [name, value] of new URLSearchParams(bytes.toString('utf8'))) {
    if (++fields > MAX_FORM_FIELDS) {
      throw new MayflyError('invalid_input', `a console form has at most ${MAX_FORM_FIELDS} fields`);
    }
    const previous = form[name];
    if (previous === undefined) form[name] = value;
    else if (Array.isArray(previous)) previous.push(value);
    else form[name] = [previous, value];
  }
  refuseNul(form, 'form');
  return form;
}

export const readOnly = (): MayflyError =>
  new MayflyError(
    'insufficient_scope',
    'your role is read only: ask an administrator with the write role to make this change',
  );

/**
 * For pages that change something, and the forms leading to them: a read-only user is refused before anything is
 * read or shown (the admin operation would refuse the change itself in any case).
 */
export function requireWrite(request: { user: { role: 'read' | 'write' } }): void {
  if (request.user.role !== 'write') throw readOnly();
}

const VERSION_FIELD = '_version';
const ISO_INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?Z$/;

/**
 * An edit form carries the `updated_at` of what it shows: a save from a form shown before a change made since is
 * refused (409) rather than undoing that change, and a form without a readable version is refused (400).
 */
export function versionProblem(
  form: FormValues,
  current: string,
  what: 'client' | 'resource',
): { status: number; message: string } | undefined {
  const posted = form[VERSION_FIELD];
  if (typeof posted !== 'string' || !ISO_INSTANT.test(posted) || Number.isNaN(Date.parse(posted))) {
    return {
      status: 400,
      message:
        `Nothing was saved: this form has no valid version (its hidden ${VERSION_FIELD} field is missing or ` +
        `malformed), so it cannot be checked against changes made since it was shown. The current values of the ` +
        `${what} are below: make your change again and save.`,
    };
  }
  if (Date.parse(posted) !== Date.parse(current)) {
    return {
      status: 409,
      message:
        `This ${what} was changed by someone else since you opened this page: review the current values below ` +
        'and save again.',
    };
  }
  return undefined;
}
