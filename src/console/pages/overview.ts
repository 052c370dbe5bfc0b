import { overviewPage } from '../../../views/overview.ts';
import type { KeyView } from '../../../views/keys.ts';
import type { OverviewData } from '../../../views/overview.ts';
import type { ConsolePage } from '../console.ts';

interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export const OVERVIEW_PAGES: readonly ConsolePage[] = [
  {
    method: 'GET',
    path: '/',
    async handle(request) {
      const [resources, enabled, disabled, keys, anomalies] = await Promise.all([
        request.admin<Page<OverviewData['resources'][number]>>('listResources', { query: { limit: '20' } }),
        request.admin<Page<unknown>>('listClients', { query: { limit: '200', status: 'enabled' } }),
        request.admin<Page<unknown>>('listClients', { query: { limit: '200', status: 'disabled' } }),
        request.admin<{ items: KeyView[] }>('listSigningKeys'),
        request.admin<Page<OverviewData['anomalies'][number]>>('listAnomalies', { query: { limit: '5' } }),
      ]);
      return {
        html: overviewPage(request.page, {
          resources: resources.items,
          moreResources: resources.next_cursor !== null,
          clients: {
            enabled: enabled.items.length,
            disabled: disabled.items.length,
            more: enabled.next_cursor !== null || disabled.next_cursor !== null,
          },
          keys: keys.items,
          denials: request.deps.audit.recentDenials().slice(0, 10),
          anomalies: anomalies.items,
        }),
      };
    },
  },
];
