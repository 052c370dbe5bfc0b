import { randomBytes } from 'node:crypto';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { signedIn, type ConsoleResponse, type ConsoleSession } from '../support/console.ts';
import { decode, fieldError, fieldsInError, inputValue } from '../support/pages.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

/** The audit trail page of the console: the changes made through it, filtered through its GET form. */

let server: TestServer;
let ada: ConsoleSession;
let reader: ConsoleSession;
/** The resource ada created and then renamed through the console forms. */
let made: { id: string; identifier: string };

beforeAll(async () => {
  server = await startTestServer();
  ada = await signedIn(server, 'ada', 'write');
  reader = await signedIn(server, 'rob', 'read');
  const identifier = `https://audited-${randomBytes(4).toString('hex')}.example.com`;
  await ada.get('/console/resources/new');
  const createdResponse = await ada.post('/console/resources/new', {
    identifier,
    name: 'Audited <b>API</b>',
    scopes: 'audit:read',
    token_ttl: '60',
    token_format: 'jwt',
  });
  expect(createdResponse.status).toBe(303);
  const id = /^\/console\/resources\/(.+)$/.exec(createdResponse.location ?? '')?.[1] ?? '';
  made = { id, identifier };
  const page = await ada.get(`/console/resources/${id}`);
  const edited = await ada.post(`/console/resources/${id}`, {
    _version: /name="_version" value="([^"]*)"/.exec(page.text)?.[1],
    name: 'Audited API v2',
    scopes: 'audit:read audit:write',
    token_ttl: '60',
    token_format: 'jwt',
  });
  expect(edited.status).toBe(303);
});
afterAll(() => server.close());

interface Row {
  time: string;
  actor: string;
  action: string;
  target: string;
  change: string;
}

/** The rows of the audit table, cell by cell (markup kept in `target` and `change`). */
function rows(page: ConsoleResponse): Row[] {
  const body = /<tbody>([\s\S]*?)<\/tbody>/.exec(page.text)?.[1] ?? '';
  return [...body.matchAll(/<tr>([\s\S]*?)<\/tr>/g)].map((row) => {
    const cells = [...row[1]!.matchAll(/<td data-label="([^"]+)">([\s\S]*?)<\/td>/g)];
    const cell = (label: string) => cells.find((c) => c[1] === label)?.[2]?.trim() ?? '';
    const code = (label: string) => decode(/<code>([^<]*)<\/code>/.exec(cell(label))?.[1] ?? '');
    return {
      time: /<time datetime="([^"]+)">/.exec(cell('Time'))?.[1] ?? '',
      actor: code('Actor'),
      action: code('Action'),
      target: cell('Target'),
      change: cell('Change'),
    };
  });
}

const audit = (filters: Record<string, string>, session = ada) =>
  session.get(`/console/audit?${new URLSearchParams(filters).toString()}`);

describe('the audit trail page', () => {
  it('shows every change, newest first, with time, actor, action and target', async () => {
    const page = await audit({});
    expect(page.status).toBe(200);
    expect(page.text).toContain('<h1>Audit trail</h1>');
    for (const heading of ['Time', 'Actor', 'Action', 'Target', 'Change']) {
      expect(page.text).toContain(`<th scope="col">${heading}</th>`);
    }
    const all = rows(page);
    expect(all.map((row) => row.action)).toEqual(
      expect.arrayContaining(['resource.create', 'resource.update']),
    );
    // The bootstrap's own changes are there too, attributed to Mayfly itself.
    expect(all.some((row) => row.actor.startsWith('system:'))).toBe(true);
    const times = all.map((row) => row.time);
    expect([...times].sort().reverse()).toEqual(times);
    expect(page.text).toMatch(
      /<time datetime="\d{4}-\d\d-\d\dT[\d:.]+Z">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC<\/time>/,
    );
  });

  it('filters by the console user as actor and shows the changes made through the console', async () => {
    const page = await audit({ actor: 'user:ada' });
    expect(page.status).toBe(200);
    expect(inputValue(page, 'actor')).toBe('user:ada');
    const found = rows(page);
    expect(found.map((row) => [row.actor, row.action])).toEqual([
      ['user:ada', 'resource.update'],
      ['user:ada', 'resource.create'],
    ]);
    for (const row of found) {
      expect(row.target).toContain(`Resource`);
      expect(row.target).toContain(`<a href="/console/resources/${made.id}"><code>${made.id}</code></a>`);
    }
    // Before and after, collapsed and escaped.
    const [update, create] = found;
    expect(update!.change).toMatch(/^<details>\s*<summary>\s*Before and after/);
    expect(update!.change).toContain('&quot;name&quot;: &quot;Audited &lt;b&gt;API&lt;/b&gt;&quot;');
    expect(update!.change).toContain('&quot;name&quot;: &quot;Audited API v2&quot;');
    expect(create!.change).toMatch(/<dt>Before<\/dt>\s*<dd><span class="muted">nothing<\/span><\/dd>/);
    expect(page.text).not.toContain('<b>API</b>');
    expect(page.text).toContain('Clear filters');
  });

  it('says who may be named as actor, and escapes the hint', async () => {
    const page = await audit({});
    expect(page.text).toContain('<label for="field-actor">Admin</label>');
    expect(page.text).toContain('An admin client id, or user:&lt;name&gt; for a console user.');
    for (const name of ['target', 'actor', 'action', 'since', 'until']) {
      expect(page.text).toContain(`<label for="field-${name}">`);
    }
    expect(page.text).toMatch(/id="field-since"\s+name="since"\s+type="datetime-local"/);
    expect(page.text).toContain('<form method="get" action="/console/audit"');
    expect(page.text).not.toMatch(/ style=| on[a-z]+=/);
  });

  it('filters by target and by action, and combines the filters', async () => {
    const byTarget = rows(await audit({ target: made.id }));
    expect(byTarget.map((row) => row.action)).toEqual(['resource.update', 'resource.create']);

    const byAction = rows(await audit({ action: 'resource.update' }));
    expect(byAction.length).toBeGreaterThan(0);
    expect(byAction.every((row) => row.action === 'resource.update')).toBe(true);

    const both = rows(await audit({ actor: 'user:ada', action: 'resource.create', target: made.id }));
    expect(both.map((row) => row.action)).toEqual(['resource.create']);
  });

  it('reads since and until as UTC date-times', async () => {
    const now = new Date();
    const local = (date: Date) => date.toISOString().slice(0, 16);
    const within = await audit({
      actor: 'user:ada',
      since: local(new Date(now.getTime() - 10 * 60_000)),
      until: local(new Date(now.getTime() + 10 * 60_000)),
    });
    expect(within.status).toBe(200);
    expect(rows(within)).toHaveLength(2);
    expect(inputValue(within, 'since')).toBe(local(new Date(now.getTime() - 10 * 60_000)));

    const withSeconds = await audit({ actor: 'user:ada', since: '2000-01-01T00:00:00' });
    expect(rows(withSeconds)).toHaveLength(2);

    const before = await audit({ actor: 'user:ada', until: '2000-01-01T00:00' });
    expect(before.status).toBe(200);
    expect(rows(before)).toHaveLength(0);
    expect(before.text).toContain('No change matches these filters.');
    expect(before.text).toContain('<a href="/console/audit">show every change</a>');
  });

  it('shows an empty state for a filter that matches nothing', async () => {
    const page = await audit({ actor: 'user:nobody' });
    expect(page.status).toBe(200);
    expect(page.text).not.toContain('<table');
    expect(page.text).toContain('<p class="empty">');
    expect(page.text).toContain('No change matches these filters.');
  });

  const badFilters: [string, Record<string, string>, string, RegExp][] = [
    ['a since that is not a date', { since: 'yesterday' }, 'since', /expected a date and time such as/],
    [
      'an until in another format',
      { until: '31/01/2026 12:00' },
      'until',
      /expected a date and time such as/,
    ],
    ['a day that does not exist', { since: '2026-02-30T10:00' }, 'since', /not a real date and time/],
    ['an hour that does not exist', { until: '2026-01-01T25:00' }, 'until', /not a real date and time/],
    [
      'a year the database cannot hold',
      { since: '0000-06-01T00:00' },
      'since',
      /between the years 0001 and 9999/,
    ],
    ['an until before since', { since: '2026-01-02T00:00', until: '2026-01-01T00:00' }, 'until', /after/],
    ['an action too long', { action: 'a'.repeat(101) }, 'action', /./],
    ['an actor too long', { actor: 'u'.repeat(256) }, 'actor', /./],
  ];

  it.each(badFilters)(
    'answers 400 for %s, with the message next to the field',
    async (_label, filters, name, message) => {
      const page = await audit({ actor: 'user:ada', ...filters });
      expect(page.status).toBe(400);
      expect(fieldsInError(page)).toEqual([name]);
      expect(fieldError(page, name)).toMatch(message);
      expect(page.text).toContain(`<li><a href="#field-${name}">`);
      expect(inputValue(page, name)).toBe(filters[name]);
      expect(page.text).not.toContain('<table');
      expect(page.text).toContain('Correct the filter above');
    },
  );

  it('pages through the trail with Next page links that keep the filters', async () => {
    const first = await audit({ actor: 'user:ada', limit: '1' });
    expect(rows(first).map((row) => row.action)).toEqual(['resource.update']);
    const next = /<a href="([^"]+)" rel="next">Next page<\/a>/.exec(first.text)?.[1];
    expect(next).toBeDefined();
    const nextUrl = decode(next!);
    expect(nextUrl).toMatch(/^\/console\/audit\?actor=user%3Aada&limit=1&cursor=/);
    const second = await ada.get(nextUrl);
    expect(second.status).toBe(200);
    expect(rows(second).map((row) => row.action)).toEqual(['resource.create']);
    expect(inputValue(second, 'actor')).toBe('user:ada');
    expect(second.text).toContain('<a href="/console/audit?actor=user%3Aada&amp;limit=1">First page</a>');

    const stale = await audit({ cursor: 'not-a-cursor' });
    expect(stale.status).toBe(400);
    expect(stale.text).toContain('<li>this page link is out of date: start again from the first page</li>');
  });

  it('is open to the read role', async () => {
    const page = await audit({ actor: 'user:ada' }, reader);
    expect(page.status).toBe(200);
    expect(rows(page)).toHaveLength(2);
  });
});
