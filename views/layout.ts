import { html, type Html } from './html.ts';

export type Section = 'overview' | 'resources' | 'clients' | 'keys' | 'audit';

/** What every signed-in page knows: who is signed in, the form token, and a message from the last action. */
export interface PageContext {
  user: { name: string; role: 'read' | 'write' };
  csrf: string;
  /** Shown once at the top of the page, e.g. after a redirect following a change. */
  notice?: string | undefined;
}

const SECTIONS: readonly [Section, string, string][] = [
  ['overview', 'Overview', '/console'],
  ['resources', 'Resources', '/console/resources'],
  ['clients', 'Clients', '/console/clients'],
  ['keys', 'Signing keys', '/console/keys'],
  ['audit', 'Audit trail', '/console/audit'],
];

function document(title: string, body: Html): Html {
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>${title} · Mayfly console</title>
        <link rel="stylesheet" href="/console/assets/console.css" />
        <script src="/console/assets/console.js" defer></script>
      </head>
      <body>
        <a class="skip" href="#main">Skip to content</a>
        ${body}
      </body>
    </html>`;
}

/** A signed-in page: navigation, the signed-in user, sign-out, and the page itself in <main>. */
export function layout(context: PageContext, section: Section, title: string, content: Html): Html {
  const nav = SECTIONS.map(
    ([id, label, href]) =>
      html`<li><a href="${href}" ${id === section ? html` aria-current="page"` : ''}>${label}</a></li>`,
  );
  return document(
    title,
    html`<header class="top">
        <p class="brand"><a href="/console">Mayfly</a></p>
        <nav aria-label="Console">
          <ul>
            ${nav}
          </ul>
        </nav>
        <form method="post" action="/console/sign-out" class="who">
          <input type="hidden" name="_csrf" value="${context.csrf}" />
          <span>${context.user.name}${context.user.role === 'read' ? ' (read only)' : ''}</span>
          <button type="submit" class="link">Sign out</button>
        </form>
      </header>
      <main id="main" tabindex="-1">
        <h1>${title}</h1>
        ${context.notice ? html`<p class="notice" role="status">${context.notice}</p>` : ''} ${content}
      </main>`,
  );
}

/** A page outside a session: sign-in, and errors met before signing in. */
export function bareLayout(title: string, content: Html): Html {
  return document(
    title,
    html`<main id="main" class="narrow" tabindex="-1">
      <p class="brand">Mayfly</p>
      <h1>${title}</h1>
      ${content}
    </main>`,
  );
}
