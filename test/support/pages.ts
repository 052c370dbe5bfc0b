/**
 * Reading console pages in tests: what a person sees of them (text without markup, entities decoded), the fields
 * and their messages, and the attributes of tags. A page is its HTML text or a response holding it.
 */
type Page = string | { text: string };

const html = (page: Page) => (typeof page === 'string' ? page : page.text);

const ENTITIES: Readonly<Record<string, string>> = {
  '&amp;': '&',
  '&lt;': '<',
  '&gt;': '>',
  '&quot;': '"',
  '&#39;': "'",
  '&#96;': '`',
};

/** Undoes the escaping of the console's templates. */
export const decode = (text: string) =>
  text.replace(/&(?:amp|lt|gt|quot|#39|#96);/g, (entity) => ENTITIES[entity] ?? '');

/** Text without markup, entities decoded, whitespace collapsed. */
export const squash = (text: string) =>
  decode(text.replace(/<[^>]*>/g, ''))
    .replace(/\s+/g, ' ')
    .trim();

export const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

export type Attributes = Record<string, string | true>;

/** The attributes of every tag with this name. */
export function tags(page: Page, name: string): Attributes[] {
  return [...html(page).matchAll(new RegExp(`<${name}\\b([^>]*)>`, 'g'))].map((match) => {
    const attributes: Attributes = {};
    for (const attribute of (match[1] ?? '').matchAll(/([a-zA-Z-:]+)(?:="([^"]*)")?/g)) {
      const [, attributeName = '', value] = attribute;
      attributes[attributeName] = value === undefined ? true : decode(value);
    }
    return attributes;
  });
}

/** The value of the first input named `name`. */
export const inputValue = (page: Page, name: string) => {
  const value = tags(page, 'input').find((a) => a.name === name)?.value;
  return typeof value === 'string' ? value : undefined;
};

/** The version an edit form carries (its hidden `_version` field). */
export const versionOf = (page: Page) => inputValue(page, '_version');

/** The message printed next to a field (its `error-<name>` paragraph), as text. */
export function fieldError(page: Page, name: string): string | undefined {
  const match = new RegExp(`<p class="field-error" id="error-${escapeRegExp(name)}">([\\s\\S]*?)</p>`).exec(
    html(page),
  );
  return match ? squash(match[1] ?? '') : undefined;
}

/** Every field with a message next to it. */
export function fieldsInError(page: Page): string[] {
  return [...html(page).matchAll(/<p class="field-error" id="error-([^"]+)">/g)].map(
    (match) => match[1] ?? '',
  );
}

/** The error summary at the top of the page, as text, and the fields it links to. */
export function errorSummary(page: Page): { text: string; links: string[] } | undefined {
  const match = /<div class="error-summary"[^>]*>([\s\S]*?)<\/div>/.exec(html(page));
  if (!match) return undefined;
  const block = match[1] ?? '';
  return {
    text: squash(block),
    links: [...block.matchAll(/href="#([^"]*)"/g)].map((m) => decode(m[1] ?? '')),
  };
}
