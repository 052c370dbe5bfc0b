import { formatTime, html, type Html } from './html.ts';
import { keyTable, type KeyView } from './keys.ts';
import { layout, type PageContext } from './layout.ts';

export interface OverviewData {
  resources: readonly {
    id: string;
    identifier: string;
    name: string | null;
    scopes: readonly string[];
    reserved?: boolean;
  }[];
  moreResources: boolean;
  clients: { enabled: number; disabled: number; more: boolean };
  keys: readonly KeyView[];
  denials: readonly {
    at: string;
    endpoint: string;
    client_id: string | undefined;
    ip: string;
    error: string | undefined;
    reason: string | undefined;
  }[];
  anomalies: readonly { detected_at: string; client_id: string; kind: string; description: string }[];
}

export function overviewPage(context: PageContext, data: OverviewData): Html {
  const canWrite = context.user.role === 'write';
  const { enabled, disabled, more } = data.clients;
  return layout(
    context,
    'overview',
    'Overview',
    html`<div class="cards">
        <section aria-labelledby="resources-heading" class="card">
          <h2 id="resources-heading">Resources</h2>
          ${
            data.resources.length
              ? html`<ul class="plain">
                    ${data.resources.map(
                      (r) =>
                        html`<li>
                          <a href="/console/resources/${encodeURIComponent(r.id)}"
                            >${r.name ?? r.identifier}</a
                          >
                          <span class="muted"
                            >${r.identifier} · ${r.scopes.length}
                            scope${r.scopes.length === 1 ? '' : 's'}</span
                          >
                        </li>`,
                    )}
                  </ul>
                  ${data.moreResources ? html`<p><a href="/console/resources">All resources</a></p>` : ''}`
              : html`<p class="empty">
                  No resources yet. A resource is an API that accepts Mayfly's
                  tokens.${
                    canWrite ? html` <a href="/console/resources/new">Create the first resource</a>.` : ''
                  }
                </p>`
          }
        </section>
        <section aria-labelledby="clients-heading" class="card">
          <h2 id="clients-heading">Clients</h2>
          ${
            enabled + disabled
              ? html`<p>
                  <a href="/console/clients?status=enabled">${enabled}${more ? '+' : ''} enabled</a> ·
                  <a href="/console/clients?status=disabled">${disabled}${more ? '+' : ''} disabled</a>
                </p>`
              : html`<p class="empty">
                  No clients yet. A client is a service that obtains
                  tokens.${
                    canWrite ? html` <a href="/console/clients/new">Register the first client</a>.` : ''
                  }
                </p>`
          }
        </section>
      </div>
      <section aria-labelledby="keys-heading">
        <h2 id="keys-heading">Signing keys</h2>
        ${keyTable(data.keys)}
        <p><a href="/console/keys">Manage signing keys</a></p>
      </section>
      <section aria-labelledby="denials-heading">
        <h2 id="denials-heading">Recent denials</h2>
        <p class="hint">
          The latest refused token, introspection and revocation requests seen by this server instance (the
          audit log has every one).
        </p>
        ${
          data.denials.length
            ? html`<div class="table-wrap">
                <table>
                  <thead>
                    <tr>
                      <th scope="col">When</th>
                      <th scope="col">Endpoint</th>
                      <th scope="col">Client</th>
                      <th scope="col">Address</th>
                      <th scope="col">Error</th>
                      <th scope="col">Reason</th>
                    </tr>
                  </thead>
                  <tbody>
                    ${data.denials.map(
                      (d) =>
                        html`<tr>
                          <td>${formatTime(d.at)}</td>
                          <td>${d.endpoint}</td>
                          <td>${d.client_id ? html`<code>${d.client_id}</code>` : '—'}</td>
                          <td>${d.ip}</td>
                          <td>${d.error ?? '—'}</td>
                          <td>${d.reason ?? '—'}</td>
                        </tr>`,
                    )}
                  </tbody>
                </table>
              </div>`
            : html`<p class="empty">No request has been denied since this instance started.</p>`
        }
      </section>
      <section aria-labelledby="anomalies-heading">
        <h2 id="anomalies-heading">Recent anomalies</h2>
        ${
          data.anomalies.length
            ? html`<ul class="plain">
                ${data.anomalies.map(
                  (a) =>
                    html`<li>
                      <strong>${a.kind}</strong> · <code>${a.client_id}</code> · ${formatTime(a.detected_at)}
                      <br /><span class="muted">${a.description}</span>
                    </li>`,
                )}
              </ul>`
            : html`<p class="empty">No unusual client behaviour detected.</p>`
        }
      </section>`,
  );
}
