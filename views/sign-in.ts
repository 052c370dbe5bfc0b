import { field } from './forms.ts';
import { html, type Html } from './html.ts';
import { bareLayout } from './layout.ts';

export function signInPage(options: {
  csrf: string;
  user: string;
  error?: string | undefined;
  notice?: string | undefined;
}): Html {
  return bareLayout(
    'Sign in',
    html`${options.notice ? html`<p class="notice" role="status">${options.notice}</p>` : ''}
      ${options.error ? html`<div class="error-summary" role="alert" tabindex="-1" data-focus><p>${options.error}</p></div>` : ''}
      <form method="post" action="/console/sign-in" class="stack">
        <input type="hidden" name="_csrf" value="${options.csrf}" />
        ${field({ name: 'user', label: 'User name', value: options.user, required: true, autocomplete: 'username' })}
        ${field({ name: 'password', label: 'Password', type: 'password', required: true, autocomplete: 'current-password' })}
        ${field({
          name: 'code',
          label: 'Authentication code',
          hint: 'The 6 digits from your authenticator app, if your account has one. Leave empty otherwise.',
          autocomplete: 'one-time-code',
          inputmode: 'numeric',
          attributes: html`pattern="[0-9 ]*" maxlength="8"`,
        })}
        <button type="submit" class="primary">Sign in</button>
      </form>
      <p class="hint">
        Accounts are created by an operator: <code>mayfly admin-user create &lt;name&gt;</code>.
      </p>`,
  );
}
