import { actionButton, csrfInput } from './forms.ts';
import { formatTime, html, type Html } from './html.ts';
import { layout, type PageContext } from './layout.ts';

export interface KeyView {
  kid: string;
  alg: string;
  phase: 'published' | 'active' | 'retired' | 'revoked';
  published_at: string;
  activates_at: string;
  retires_at: string | null;
  removes_at: string | null;
  revoked_at: string | null;
  next_transition: { phase: string; at: string; planned: boolean } | null;
}

const PHASE_TEXT: Readonly<Record<KeyView['phase'], string>> = {
  published: 'Published (not signing yet)',
  active: 'Active (signing)',
  retired: 'Retired (verifying only)',
  revoked: 'Revoked',
};

function nextTransition(key: KeyView): string {
  const next = key.next_transition;
  if (!next) return '—';
  return `${next.phase} at ${formatTime(next.at)}${next.planned ? ' (planned)' : ''}`;
}

/** The key table, with actions when `actions` is given (the keys page) and without on the overview. */
export function keyTable(keys: readonly KeyView[], actions?: { csrf: string; canWrite: boolean }): Html {
  if (!keys.length)
    return html`<p class="empty">No signing keys yet: the server creates one when it starts.</p>`;
  return html`<div class="table-wrap">
    <table>
      <caption class="visually-hidden">
        Signing keys
      </caption>
      <thead>
        <tr>
          <th scope="col">Key id</th>
          <th scope="col">Algorithm</th>
          <th scope="col">Phase</th>
          <th scope="col">Signs from</th>
          <th scope="col">Next transition</th>
          ${actions?.canWrite ? html`<th scope="col"><span class="visually-hidden">Actions</span></th>` : ''}
        </tr>
      </thead>
      <tbody>
        ${keys.map(
          (key) =>
            html`<tr>
              <td><code>${key.kid}</code></td>
              <td>${key.alg}</td>
              <td><span class="badge phase-${key.phase}">${PHASE_TEXT[key.phase]}</span></td>
              <td>${formatTime(key.activates_at)}</td>
              <td>${nextTransition(key)}</td>
              ${
                actions?.canWrite
                  ? html`<td>
                      ${
                        key.phase === 'revoked'
                          ? ''
                          : html`<a
                              href="/console/keys/${encodeURIComponent(key.kid)}/revoke"
                              class="button danger"
                              >Revoke…</a
                            >`
                      }
                    </td>`
                  : ''
              }
            </tr>`,
        )}
      </tbody>
    </table>
  </div>`;
}

export function keysPage(context: PageContext, keys: readonly KeyView[]): Html {
  const canWrite = context.user.role === 'write';
  return layout(
    context,
    'keys',
    'Signing keys',
    html`<p>
        Keys sign access tokens and are published in the JWKS. A rotation publishes a successor, which starts
        signing once every resource server's cached JWKS can hold it.
      </p>
      ${
        canWrite
          ? html`<div class="actions">
                ${actionButton({ action: '/console/keys/rotate', label: 'Rotate now', csrf: context.csrf })}
                <form method="post" action="/console/keys/rotate" class="inline">
                  ${csrfInput(context.csrf)}
                  <input type="hidden" name="immediate" value="true" />
                  <button type="submit" class="danger">Rotate immediately</button>
                </form>
              </div>
              <p class="hint">
                “Rotate immediately” signs with a new key at once: resource servers holding a cached JWKS meet
                an unknown key id until they fetch it again.
              </p>`
          : ''
      }
      ${keyTable(keys, { csrf: context.csrf, canWrite })}`,
  );
}

export function revokeKeyPage(context: PageContext, key: KeyView): Html {
  return layout(
    context,
    'keys',
    `Revoke key ${key.kid}?`,
    html`<div class="warning" role="note">
        <p>
          <strong>This cannot be undone.</strong> Key <code>${key.kid}</code> leaves the JWKS at once and
          every token it signed becomes
          inactive.${key.phase === 'active' ? ' A successor starts signing at once.' : ''}
        </p>
      </div>
      <form method="post" action="/console/keys/${encodeURIComponent(key.kid)}/revoke" class="stack">
        ${csrfInput(context.csrf)}
        <div class="actions">
          <button type="submit" class="danger">Revoke key ${key.kid}</button>
          <a href="/console/keys" class="button">Cancel</a>
        </div>
      </form>`,
  );
}
