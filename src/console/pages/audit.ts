import { MayflyError } from '../../errors.ts';
import { auditPage, type AuditEventView, type AuditFilterValues } from '../../../views/audit.ts';
import { query } from '../../../views/html.ts';
import type { ConsolePage, ConsoleRequest, ConsoleResult } from '../console.ts';

interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

const FILTERS = ['target', 'actor', 'action', 'since', 'until'] as const;

/** `YYYY-MM-DDTHH:MM`, optionally with seconds (and a fraction), as a datetime-local input sends it. */
const LOCAL_DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,3})?)?$/;

/**
 * A datetime-local value read as UTC, as the ISO 8601 instant the API takes (`2026-01-31T12:00:00Z`), or the
 * reason it is not one.
 */
export function utcInstant(value: string): { iso: string } | { error: string } {
  const match = LOCAL_DATE_TIME.exec(value);
  const example = 'expected a date and time such as 2026-01-31T12:00 (UTC)';
  if (!match) return { error: example };
  const [, year = '', month = '', day = '', hour = '', minute = '', second = '00'] = match;
  const iso = `${year}-${month}-${day}T${hour}:${minute}:${second}Z`;
  const parsed = new Date(iso);
  // The Date constructor rolls 31 February over into March: a day or hour that does not exist is refused.
  if (Number.isNaN(parsed.getTime()) || parsed.toISOString().slice(0, 19) !== iso.slice(0, 19)) {
    return { error: `${year}-${month}-${day} ${hour}:${minute} is not a real date and time` };
  }
  return { iso };
}

function filterValues(request: ConsoleRequest): AuditFilterValues {
  const value = (name: (typeof FILTERS)[number]) => (request.query[name] ?? '').trim();
  return {
    target: value('target'),
    actor: value('actor'),
    action: value('action'),
    since: value('since'),
    until: value('until'),
  };
}

const refuse = (request: ConsoleRequest, filters: AuditFilterValues, errors: Record<string, string>) => ({
  html: auditPage(request.page, { filters, items: [], errors }),
  status: 400,
});

async function showAudit(request: ConsoleRequest): Promise<ConsoleResult> {
  const filters = filterValues(request);
  const { cursor, limit } = request.query;
  const errors: Record<string, string> = {};
  const instants: { since?: string; until?: string } = {};
  for (const name of ['since', 'until'] as const) {
    if (filters[name] === '') continue;
    const instant = utcInstant(filters[name]);
    if ('error' in instant) errors[name] = instant.error;
    else instants[name] = instant.iso;
  }
  if (instants.since !== undefined && instants.until !== undefined && instants.until <= instants.since) {
    errors.until = 'expected a time after “since”';
  }
  if (Object.keys(errors).length) return refuse(request, filters, errors);

  const apiFilters = {
    target: filters.target || undefined,
    actor: filters.actor || undefined,
    action: filters.action || undefined,
    since: instants.since,
    until: instants.until,
    limit,
  };
  try {
    const page = await request.admin<Page<AuditEventView>>('listAuditEvents', {
      query: { ...apiFilters, ...(cursor === undefined ? {} : { cursor }) },
    });
    // Links keep the filters as typed, so the form shows them again on the next page.
    const linkFilters = { ...filters, limit };
    return {
      html: auditPage(request.page, {
        filters,
        items: page.items,
        nextHref:
          page.next_cursor === null
            ? undefined
            : `/console/audit${query({ ...linkFilters, cursor: page.next_cursor })}`,
        firstHref: cursor === undefined ? undefined : `/console/audit${query(linkFilters)}`,
      }),
    };
  } catch (error) {
    if (!(error instanceof MayflyError) || error.code !== 'invalid_input') throw error;
    for (const detail of error.details) {
      const name = (FILTERS as readonly string[]).includes(detail.path) ? detail.path : '';
      const message =
        detail.path === 'cursor'
          ? 'this page link is out of date: start again from the first page'
          : name === '' && detail.path !== ''
            ? `${detail.path}: ${detail.message}`
            : detail.message;
      errors[name] = errors[name] === undefined ? message : `${errors[name]}; ${message}`;
    }
    if (!Object.keys(errors).length) errors[''] = error.message;
    return refuse(request, filters, errors);
  }
}

export const AUDIT_PAGES: readonly ConsolePage[] = [{ method: 'GET', path: '/audit', handle: showAudit }];
