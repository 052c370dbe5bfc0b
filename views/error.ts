import { html, type Html } from './html.ts';
import { bareLayout } from './layout.ts';

/** An error page: what went wrong, and a way back. */
export function errorPage(title: string, message: string): Html {
  return bareLayout(
    title,
    html`<p role="alert">${message}</p>
      <p><a href="/console">Back to the console</a></p>`,
  );
}
