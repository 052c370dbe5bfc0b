import { randomBytes } from 'node:crypto';

import { html, type Html } from './html.ts';

/** Messages by form field name; `''` holds a message about the form as a whole. */
export type FieldErrors = Readonly<Record<string, string>>;

/**
 * A one-time token for a form whose answer must not repeat (a new secret): the console refuses the form when it
 * comes back with the same token, e.g. when its answer page is reloaded.
 */
export function onceInput(): Html {
  return html`<input type="hidden" name="_once" value="${randomBytes(32).toString('base64url')}" />`;
}

export function csrfInput(token: string): Html {
  return html`<input type="hidden" name="_csrf" value="${token}" />`;
}

/** A list of the problems at the top of a form, each linking to its field. */
export function errorSummary(errors: FieldErrors | undefined): Html {
  const entries = Object.entries(errors ?? {});
  if (!entries.length) return html``;
  return html`<div class="error-summary" role="alert" tabindex="-1" data-focus>
    <h2>There is a problem</h2>
    <ul>
      ${entries.map(([name, message]) =>
        name ? html`<li><a href="#field-${name}">${message}</a></li>` : html`<li>${message}</li>`,
      )}
    </ul>
  </div>`;
}

interface FieldOptions {
  name: string;
  label: string;
  value?: string | undefined;
  errors?: FieldErrors | undefined;
  hint?: string | undefined;
  type?: 'text' | 'password' | 'number' | 'url' | 'search' | 'datetime-local';
  required?: boolean;
  autocomplete?: string;
  inputmode?: 'numeric' | 'text' | 'url';
  /** Extra attributes, already safe (e.g. `min="1"`). */
  attributes?: Html;
}

function describedBy(name: string, hint: string | undefined, error: string | undefined): Html | string {
  const ids = [hint ? `hint-${name}` : '', error ? `error-${name}` : ''].filter(Boolean).join(' ');
  return ids ? html` aria-describedby="${ids}"` : '';
}

function messages(name: string, hint: string | undefined, error: string | undefined): Html {
  return html`${hint ? html`<p class="hint" id="hint-${name}">${hint}</p>` : ''}${
    error ? html`<p class="field-error" id="error-${name}">${error}</p>` : ''
  }`;
}

export function field(options: FieldOptions): Html {
  const { name, label, hint } = options;
  const error = options.errors?.[name];
  return html`<div class="field${error ? ' invalid' : ''}">
    <label for="field-${name}">${label}</label>
    ${messages(name, hint, error)}
    <input
      id="field-${name}"
      name="${name}"
      type="${options.type ?? 'text'}"
      value="${options.value ?? ''}"
      ${
        options.required ? html` required` : ''
      }${options.autocomplete ? html` autocomplete="${options.autocomplete}"` : ''}${
        options.inputmode ? html` inputmode="${options.inputmode}"` : ''
      }${error ? html` aria-invalid="true"` : ''}${describedBy(name, hint, error)}${
        options.attributes ? html` ${options.attributes}` : ''
      }
    />
  </div>`;
}

export function textarea(options: Omit<FieldOptions, 'type' | 'inputmode'> & { rows?: number }): Html {
  const { name, label, hint } = options;
  const error = options.errors?.[name];
  return html`<div class="field${error ? ' invalid' : ''}">
    <label for="field-${name}">${label}</label>
    ${messages(name, hint, error)}
    <textarea
      id="field-${name}"
      name="${name}"
      rows="${options.rows ?? 3}"
      ${options.required ? html` required` : ''}${
        error ? html` aria-invalid="true"` : ''
      }${describedBy(name, hint, error)}
    >
${options.value ?? ''}</textarea>
  </div>`;
}

export function select(
  options: Omit<FieldOptions, 'type' | 'inputmode' | 'autocomplete'> & {
    choices: readonly (readonly [value: string, label: string])[];
  },
): Html {
  const { name, label, hint } = options;
  const error = options.errors?.[name];
  return html`<div class="field${error ? ' invalid' : ''}">
    <label for="field-${name}">${label}</label>
    ${messages(name, hint, error)}
    <select
      id="field-${name}"
      name="${name}"
      ${error ? html` aria-invalid="true"` : ''}${describedBy(name, hint, error)}
    >
      ${options.choices.map(
        ([value, text]) =>
          html`<option value="${value}" ${value === (options.value ?? '') ? html` selected` : ''}>
            ${text}
          </option>`,
      )}
    </select>
  </div>`;
}

export function checkbox(options: {
  name: string;
  label: string;
  checked: boolean;
  hint?: string;
  errors?: FieldErrors | undefined;
}): Html {
  const { name, hint } = options;
  const error = options.errors?.[name];
  return html`<div class="field checkbox${error ? ' invalid' : ''}">
    <input
      type="checkbox"
      id="field-${name}"
      name="${name}"
      value="on"
      ${options.checked ? html` checked` : ''}${describedBy(name, hint, error)}
    />
    <label for="field-${name}">${options.label}</label>
    ${messages(name, hint, error)}
  </div>`;
}

/** A one-button form for an action (POST), with its CSRF token. */
export function actionButton(options: {
  action: string;
  label: string;
  csrf: string;
  danger?: boolean;
  hidden?: Readonly<Record<string, string>>;
}): Html {
  return html`<form method="post" action="${options.action}" class="inline">
    ${csrfInput(options.csrf)}
    ${Object.entries(options.hidden ?? {}).map(
      ([name, value]) => html`<input type="hidden" name="${name}" value="${value}" />`,
    )}
    <button type="submit" ${options.danger ? html` class="danger"` : ''}>${options.label}</button>
  </form>`;
}
