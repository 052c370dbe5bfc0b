import { errorSummary, field, type FieldErrors } from './forms.ts';
import { formatTime, html, type Html } from './html.ts';
import { layout, type PageContext } from './layout.ts';

/** One change in the audit trail, as the admin API shows it (secrets already redacted). */
export interface AuditEventView {
  id: string;
  occurred_at: string;
  actor: string;
  action: string;
  target_type: string;
  target_id: string;
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
}

/** The filter form as typed; since and until are `datetime-local` values read as UTC. */
export interface AuditFilterValues {
  target: string;
  actor: string;
  action: string;
  since: string;
  until: string;
}

export interface AuditPageData {
  filters: AuditFilterValues;
  items: readonly AuditEventView[];
  nextHref?: string | undefined;
  firstHref?: string | undefined;
  errors?: FieldErrors | undefined;
}

const TARGET_TEXT: Readonly<Record<string, string>> = {
  resource: 'Resource',
  client: 'Client',
  signing_key: 'Signing key',
  admin_user: 'Console user',
};

function targetHref(event: AuditEventView): string | undefined {
  if (event.target_type === 'resource') return `/console/resources/${encodeURIComponent(event.target_id)}`;
  if (event.target_type === 'client') return `/console/clients/${encodeURIComponent(event.target_id)}`;
  return undefined;
}

function json(value: Record<string, unknown> | null): Html {
  if (value === null) return html`<span class="muted">nothing</span>`;
  return html`<div class="table-wrap">
    <pre><code>${JSON.stringify(value, null, 2)}</code></pre>
  </div>`;
}

function change(event: AuditEventView): Html {
  if (event.before === null && event.after === null) return html`—`;
  return html`<details>
    <summary>
      Before and after<span class="visually-hidden"> (${event.action} ${event.target_id})</span>
    </summary>
    <dl class="details">
      <dt>Before</dt>
      <dd>${json(event.before)}</dd>
      <dt>After</dt>
      <dd>${json(event.after)}</dd>
    </dl>
  </details>`;
}

function eventTable(items: readonly AuditEventView[]): Html {
  return html`<div class="table-wrap">
    <table class="responsive">
      <caption class="visually-hidden">
        Audit events, newest first
      </caption>
      <thead>
        <tr>
          <th scope="col">Time</th>
          <th scope="col">Actor</th>
          <th scope="col">Action</th>
          <th scope="col">Target</th>
          <th scope="col">Change</th>
        </tr>
      </thead>
      <tbody>
        ${items.map((event) => {
          const href = targetHref(event);
          return html`<tr>
            <td data-label="Time">
              <time datetime="${event.occurred_at}">${formatTime(event.occurred_at)}</time>
            </td>
            <td data-label="Actor"><code>${event.actor}</code></td>
            <td data-label="Action"><code>${event.action}</code></td>
            <td data-label="Target">
              ${TARGET_TEXT[event.target_type] ?? event.target_type}
              ${href ? html`<a href="${href}"><code>${event.target_id}</code></a>` : html`<code>${event.target_id}</code>`}
            </td>
            <td data-label="Change">${change(event)}</td>
          </tr>`;
        })}
      </tbody>
    </table>
  </div>`;
}

export function auditPage(context: PageContext, data: AuditPageData): Html {
  const { filters, errors } = data;
  const filtered = Object.values(filters).some((value) => value !== '');
  const invalid = errors !== undefined && Object.keys(errors).length > 0;
  return layout(
    context,
    'audit',
    'Audit trail',
    html`<p>
        Every change made through the admin API, the command line or this console: who made it, when, and the
        object before and after (secrets are never recorded).
      </p>
      ${errorSummary(errors)}
      <section aria-labelledby="filter-heading">
        <h2 id="filter-heading">Filter</h2>
        <form method="get" action="/console/audit" class="filters" novalidate>
          ${field({
            name: 'target',
            label: 'Client or resource',
            value: filters.target,
            errors,
            hint: 'The id of the changed object: a client id or a resource id.',
          })}
          ${field({
            name: 'actor',
            label: 'Admin',
            value: filters.actor,
            errors,
            hint: 'An admin client id, or user:<name> for a console user.',
          })}
          ${field({
            name: 'action',
            label: 'Action',
            value: filters.action,
            errors,
            hint: 'e.g. client.create, resource.update, resource.delete',
          })}
          ${field({
            name: 'since',
            label: 'Since (UTC)',
            type: 'datetime-local',
            value: filters.since,
            errors,
            hint: 'From this time on, in UTC.',
          })}
          ${field({
            name: 'until',
            label: 'Until (UTC)',
            type: 'datetime-local',
            value: filters.until,
            errors,
            hint: 'Before this time, in UTC.',
          })}
          <div class="actions">
            <button type="submit">Filter</button>
            ${filtered ? html`<a href="/console/audit" class="button">Clear filters</a>` : ''}
          </div>
        </form>
      </section>
      <section aria-labelledby="events-heading">
        <h2 id="events-heading">${filtered ? 'Matching changes' : 'Changes'}, newest first</h2>
        ${
          invalid
            ? html`<p class="empty">Correct the filter above to see the changes.</p>`
            : data.items.length
              ? eventTable(data.items)
              : filtered
                ? html`<p class="empty">
                    No change matches these filters. Widen the time range, check the ids, or
                    <a href="/console/audit">show every change</a>.
                  </p>`
                : html`<p class="empty">
                    No change has been recorded yet. Creating, changing or deleting a resource, a client, a
                    signing key or a console user adds an entry here.
                  </p>`
        }
        ${
          data.nextHref || data.firstHref
            ? html`<nav aria-label="Pages" class="actions">
                ${data.firstHref ? html`<a href="${data.firstHref}">First page</a>` : ''}
                ${data.nextHref ? html`<a href="${data.nextHref}" rel="next">Next page</a>` : ''}
              </nav>`
            : ''
        }
      </section>`,
  );
}
