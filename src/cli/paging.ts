import { z } from 'zod';

import type { AdminClient } from './admin-client.ts';
import { parseWholeNumber } from './args.ts';
import type { CommandContext, OptionSpecs, OptionValues } from './command.ts';
import { UsageError } from './errors.ts';
import { formatJson } from './output.ts';
import { readAs } from './views.ts';

export const PAGE_OPTIONS = {
  limit: { type: 'string', value: '<n>', description: 'at most n items per page (1-200, default 50)' },
  cursor: { type: 'string', value: '<cursor>', description: 'start from the next_cursor of an earlier page' },
  all: { type: 'boolean', description: 'follow next_cursor and show every page' },
} as const satisfies OptionSpecs;

type PageValues = OptionValues<typeof PAGE_OPTIONS>;

export function readPageQuery(values: PageValues): { limit?: string; cursor?: string } {
  if (values.all && values.cursor !== undefined) throw new UsageError('give --all or --cursor, not both');
  const limit =
    values.limit === undefined
      ? undefined
      : String(parseWholeNumber(values.limit, '--limit', 'a page size', 1));
  return { ...(limit ? { limit } : {}), ...(values.cursor ? { cursor: values.cursor } : {}) };
}

const Page = z.object({ items: z.array(z.unknown()), next_cursor: z.string().nullable() });

/**
 * One page as the API answers it, or with --all every page followed and merged into one (next_cursor null).
 * --json prints that page object as is; otherwise the items are read with `item` and formatted.
 */
export async function printList<T>(
  context: CommandContext,
  api: AdminClient,
  request: { path: string; query: Record<string, string | undefined>; all: boolean | undefined },
  item: z.ZodType<T>,
  format: (items: T[]) => string,
): Promise<void> {
  let body = await api.send('GET', request.path, { query: request.query });
  let page = readAs(Page, body, 'list');
  if (request.all) {
    const items = [...page.items];
    while (page.next_cursor !== null) {
      page = readAs(
        Page,
        await api.send('GET', request.path, { query: { ...request.query, cursor: page.next_cursor } }),
        'list',
      );
      items.push(...page.items);
    }
    body = { items, next_cursor: null };
    page = { items, next_cursor: null };
  }
  if (context.json) {
    context.out.result(formatJson(body));
    return;
  }
  context.out.result(format(page.items.map((value) => readAs(item, value, 'list item'))));
  if (page.next_cursor !== null) {
    context.out.note(`More results: add --all, or --cursor ${page.next_cursor} for the next page.\n`);
  }
}
