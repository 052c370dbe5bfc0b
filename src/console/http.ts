import { timingSafeEqual } from 'node:crypto';

import type { Context } from 'koa';

import { MayflyError, refuseNul } from '../errors.ts';
import { readRequestBody } from '../http/request-body.ts';

export const CONSOLE_PREFIX = '/console';
const MAX_FORM_BYTES = 64 * 1024;

/** One form or query field: a repeated field (checkboxes) reads as a list. */
export type FormValues = Readonly<Record<string, string | string[]>>;

export function sessionCookieName(issuer: string): string {
  return issuer.startsWith('https:') ? '__Secure-mayfly-console' : 'mayfly-console';
}

export function readCookie(ctx: Context, name: string): string | undefined {
  for (const part of ctx.get('cookie').split(';')) {
    const index = part.indexOf('=');
    if (index > 0 && part.slice(0, index).trim() === name) return part.slice(index + 1).trim();
  }
  return undefined;
}

/** Set-Cookie written by hand: Koa refuses a Secure cookie on a plain-HTTP hop behind a TLS-terminating proxy. */
export function setCookie(
  ctx: Context,
  issuer: string,
  name: string,
  value: string,
  options: { path: string; maxAge?: number },
): void {
  const parts = [
    `${name}=${value}`,
    `Path=${options.path}`,
    'HttpOnly',
    'SameSite=Strict',
    ...(issuer.startsWith('https:') ? ['Secure'] : []),
    ...(options.maxAge === undefined ? [] : [`Max-Age=${options.maxAge}`]),
  ];
  ctx.append('Set-Cookie', parts.join('; '));
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
  for (const [name, value] of new URLSearchParams(bytes.toString('utf8'))) {
    const previous = form[name];
    form[name] =
      previous === undefined ? value : [...(Array.isArray(previous) ? previous : [previous]), value];
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
